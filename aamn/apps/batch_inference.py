"""Many videos, many expressions, one set of models: what ``tools/infer.py`` runs.

* ``read_queries_file``: Ref-YouTube-VOS's ``meta_expressions.json`` form
  (``{"videos": {video_id: {"expressions": {exp_id: {"exp": text}}}}}``) or a CSV with the
  columns ``video,exp_id,exp`` (Excel's UTF-8 BOM admitted); ids must be plain names, every
  expression a non-empty text, nothing listed twice;
* ``infer_video``: one video's expressions in one pass of ``VideoPredictor`` (the expressions
  share each clip's backbone pass), written in the Ref-YouTube-VOS submission layout::

      DIR/Annotations/<video_id>/<exp_id>/<frame_stem>.png   one 8-bit mask (0 / 255) per frame
      DIR/<video_id>.json                                     RLE masks, boxes, scores, tubes
      DIR/.aamn-infer/                                        the run's own state (below)

  ``<frame_stem>``: a folder of frames keeps its files' names; a video file's frames are numbered
  ``00000``, ``00001``, ...;
* ``plan_videos``: what a run does with each video, decided before a model is loaded.

What is whose.  The masks are written into ``.aamn-infer/<temporary>/`` and renamed into
``Annotations/<video_id>`` once whole; before the rename, the mark ``.aamn-infer/owned/<video_id>``
says that the folder is this tool's.  The video's JSON is written last (atomically) and holds the
video's *record*: its expressions and the model (SHA-256 of the config, of the weights and of the
proposal detector it names).  So:

* a video whose JSON exists with the same record is finished and skipped;
* a JSON with another record (an expression added, removed or changed; another config or model)
  is named and the run refused before anything is written, unless ``overwrite``;
* an ``Annotations/<video_id>`` with the mark but without its JSON is unfinished and redone;
* an ``Annotations/<video_id>`` or ``<video_id>.json`` without the mark (a data set's ground
  truth, another tool's files) is never replaced: the run is refused naming it.

A run's share of the videos (``shard_jobs``): ``--shard i/n`` takes every n-th video from the
i-th, and the processes of a run (``--num-gpus``, ``--num-machines``) split that share the same
way, so each video is written by one process; every video's outputs depend on that video alone,
so the union of the shards is, byte for byte, one run's.
"""

import csv
import hashlib
import json
import logging
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.proposals import file_sha256
from ..data.video import VideoStream
from ..utils.io import atomic_path, check_plain_name, local_weights_file, temporary_path
from ..engine.predictor import result_record

__all__ = [
    "STATE_DIR",
    "VideoPlan",
    "check_output_folder",
    "infer_video",
    "infer_videos",
    "model_record",
    "plan_videos",
    "read_queries_file",
    "shard_jobs",
    "video_id_of",
]

logger = logging.getLogger(__name__)

# The run's own state inside the output folder: temporaries, marks, failures.
STATE_DIR = ".aamn-infer"


class InferOutputError(ValueError):
    """The output folder holds files this tool did not write where it would write, or results of
    another record (the message names them)."""


def read_queries_file(path: str) -> Dict[str, Dict[str, str]]:
    """``{video_id: {exp_id: text}}`` of a queries file (``.json``: ``meta_expressions.json``;
    otherwise a CSV ``video,exp_id,exp``; a UTF-8 BOM is admitted).  Video and expression ids
    become paths, so each must be a plain name; every expression a text with a word.

    Raises:
        FileNotFoundError, ValueError: naming the file and what is wrong in it (the line of a
            CSV row, the ids of a JSON entry): an id listed twice, a row with a missing field,
            an empty expression.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Queries file not found: {path}")
    out: Dict[str, Dict[str, str]] = {}
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f, object_pairs_hook=lambda pairs: _no_twice(pairs, path))
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
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"video", "exp_id", "exp"} <= set(
                    reader.fieldnames
                ):
                    raise ValueError(
                        f"{path}: expected the CSV columns video,exp_id,exp, got "
                        f"{reader.fieldnames}"
                    )
                for row in reader:
                    missing = [k for k in ("video", "exp_id", "exp") if row.get(k) is None]
                    if missing:
                        raise ValueError(
                            f"{path}, line {reader.line_num}: the row has no {', '.join(missing)} "
                            "(each row is video,exp_id,exp)"
                        )
                    _add(
                        out,
                        f"{path}, line {reader.line_num}",
                        row["video"],
                        row["exp_id"],
                        row["exp"],
                    )
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    if not out:
        raise ValueError(f"{path} lists no expression")
    return out


def _no_twice(pairs, path):
    """A JSON object's dict; a key given twice (a video or an expression id) is an error."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{path}: the key {key!r} is listed twice in one object")
        out[key] = value
    return out


