"""Many videos, many expressions, one set of models: what ``tools/infer.py`` runs.

* ``read_queries_file``: Ref-YouTube-VOS's ``meta_expressions.json`` form
  (``{"videos": {video_id: {"expressions": {exp_id: {"exp": text}}}}}``) or a CSV with the
  columns ``video,exp_id,exp``;
* ``infer_video``: one video's expressions in one pass of ``VideoPredictor`` (the expressions
  share each clip's backbone pass), written in the Ref-YouTube-VOS submission layout::

      DIR/Annotations/<video_id>/<exp_id>/<frame_stem>.png   one 8-bit mask (0 / 255) per frame
      DIR/<video_id>.json                                     RLE masks, boxes, scores, tubes

  ``<frame_stem>``: a folder of frames keeps its files' names; a video file's frames are numbered
  ``00000``, ``00001``, ...  The masks go to a temporary folder renamed into place, then the JSON
  is written (atomically): a video whose JSON exists is finished, and a rerun skips it;
* ``infer_videos``: a list of videos, each failure kept with its error while the others go on.
"""

import csv
import json
import logging
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..data.video import VideoStream
from ..utils.io import atomic_path, check_plain_name, temporary_path
from .predictor import result_record

__all__ = ["infer_video", "infer_videos", "read_queries_file", "video_id_of"]

logger = logging.getLogger(__name__)


def read_queries_file(path: str) -> Dict[str, Dict[str, str]]:
    """``{video_id: {exp_id: text}}`` of a queries file (``.json``: ``meta_expressions.json``;
    otherwise a CSV ``video,exp_id,exp``).  Video and expression ids become paths, so each must
    be a plain name.

    Raises:
        FileNotFoundError, ValueError: naming the file and what is wrong in it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Queries file not found: {path}")
    out: Dict[str, Dict[str, str]] = {}
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            videos = data.get("videos") if isinstance(data, dict) else None
            if not isinstance(videos, dict):
                raise ValueError(
                    f"{path}: expected {{'videos': {{video_id: {{'expressions': ...}}}}}}"
                )
            for vid, entry in videos.items():
                exps = entry.get("expressions") if isinstance(entry, dict) else None
                if not isinstance(exps, dict):
                    raise ValueError(f"{path}: video {vid!r} has no 'expressions' mapping")
                for exp_id, exp in exps.items():
                    text = exp.get("exp") if isinstance(exp, dict) else None
                    if not isinstance(text, str):
                        raise ValueError(f"{path}: expression {vid}/{exp_id} has no 'exp' text")
                    _add(out, path, vid, exp_id, text)
        else:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"video", "exp_id", "exp"} <= set(
                    reader.fieldnames
                ):
                    raise ValueError(
                        f"{path}: expected the CSV columns video,exp_id,exp, got "
                        f"{reader.fieldnames}"
                    )
                for row in reader:
                    _add(out, path, row["video"], row["exp_id"], row["exp"])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    if not out:
        raise ValueError(f"{path} lists no expression")
    return out


def _add(out, path, vid, exp_id, text):
    vid = check_plain_name(str(vid).strip(), "video id", path)
    exp_id = check_plain_name(str(exp_id).strip(), f"expression id of video {vid}", path)
    if exp_id in out.get(vid, {}):
        raise ValueError(f"{path}: expression {vid}/{exp_id} is listed twice")
    out.setdefault(vid, {})[exp_id] = str(text)


def video_id_of(source: str) -> str:
    """A video's id: the file or folder name without extension."""
    return os.path.splitext(os.path.basename(os.path.normpath(source)))[0]


def infer_video(predictor, source: str, expressions: Dict[str, str], output_dir: str) -> int:
    """Segment ``expressions`` (``{exp_id: text}``) in the video ``source`` and write its masks
    and JSON (module docstring).  Returns the number of frames.

    Raises:
        OSError / ValueError: the video cannot be read, a query cannot be segmented, or an output
            cannot be written; nothing of this video is left in ``output_dir`` then.
    """
    vid = video_id_of(source)
    stream = VideoStream(source)
    stems = stream.frame_names or [f"{i:05d}" for i in range(stream.num_frames)]
    exp_ids = list(expressions)
    annotations = os.path.join(output_dir, "Annotations")
    os.makedirs(annotations, exist_ok=True)
    stem = f".{vid}.tmp-"
    tmp = temporary_path(annotations, stem)
    final = os.path.join(annotations, vid)
    records = {e: {"exp": expressions[e], "frames": []} for e in exp_ids}
    n = 0
    try:
        for e in exp_ids:
            os.makedirs(os.path.join(tmp, e))
        for item in predictor(stream, [expressions[e] for e in exp_ids]):
            name = stems[item["index"]] if item["index"] < len(stems) else f"{item['index']:05d}"
            for e, r in zip(exp_ids, item["queries"]):
                _write_mask_png(os.path.join(tmp, e, name + ".png"), r["mask"])
                records[e]["frames"].append({"frame": name, **result_record(r)})
            n += 1
        if os.path.isdir(final):  # an earlier run's masks without their JSON: unfinished
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    info = {
        "video_id": vid,
        "source": os.path.abspath(source),
        "fps": stream.fps,
        "height": stream.height,
        "width": stream.width,
        "num_frames": n,
        "model": predictor.cfg.MODEL.META_ARCHITECTURE,
        "weights": predictor.cfg.MODEL.WEIGHTS,
        "expressions": records,
    }
    with atomic_path(os.path.join(output_dir, f"{vid}.json")) as path, open(path, "w") as f:
        json.dump(info, f)
    return n


def _write_mask_png(path: str, mask: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(path, np.where(mask, 255, 0).astype(np.uint8)):
        raise OSError(f"Cannot write {path}")


def infer_videos(
    predictor, jobs: Sequence[Tuple[str, Dict[str, str]]], output_dir: str, progress=None
) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``infer_video`` over ``jobs`` (``(source, expressions)``), skipping the videos whose JSON
    exists.  Returns ``(done, failed)``: the video ids finished now, and ``(video id, error)`` of
    those that failed (their outputs are not written; the others' are kept).  ``progress``: a
    callable wrapping the iteration (e.g. ``tqdm.tqdm``)."""
    done, failed = [], []
    items = progress(jobs) if progress is not None else jobs
    for source, expressions in items:
        vid = video_id_of(source)
        if os.path.isfile(os.path.join(output_dir, f"{vid}.json")):
            continue
        try:
            infer_video(predictor, source, expressions, output_dir)
            done.append(vid)
        except (OSError, ValueError, KeyError) as e:
            message = e.args[0] if isinstance(e, KeyError) else str(e)
            logger.error("%s: %s", source, message)
            failed.append((vid, message))
    return done, failed
