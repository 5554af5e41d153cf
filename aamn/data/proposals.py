"""Precomputed proposals in detectron2's format: reading and writing.

A proposal file is a pickle of a dict (the format of detectron2's
``detectron2.data.detection_utils``/``load_proposals_into_dataset``)::

    {
        "ids": [str, ...],                      # "<video_id>/<frame:05d>", 1-based frame numbers
        "boxes": [float32 (N_i, 4), ...],       # XYXY_ABS in the decoded frame's pixels
        "objectness_logits": [float32 (N_i,), ...],
        "bbox_mode": BoxMode.XYXY_ABS,
    }

one entry per frame of every video of a split, boxes sorted by decreasing score.
``datasets/prepare_proposals.py`` writes it with ``save_proposals``.
"""

import logging
import os
import pickle
import threading

import numpy as np
from detectron2.structures import BoxMode
from aamn.utils.io import atomic_path
from aamn.utils.safe_pickle import safe_load

__all__ = [
    "check_boxes_in_frame",
    "detector_record",
    "file_sha256",
    "proposal_file_detector",
    "save_proposals",
    "load_proposals",
    "get_proposals",
    "proposal_id",
    "pad_proposals",
    "reads_proposal_files",
]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache = {}  # (pid, abs path) -> ((mtime_ns, size), dict id -> (boxes, logits))

PREPARE_COMMAND = "python datasets/prepare_proposals.py"


def proposal_id(video_id, frame_idx):
    """The id of a frame in a proposal file: ``"<video_id>/<frame:05d>"`` (1-based frame)."""
    return f"{video_id}/{int(frame_idx):05d}"


def reads_proposal_files(cfg, training: bool) -> bool:
    """Whether a model of ``cfg`` reads proposals from files (the data set's, or a video's
    detector) in training or at inference: AAMN does (``INPUT.CLIP.LOAD_PROPOSALS``), except at
    inference with ``MODEL.AAMN.SHARED_DETECTOR.ENABLED``, where it finds its own."""
    if not cfg.INPUT.CLIP.LOAD_PROPOSALS:
        return False
    return training or not cfg.MODEL.AAMN.SHARED_DETECTOR.ENABLED


def pad_proposals(boxes, scores, k, height, width):
    """Exactly ``k`` proposals of one frame: float32 boxes ``(k, 4)`` and scores ``(k,)``.

    The first ``k`` (boxes come sorted by decreasing score); fewer than ``k``: the last box is
    repeated with the frame's lowest score minus 1; no box: the full ``width x height`` frame with
    score -1.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    out_b = np.empty((k, 4), np.float32)
    out_s = np.empty((k,), np.float32)
    n = min(len(boxes), k)
    if n == 0:
        out_b[:] = (0.0, 0.0, float(width), float(height))
        out_s[:] = -1.0
        return out_b, out_s
    out_b[:n], out_s[:n] = boxes[:n], scores[:n]
    if n < k:
        out_b[n:] = boxes[n - 1]
        out_s[n:] = scores[:n].min() - 1.0
    return out_b, out_s


def check_boxes_in_frame(boxes, height, width, where) -> None:
    """``ValueError`` naming ``where`` when a box lies further outside the ``width x height``
    frame than the frame's own size (boxes in another resolution's pixels, or garbage)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    lo = np.array([-width, -height, -width, -height], np.float64)
    hi = np.array([2 * width, 2 * height, 2 * width, 2 * height], np.float64)
    bad = ((b < lo) | (b > hi)).any(axis=1)
    if bad.any():
        raise ValueError(
            f"{where}: the box {b[bad][0].tolist()} lies far outside the {width}x{height} (WxH) "
            "frame; proposals are in the decoded frame's pixels"
        )


def save_proposals(path, ids, boxes, logits, detector=None):
    """Write a proposal file atomically (temporary file in the same folder, then rename).

    Args:
        path: destination ``.pkl``.
        ids: list of ``N_frames`` ids (``proposal_id(video_id, frame)``).
        boxes: list of ``(N_i, 4)`` XYXY_ABS boxes, one per id.
        logits: list of ``(N_i,)`` objectness logits, one per id.
        detector: the detector that made them (``detector_record``), stored under ``"detector"``
            so that a model trained on the file can name it (``proposal_file_detector``).

    Boxes are stored as float32 and sorted by decreasing logit.
    """
    ids = [str(i) for i in ids]
    if not (len(ids) == len(boxes) == len(logits)):
        raise ValueError(
            f"save_proposals({path}): {len(ids)} ids, {len(boxes)} box arrays and {len(logits)} "
            "logit arrays; need one of each per frame"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"save_proposals({path}): duplicate ids")
    out_boxes, out_logits = [], []
    for i, b, s in zip(ids, boxes, logits):
        b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(s, dtype=np.float32).reshape(-1)
        if b.shape[0] != s.shape[0]:
            raise ValueError(
                f"save_proposals({path}): {i}: {b.shape[0]} boxes but {s.shape[0]} logits"
            )
        order = np.argsort(-s, kind="stable")
        out_boxes.append(np.ascontiguousarray(b[order]))
        out_logits.append(np.ascontiguousarray(s[order]))
    data = {
        "ids": ids,
        "boxes": out_boxes,
        "objectness_logits": out_logits,
        "bbox_mode": BoxMode.XYXY_ABS,
    }
    if detector is not None:
        data["detector"] = dict(detector)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)