def _add(out, where, vid, exp_id, text):
    vid = check_plain_name(str(vid).strip(), "video id", where)
    exp_id = check_plain_name(str(exp_id).strip(), f"expression id of video {vid}", where)
    if exp_id in out.get(vid, {}):
        raise ValueError(f"{where}: expression {vid}/{exp_id} is listed twice")
    if not str(text).strip():
        raise ValueError(f"{where}: expression {vid}/{exp_id} is empty")
    out.setdefault(vid, {})[exp_id] = str(text)


def video_id_of(source: str) -> str:
    """A video's id: the file or folder name without extension."""
    return os.path.splitext(os.path.basename(os.path.normpath(source)))[0]


def model_record(cfg, detector_config: str = "", detector_weights: str = "") -> Dict[str, str]:
    """What a video's results were computed with: the SHA-256 of the config (``cfg.dump()``
    with the weights' path left out: the file is hashed itself), of the weights file, and of
    the detector files given to override AAMN's recorded detector."""
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.WEIGHTS = ""
    record = {
        "config": hashlib.sha256(plain.dump().encode("utf-8")).hexdigest(),
        "weights": file_sha256(local_weights_file(cfg.MODEL.WEIGHTS)),
    }
    if detector_config:
        record["detector_config"] = file_sha256(detector_config)
    if detector_weights:
        record["detector_weights"] = file_sha256(local_weights_file(detector_weights))
    return record


def shard_jobs(jobs: Sequence, shard: Tuple[int, int] = (0, 1), rank: int = 0, world: int = 1):
    """The jobs of shard ``shard = (i, n)`` handled by process ``rank`` of ``world``: every n-th
    job from the i-th, then every ``world``-th of those from the ``rank``-th.  Over all shards
    and ranks each job comes exactly once."""
    i, n = shard
    return list(jobs)[i::n][rank::world]


def check_output_folder(output_dir: str) -> None:
    """``InferOutputError`` when ``output_dir`` is a file, or a training folder (holding
    ``last_checkpoint`` or ``model_final.pth``): inference never writes into one."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InferOutputError(f"--output {output_dir} is a file; name a folder")
    for name in ("last_checkpoint", "model_final.pth"):
        if os.path.isfile(os.path.join(output_dir, name)):
            raise InferOutputError(
                f"--output {output_dir} is a training folder (it holds {name}); inference "
                "writes into a folder of its own"
            )


class VideoPlan:
    """What a run does with one video: ``action`` is ``"run"``, ``"skip"`` (finished with the
    same record) or ``"redo"`` (``overwrite`` of another record, or unfinished)."""

    def __init__(self, source: str, expressions: Dict[str, str], action: str, reason: str = ""):
        self.source, self.expressions, self.action, self.reason = (
            source,
            expressions,
            action,
            reason,
        )
        self.video_id = video_id_of(source)


def _owned_mark(output_dir: str, vid: str) -> str:
    return os.path.join(output_dir, STATE_DIR, "owned", vid)


def _record_of(expressions: Dict[str, str], model: Dict[str, str]) -> Dict:
    return {"expressions": dict(sorted(expressions.items())), "model": dict(model)}


def _difference(old: Dict, new: Dict) -> str:
    """What differs between two records, in words."""
    parts = []
    a, b = old.get("expressions", {}), new["expressions"]
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    changed = sorted(e for e in set(a) & set(b) if a[e] != b[e])
    for words, ids in (("added", added), ("removed", removed), ("changed", changed)):
        if ids:
            parts.append(f"expressions {words}: {', '.join(ids)}")
    for key in sorted(set(old.get("model", {})) | set(new["model"])):
        if old.get("model", {}).get(key) != new["model"].get(key):
            parts.append(f"another {key.replace('_', ' ')}")
    return "; ".join(parts) or "another record"


def _first_few(items: Sequence[str], sep: str, n: int = 5) -> str:
    """The first ``n`` of ``items`` joined by ``sep``, and how many more."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return sep.join(items[:n]) + more


