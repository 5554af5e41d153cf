"""Writers for the on-disk layouts of A2D Sentences and J-HMDB Sentences.

These small functions write single files exactly as the public releases store them (see the
data-set documentation: ``Release/videoset.csv``, ``clips320H/<video>.mp4``, the per-frame ``.h5``
files of ``a2d_annotation_with_instances``, J-HMDB's ``Rename_Images`` PNG folders and
``puppet_mask.mat``).  The test fixtures and the synthetic benchmark generator both use them, so the
layout is written in one place only and the loaders read the synthetic data exactly as they read
the real releases.

Every writer:

- creates the parent folders it needs;
- writes to a temporary file in the destination folder and renames it into place, so an
  interrupted run never leaves a half-written file under the final name;
- is deterministic: the same inputs give byte-identical files (no time stamps in the ``.h5`` or
  ``.mat`` headers).
"""

import csv
import io
import os

import numpy as np
from aamn.utils.io import atomic_path

__all__ = [
    "write_video_mp4",
    "write_a2d_frame_h5",
    "write_a2d_videoset_csv",
    "write_a2d_annotation_txt",
    "write_a2d_missed_videos",
    "write_video_list",
    "VAL_LIST",
    "write_jhmdb_frames",
    "write_jhmdb_puppet_mask",
    "write_jhmdb_annotation_txt",
]

# The validation split of an A2D-layout tree: training-usage videos of ``Release/videoset.csv``
# held out from training, one id per line, at the tree's root (not a file of the release: the
# synthetic generator writes it, ``datasets/make_val_split.py`` makes one for the real release).
VAL_LIST = "aamn_val_videos.txt"

# Fixed 116-byte description of the MATLAB v5 header (scipy writes the current date there).
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by aamn.data.layout_writers"


def _write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _csv_text(rows, header=None):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    return buf.getvalue().encode("utf-8")


def _check_frames(frames, what):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{what}: expected RGB frames of shape (T, H, W, 3) and dtype uint8, got shape "
            f"{frames.shape} and dtype {frames.dtype}"
        )
    if frames.shape[0] == 0:
        raise ValueError(f"{what}: no frames to write")
    return frames


def write_video_mp4(path, frames_rgb, fps=24):
    """Write a video as A2D's ``Release/clips320H/<video_id>.mp4``.

    Args:
        path: destination ``.mp4`` file.
        frames_rgb: uint8 array ``(T, H, W, 3)``, RGB, frame ``t`` of the array is frame ``t + 1``
            of the annotation files.
        fps: frames per second stored in the container.

    The codec is OpenCV's ``mp4v`` (MPEG-4 part 2; the release itself uses H.264, which OpenCV's
    pip wheels can read but not write).  The codec is lossy: pixel values come back close to, not
    equal to, the written ones.  Every frame written is decodable, so the decoded frame count
    equals ``T``.  ``H`` and ``W`` must be even (4:2:0 chroma); an odd size raises ``ValueError``.
    """
    import cv2

    frames = _check_frames(frames_rgb, f"write_video_mp4({path})")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(
            f"write_video_mp4({path}): frame size {w}x{h} (W x H) must be even in both dimensions "
            "(the 'mp4v' encoder stores 4:2:0 chroma and would silently crop an odd size)"
        )
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot open a 'mp4v' video writer for {path} ({w}x{h})")
        try:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        finally:
            writer.release()
        if os.path.getsize(tmp) == 0:
            raise RuntimeError(f"OpenCV wrote an empty video for {path}")


