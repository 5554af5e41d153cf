"""Optical flow: computing it with OpenCV, and the on-disk flow cache.

Cache format (``datasets/prepare_flow.py`` writes it; the clip mapper reads it)::

    <root>/flow/<video_id>/00001.png, 00002.png, ...   one per video frame, 1-based
    <root>/flow/<video_id>/flow.json                    {"num_frames", "height", "width", "bound",
    "method", ...}

- Each PNG holds 3 uint8 channels in array order (x, y, magnitude) as written by ``cv2.imwrite``
  (channel 0 = flow x, i.e. what ``cv2.imread`` returns as channel 0).
- Quantisation with the bound ``B`` (``INPUT.FLOW.BOUND``, pixels)::

      x_q = clip(round(128 + x * 127 / B), 0, 255)        (same for y)
      m_q = clip(round(|v| * 255 / (B * sqrt(2))), 0, 255)

  so flow values are clipped at +-B pixels per frame.
- The flow of frame ``t`` goes from frame ``t`` to frame ``t + 1``; the last frame repeats the
  previous flow (a one-frame video gets zero flow).
- A video's folder is written to a temporary folder and renamed when complete, and ``flow.json`` is
  its completeness marker: a folder with ``flow.json`` and ``num_frames`` PNGs is complete.
"""

import json
import os
import shutil

import numpy as np

from ..utils.io import temporary_path
from .frame_cache import frame_cache
from .video import VideoReader

__all__ = [
    "compute_flow",
    "FLOW_METHODS",
    "quantize_flow",
    "dequantize_flow",
    "write_video_flow",
    "read_flow",
    "is_flow_complete",
    "compute_and_write_video_flow",
    "FLOW_META_FILE",
]

FLOW_META_FILE = "flow.json"
_SQRT2 = float(np.sqrt(2.0))


def _cv2():
    import cv2

    return cv2


FLOW_METHODS = ("dis", "dis_fast", "dis_ultrafast", "farneback")
_DIS_PRESETS = {"dis": "MEDIUM", "dis_fast": "FAST", "dis_ultrafast": "ULTRAFAST"}