def plan_videos(
    jobs: Sequence[Tuple[str, Dict[str, str]]],
    output_dir: str,
    model: Dict[str, str],
    overwrite: bool = False,
) -> List[VideoPlan]:
    """A ``VideoPlan`` per job (``(source, {exp_id: text})``), checked against what
    ``output_dir`` holds (the module docstring), before anything is written.

    Raises:
        InferOutputError: naming every video whose outputs this tool did not write, and (without
            ``overwrite``) every finished video whose record differs, with what differs.
    """
    plans, foreign, stale = [], [], []
    for source, expressions in jobs:
        vid = video_id_of(source)
        masks = os.path.join(output_dir, "Annotations", vid)
        result = os.path.join(output_dir, f"{vid}.json")
        owned = os.path.isfile(_owned_mark(output_dir, vid))
        new = _record_of(expressions, model)
        if not owned and (os.path.lexists(masks) or os.path.lexists(result)):
            foreign.append(masks if os.path.lexists(masks) else result)
            continue
        if not os.path.isfile(result):
            action = "redo" if os.path.lexists(masks) else "run"
            plans.append(VideoPlan(source, expressions, action, "unfinished"))
            continue
        try:
            with open(result, encoding="utf-8") as f:
                old = json.load(f).get("record", {})
        except (OSError, ValueError, AttributeError):
            old = {}
        if old == new:
            plans.append(VideoPlan(source, expressions, "skip"))
        elif overwrite:
            plans.append(VideoPlan(source, expressions, "redo", _difference(old, new)))
        else:
            stale.append(f"{vid} ({_difference(old, new)})")
    if foreign:
        raise InferOutputError(
            f"{output_dir} holds outputs this tool did not write, which it never replaces: "
            f"{_first_few(foreign, ', ')}; write into another --output folder"
        )
    if stale:
        raise InferOutputError(
            f"{output_dir} holds results of other expressions or another model for "
            f"{len(stale)} video(s): {_first_few(stale, '; ')}; pass --overwrite to redo them, "
            "or write into another --output folder"
        )
    return plans


def infer_video(
    predictor,
    source: str,
    expressions: Dict[str, str],
    output_dir: str,
    model: Optional[Dict[str, str]] = None,
) -> int:
    """Segment ``expressions`` (``{exp_id: text}``) in the video ``source`` and write its masks
    and JSON (module docstring), replacing only this tool's own earlier outputs of the video.
    ``model``: its ``model_record`` (kept in the JSON).  Returns the number of frames.

    Raises:
        OSError / ValueError: the video cannot be read, a query cannot be segmented, or an output
            cannot be written; nothing new of this video is left in ``output_dir`` then.
        InferOutputError: ``Annotations/<video_id>`` exists and is not this tool's.
    """
    vid = video_id_of(source)
    stream = VideoStream(source)
    stems = stream.frame_names or [f"{i:05d}" for i in range(stream.num_frames)]
    exp_ids = sorted(expressions)
    state = os.path.join(output_dir, STATE_DIR)
    os.makedirs(os.path.join(state, "owned"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "Annotations"), exist_ok=True)
    tmp = temporary_path(state, f".{vid}.tmp-")
    final = os.path.join(output_dir, "Annotations", vid)
    result = os.path.join(output_dir, f"{vid}.json")
    mark = _owned_mark(output_dir, vid)
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
        if os.path.lexists(final) and not os.path.isfile(mark):
            raise InferOutputError(
                f"{final} was not written by this tool; it is never replaced (write into "
                "another --output folder)"
            )
        if os.path.isfile(result):  # another record's result, being redone: unfinished from here
            os.remove(result)
        with open(mark, "w") as f:  # the folder about to appear is this tool's
            f.write(vid + "\n")
        if os.path.lexists(final):  # this tool's unfinished or redone masks
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
        "record": _record_of(expressions, model or {}),
        "expressions": records,
    }
    with atomic_path(result) as path, open(path, "w") as f:
        json.dump(info, f)
    return n


def _write_mask_png(path: str, mask: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(path, np.where(mask, 255, 0).astype(np.uint8)):
        raise OSError(f"Cannot write {path}")


def infer_videos(
    predictor,
    plans: Sequence[VideoPlan],
    output_dir: str,
    model: Optional[Dict[str, str]] = None,
    progress=None,
) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``infer_video`` over the ``plans`` that are not ``"skip"``.  Returns ``(done, failed)``:
    the video ids finished now, and ``(video id, error)`` of those that failed (their outputs
    are not written; the others' are kept).  ``progress``: a callable wrapping the iteration
    (e.g. ``tqdm.tqdm``)."""
    done, failed = [], []
    todo = [p for p in plans if p.action != "skip"]
    for plan in progress(todo) if progress is not None else todo:
        try:
            infer_video(predictor, plan.source, plan.expressions, output_dir, model)
            done.append(plan.video_id)
        except (OSError, ValueError, KeyError) as e:
            message = e.args[0] if isinstance(e, KeyError) else str(e)
            logger.error("%s: %s", plan.source, message)
            failed.append((plan.video_id, message))
    return done, failed