def file_sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def detector_record(cfg, weights_file: str) -> dict:
    """What names a proposal detector: its config (YAML text, read back as plain YAML), the
    weights' location as given (``MODEL.WEIGHTS``: a path made absolute, or a URL) and the SHA-256
    of the file read (``weights_file``, local)."""
    weights = str(cfg.MODEL.WEIGHTS)
    if "://" not in weights:
        weights = os.path.abspath(weights)
    return {"config": cfg.dump(), "weights": weights, "sha256": file_sha256(weights_file)}


def proposal_file_detector(path):
    """The ``"detector"`` record of a proposal file (``save_proposals``), or None."""
    data = safe_load(os.fspath(path), "proposal file (ids, boxes and scores)")
    record = data.get("detector") if isinstance(data, dict) else None
    return dict(record) if isinstance(record, dict) else None


def load_proposals(path):
    """Read a proposal file into ``{id: (boxes float32 (N, 4) XYXY_ABS, logits float32 (N,))}``.

    Boxes come back sorted by decreasing logit.

    Raises:
        FileNotFoundError: no such file (the message names the command that writes it).
        ValueError: the file is not a detectron2 proposal pickle, or no frame of it holds a box
            (frames without a box, when others have some, are named in a warning and padded
            with the whole frame by ``pad_proposals``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Proposal file not found: {path}. Write it with `{PREPARE_COMMAND}` "
            "(or set DATASETS.PROPOSAL_FILES_TRAIN / PROPOSAL_FILES_TEST)"
        )
    # Plain data only: a proposal file from elsewhere cannot run code (aamn.utils.safe_pickle).
    data = safe_load(path, "proposal file (ids, boxes and scores)")
    if not isinstance(data, dict) or not {"ids", "boxes", "objectness_logits"} <= set(data):
        raise ValueError(
            f"{path} is not a detectron2 proposal file (expected a dict with 'ids', 'boxes', "
            "'objectness_logits')"
        )
    mode = data.get("bbox_mode", BoxMode.XYXY_ABS)
    lengths = {k: len(data[k]) for k in ("ids", "boxes", "objectness_logits")}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"{path}: 'ids', 'boxes' and 'objectness_logits' differ in length {lengths}"
        )
    out = {}
    for i, b, s in zip(data["ids"], data["boxes"], data["objectness_logits"]):
        try:
            b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
            s = np.asarray(s, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: the proposals of {i!r} are not (N, 4) boxes: {e}") from None
        if len(b) != len(s) or not (np.isfinite(b).all() and np.isfinite(s).all()):
            raise ValueError(
                f"{path}: the proposals of {i!r} have {len(b)} boxes and {len(s)} scores, or a "
                "value that is not finite; expected N boxes (x0, y0, x1, y1) and N scores"
            )
        if mode != BoxMode.XYXY_ABS:
            b = np.asarray(BoxMode.convert(b, mode, BoxMode.XYXY_ABS), dtype=np.float32)
        inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if inverted.any():
            raise ValueError(
                f"{path}: the proposals of {i!r} hold {int(inverted.sum())} inverted box(es), e.g. "
                f"{b[inverted][0].tolist()}; boxes are (x0, y0, x1, y1) with x1 >= x0, y1 >= y0"
            )
        order = np.argsort(-s, kind="stable")
        out[str(i)] = (b[order], s[order])
    empty = [i for i, (b, _) in out.items() if not len(b)]
    if out and len(empty) == len(out):
        raise ValueError(
            f"{path} holds no box in any of its {len(out)} frames: the detector found nothing "
            "(another data set, or a detector that was not trained); a model linking these "
            "proposals would see only whole frames"
        )
    if empty:
        logger.warning(
            "%s: %d of %d frames hold no box (e.g. %s); each of them gets the whole frame as its "
            "proposals, at the lowest score (logit -1)",
            path,
            len(empty),
            len(out),
            empty[0],
        )
    return out


def get_proposals(path):
    """``load_proposals(path)``, loaded once per process and file version (lazy cache)."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
        version = (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        version = None
    key = (os.getpid(), path)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
    data = load_proposals(path)
    logger.info("Loaded proposals of %d frames from %s", len(data), path)
    with _lock:
        _cache[key] = (version, data)
    return data