def compute_flow(frames_rgb, method="dis"):
    """Forward optical flow of a video.

    Args:
        frames_rgb: uint8 ``(T, H, W, 3)`` RGB frames.
        method: one of ``FLOW_METHODS``: OpenCV's DIS optical flow with its medium (``"dis"``),
            fast (``"dis_fast"``) or ultrafast (``"dis_ultrafast"``) preset, or ``"farneback"``.
            At 96 x 128 on one core: 0.90, 0.17 and 0.07 ms per frame for the three DIS presets
            (BENCHMARKS.md, "Speed levers").

    Returns:
        float32 ``(T, H, W, 2)``: ``flow[t]`` is the (x, y) displacement in pixels from frame ``t``
        to frame ``t + 1``; ``flow[T - 1]`` repeats ``flow[T - 2]`` (zeros when ``T == 1``).
    """
    cv2 = _cv2()
    frames = np.asarray(frames_rgb)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"compute_flow: expected frames (T, H, W, 3), got {frames.shape}")
    t, h, w, _ = frames.shape
    out = np.zeros((t, h, w, 2), np.float32)
    if t < 2:
        return out
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    if method in _DIS_PRESETS:
        dis = cv2.DISOpticalFlow_create(
            getattr(cv2, "DISOPTICAL_FLOW_PRESET_" + _DIS_PRESETS[method])
        )
        for i in range(t - 1):
            out[i] = dis.calc(gray[i], gray[i + 1], None)
    elif method == "farneback":
        for i in range(t - 1):
            out[i] = cv2.calcOpticalFlowFarneback(
                gray[i], gray[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0
            )
    else:
        raise ValueError(
            f"compute_flow: unknown method {method!r} (expected one of {FLOW_METHODS})"
        )
    out[t - 1] = out[t - 2]
    return out


def quantize_flow(flow, bound):
    """Flow ``(..., H, W, 2)`` float (pixels) -> uint8 ``(..., H, W, 3)`` (x, y, magnitude)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape[-1] != 2:
        raise ValueError(f"quantize_flow: expected (..., 2) flow, got {flow.shape}")
    bound = float(bound)
    xy = np.clip(np.rint(128.0 + flow * (127.0 / bound)), 0, 255)
    mag = np.sqrt(np.sum(flow.astype(np.float64) ** 2, axis=-1, keepdims=True))
    m = np.clip(np.rint(mag * (255.0 / (bound * _SQRT2))), 0, 255)
    return np.concatenate([xy, m], axis=-1).astype(np.uint8)


def dequantize_flow(q, bound):
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., H, W, 3)``: x, y (pixels), magnitude (pixels)."""
    q = np.asarray(q)
    if q.shape[-1] != 3 or q.dtype != np.uint8:
        raise ValueError(
            f"dequantize_flow: expected uint8 (..., 3) quantised flow, got {q.dtype} {q.shape}"
        )
    if q.size == 0:
        return np.zeros(q.shape, np.float32)
    flat = np.ascontiguousarray(q).reshape(-1, q.shape[-2] if q.ndim > 1 else 1, 3)
    return _cv2().LUT(flat, _lookup_table(float(bound))).reshape(q.shape)


def _lookup_table(bound, _cache={}):
    """float32 ``(1, 256, 3)``: the value of each quantised level of x, y and magnitude."""
    lut = _cache.get(bound)
    if lut is None:
        levels = np.arange(256, dtype=np.float64)
        xy = (levels - 128.0) * (bound / 127.0)
        mag = levels * (bound * _SQRT2 / 255.0)
        lut = np.ascontiguousarray(np.stack([xy, xy, mag], axis=1).astype(np.float32)[None])
        _cache[bound] = lut
    return lut


def _read_meta(folder):
    try:
        with open(os.path.join(folder, FLOW_META_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


_meta_cache = {}  # (folder, mtime_ns, size) -> the folder's flow.json


def _meta_of(folder):
    """``(key, flow.json)`` of a cache folder (read once per modification), or ``(None, None)``;
    ``key`` changes whenever the folder is rewritten (``write_video_flow`` replaces it whole)."""
    try:
        st = os.stat(os.path.join(folder, FLOW_META_FILE))
    except OSError:
        return None, None
    key = (folder, st.st_mtime_ns, st.st_size)
    if key not in _meta_cache:
        _meta_cache[key] = _read_meta(folder)
    return key, _meta_cache[key]


def is_flow_complete(folder, num_frames=None, bound=None):
    """True when ``folder`` holds a complete flow cache of a video (``flow.json`` + every PNG).

    Args:
        num_frames: when given, the cache must have exactly this many frames.
        bound: when given, the cache must have been written with this quantisation bound.
    """
    meta = _read_meta(folder)
    if not meta or "num_frames" not in meta:
        return False
    n = int(meta["num_frames"])
    if num_frames is not None and n != int(num_frames):
        return False
    if bound is not None and abs(float(meta.get("bound", -1)) - float(bound)) > 1e-6:
        return False
    return all(os.path.isfile(os.path.join(folder, f"{i:05d}.png")) for i in range(1, n + 1))


def write_video_flow(folder, flow, bound, method="dis", overwrite=True):
    """Write a video's flow cache atomically (temporary folder, then rename).

    Args:
        folder: ``<root>/flow/<video_id>``.
        flow: float ``(T, H, W, 2)`` flow in pixels (``compute_flow``).
        bound: quantisation bound ``B`` in pixels.
        overwrite: replace an existing folder; otherwise raise ``FileExistsError``.
    """
    cv2 = _cv2()
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(
            f"write_video_flow({folder}): expected flow (T, H, W, 2), got {flow.shape}"
        )
    folder = os.path.abspath(os.fspath(folder))
    if os.path.islink(folder):  # replacing it would write where the link points
        raise ValueError(
            f"The flow folder {folder} is a symbolic link (to {os.readlink(folder)}); the flow "
            "writer replaces only folders it owns: remove the link"
        )
    if os.path.exists(folder) and not overwrite:
        raise FileExistsError(
            f"The flow folder {folder} exists (pass overwrite=True to replace it)"
        )
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    # Leftovers of this video's writers that were killed (their process is gone): removed, so an
    # interrupted run leaves nothing once rerun.  The name carries the host and process id.
    stem = f".{os.path.basename(folder)}.tmp-"
    tmp = temporary_path(parent, stem)
    os.makedirs(tmp)
    try:
        q = quantize_flow(flow, bound)
        for i, frame in enumerate(q):
            fn = os.path.join(tmp, f"{i + 1:05d}.png")
            if not cv2.imwrite(fn, frame):
                raise IOError(f"OpenCV cannot write {fn}")
        meta = {
            "num_frames": int(flow.shape[0]),
            "height": int(flow.shape[1]),
            "width": int(flow.shape[2]),
            "bound": float(bound),
            "method": method,
            "channels": ["x", "y", "magnitude"],
            "encoding": "x_q = clip(round(128 + x * 127 / bound), 0, 255), same for y; "
            "m_q = clip(round(|v| * 255 / (bound * sqrt(2))), 0, 255)",
            "direction": "flow of frame t is t -> t+1; the last frame repeats the previous one",
        }
        with open(os.path.join(tmp, FLOW_META_FILE), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def compute_and_write_video_flow(video_path, folder, bound, method="dis", overwrite=True):
    """Decode a video (mp4 or PNG folder), compute its flow and write the cache to ``folder``.

    The cache gets one flow frame per frame of the video's header count (``VideoReader``); if fewer
    frames decode, the last flow is repeated up to that count so that every frame number the data
    set records can use has a flow frame.

    Returns:
        int: the number of flow frames written.
    """
    reader = VideoReader(video_path)
    n_header = reader.num_frames
    frames = reader.read_all()
    flow = compute_flow(frames, method=method)
    if flow.shape[0] < n_header:
        pad = np.repeat(flow[-1:], n_header - flow.shape[0], axis=0)
        flow = np.concatenate([flow, pad], axis=0)
    write_video_flow(folder, flow, bound, method=method, overwrite=overwrite)
    return int(flow.shape[0])


def read_flow(folder, indices, bound, method=None):
    """Read flow frames of one video from the cache.

    Args:
        folder: ``<root>/flow/<video_id>``.
        indices: 1-based frame numbers (any order, repeats allowed).
        bound: the quantisation bound the cache was written with.
        method: the flow method the reader expects (``INPUT.FLOW.METHOD``), checked against the
            cache's ``flow.json``; ``None``: not checked.

    Returns:
        float32 ``(len(indices), H, W, 3)``: x, y, magnitude in pixels.

    Raises:
        FileNotFoundError: a flow frame is missing (the message names the file and the command
            that writes the cache).
    """
    cv2 = _cv2()
    indices = [int(i) for i in indices]
    root = os.path.dirname(os.path.dirname(os.path.abspath(folder)))
    command = f"python datasets/prepare_flow.py --dataset-root {root}"
    version, meta = _meta_of(folder)
    if meta is None:
        raise FileNotFoundError(
            f"No complete flow cache in {folder} (its {FLOW_META_FILE} is missing or unreadable). "
            f"Compute it with `{command}`"
        )
    if abs(float(meta.get("bound", -1)) - float(bound)) > 1e-6:
        raise ValueError(
            f"The flow cache {folder} was written with bound {meta.get('bound')} px, the config "
            f"reads it with INPUT.FLOW.BOUND {bound}: its values would be decoded wrongly.  Set "
            f"INPUT.FLOW.BOUND {meta.get('bound')}, or rewrite the cache with `{command} "
            f"--bound {bound} --overwrite`"
        )
    cached = meta.get("method", "dis")  # caches written before methods were named: DIS
    if method is not None and cached != method:
        raise ValueError(
            f"The flow cache {folder} was computed with {cached!r}, the config reads it as "
            f"INPUT.FLOW.METHOD {method!r}: the model would see another flow than it computes "
            f"on a new video.  Set INPUT.FLOW.METHOD {cached}, or rewrite the cache with "
            f"`{command} --method {method} --overwrite`"
        )
    cache = {}
    for i in sorted(set(indices)):
        fn = os.path.join(folder, f"{i:05d}.png")
        if not os.path.isfile(fn):
            raise FileNotFoundError(
                f"Flow frame not found: {fn}. Compute the flow cache with `{command}`"
            )
        q = frame_cache.get((version, i))
        if q is None:
            q = cv2.imread(fn, cv2.IMREAD_UNCHANGED)
            if q is None or q.ndim != 3 or q.shape[2] != 3:
                raise IOError(f"Cannot read the flow frame {fn} (expected a 3-channel uint8 PNG)")
            frame_cache.put((version, i), q)
        cache[i] = q
    if not indices:
        raise ValueError(f"read_flow({folder}): no frame numbers given")
    return dequantize_flow(np.stack([cache[i] for i in indices]), bound)