def write_a2d_frame_h5(path, instance_ids, masks, boxes, actor_action_ids=None):
    """Write one annotated frame as A2D's ``a2d_annotation_with_instances/<video>/<frame:05d>.h5``.

    Args:
        path: destination ``.h5`` file; its name is the 1-based frame number (``00017.h5``).
        instance_ids: ``(N,)`` ints, the instance ids present in the frame (``N >= 1``).
        masks: bool ``(N, H, W)``, the instance masks in image orientation (row = y).
        boxes: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels.
        actor_action_ids: optional ``(N,)`` ints, A2D's actor-action codes ``actor * 10 + action``
            (1-based each, as in ``videoset.csv``); written as the ``id`` dataset when given.

    Datasets written, in MATLAB orientation as in the release (MATLAB stores arrays column-major,
    so HDF5 sees them transposed):

    - ``reMask``: uint8 ``(N, W, H)``, or ``(W, H)`` when ``N == 1`` (no leading axis),
      gzip-compressed;
    - ``reBBox``: float64 ``(4, N)``;
    - ``instance``: float64 ``(N,)``;
    - ``id``: float64 ``(N,)`` (only with ``actor_action_ids``).
    """
    import h5py

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"write_a2d_frame_h5({path}): masks must be (N, H, W), got {masks.shape}")
    n = masks.shape[0]
    ids = np.asarray(instance_ids, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if n else np.zeros((0, 4))
    if n == 0 or ids.shape[0] != n or boxes.shape[0] != n:
        raise ValueError(
            f"write_a2d_frame_h5({path}): need N >= 1 instances with N ids, N masks and N boxes; "
            f"got {ids.shape[0]} ids, {n} masks, {boxes.shape[0]} boxes"
        )
    re_mask = np.ascontiguousarray(np.transpose(masks.astype(np.uint8) != 0, (0, 2, 1))).astype(
        np.uint8
    )
    if n == 1:
        re_mask = re_mask[0]
    with atomic_path(path) as tmp:
        # track_times=False keeps creation times out of the object headers (byte-identical files).
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            f.create_dataset("instance", data=ids, track_times=False)
            # gzip keeps a data set with a mask for every frame small; readers are unaffected.
            f.create_dataset(
                "reMask", data=re_mask, track_times=False, compression="gzip", compression_opts=4
            )
            f.create_dataset("reBBox", data=np.ascontiguousarray(boxes.T), track_times=False)
            if actor_action_ids is not None:
                codes = np.asarray(actor_action_ids, dtype=np.float64).reshape(-1)
                if codes.shape[0] != n:
                    raise ValueError(
                        f"write_a2d_frame_h5({path}): {codes.shape[0]} actor_action_ids for {n} "
                        "instances"
                    )
                f.create_dataset("id", data=codes, track_times=False)


def write_a2d_videoset_csv(path, rows):
    """Write A2D's ``Release/videoset.csv``: no header, 9 columns per row.

    Args:
        rows: sequences of 9 values each: video id, actor-action label, start time, end time,
            height, width, number of frames, number of annotated frames, usage (0 = train,
            1 = test).
    """
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != 9:
            raise ValueError(
                f"write_a2d_videoset_csv({path}): row {i} has {len(r)} columns, need 9"
            )
    _write_bytes(path, _csv_text(rows))


def write_a2d_annotation_txt(path, rows):
    """Write A2D Sentences' ``text_annotations/a2d_annotation.txt``.

    Args:
        rows: ``(video_id, instance_id, query)`` triples; ``instance_id`` is written as text, so a
            string such as ``"1 (copy)"`` (the release's one mistaken row) can be reproduced.

    The file starts with the header ``video_id,instance_id,query``; a query holding a comma is
    quoted (CSV)."""
    rows = [(str(v), str(i), str(q)) for v, i, q in rows]
    _write_bytes(path, _csv_text(rows, header=("video_id", "instance_id", "query")))


def write_video_list(path, video_ids):
    """Write a list of video ids, one per line (``a2d_missed_videos.txt``, :data:`VAL_LIST`)."""
    _write_bytes(path, "".join(f"{v}\n" for v in video_ids).encode("utf-8"))


def write_a2d_missed_videos(path, video_ids):
    """Write ``text_annotations/a2d_missed_videos.txt``: one video id per line."""
    write_video_list(path, video_ids)


def write_jhmdb_frames(folder, frames_rgb):
    """Write a J-HMDB video as ``Rename_Images/<action>/<video_id>/00001.png, 00002.png, ...``.

    Args:
        folder: the video's frame folder (created).
        frames_rgb: uint8 ``(T, H, W, 3)`` RGB; array index ``t`` is written as ``t + 1``.

    PNG is lossless: the frames read back equal the written ones.
    """
    import cv2

    frames = _check_frames(frames_rgb, f"write_jhmdb_frames({folder})")
    os.makedirs(folder, exist_ok=True)
    for t, frame in enumerate(frames):
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]))
        if not ok:
            raise RuntimeError(f"OpenCV cannot encode frame {t + 1} of {folder} as PNG")
        _write_bytes(os.path.join(folder, f"{t + 1:05d}.png"), buf.tobytes())


def write_jhmdb_puppet_mask(path, masks):
    """Write J-HMDB's ``puppet_mask/<action>/<video_id>/puppet_mask.mat``.

    Args:
        masks: bool ``(T, H, W)``: the actor's mask in frames ``1..T`` (``T`` may be smaller than
            the number of frames of the video, as for some release videos).

    The file is MATLAB v5 (``scipy.io.savemat``, compressed) with one variable ``part_mask`` of
    shape ``(H, W, T)``, uint8 (1 = actor).  The header's free-text description is a fixed string
    instead of scipy's creation date, so the file is deterministic.
    """
    from scipy.io import savemat

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(
            f"write_jhmdb_puppet_mask({path}): masks must be (T, H, W), got {masks.shape}"
        )
    part_mask = np.ascontiguousarray(np.transpose(masks != 0, (1, 2, 0)).astype(np.uint8))
    buf = io.BytesIO()
    savemat(buf, {"part_mask": part_mask}, do_compression=True, format="5")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    _write_bytes(path, bytes(data))


def write_jhmdb_annotation_txt(path, rows):
    """Write J-HMDB Sentences' ``jhmdb_annotation.txt``: header ``video_id,query``, then rows.

    Args:
        rows: ``(video_id, query)`` pairs.
    """
    rows = [(str(v), str(q)) for v, q in rows]
    _write_bytes(path, _csv_text(rows, header=("video_id", "query")))
