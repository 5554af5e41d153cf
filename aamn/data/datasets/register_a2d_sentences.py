"""A2D Sentences as detectron2 data sets.

Layout read (the public release, unpacked as is)::

    <root>/Release/videoset.csv                    no header; 9 columns (see ``read_videoset``)
    <root>/Release/clips320H/<video_id>.mp4
    <root>/text_annotations/a2d_annotation.txt     header video_id,instance_id,query
    <root>/text_annotations/a2d_missed_videos.txt  one video id per line (optional)
    <root>/<annotation_dir>/<video_id>/<frame:05d>.h5

Two kinds of data set are registered from one tree:

- ``register_a2d_sentences(name, root, split)``: the single-frame protocol, one record per
  (query, annotated frame) pair in which the queried instance is present (the record contract of
  the data-set documentation);
- ``register_a2d_frames(name, root, split)``: one record per annotated frame with all its
  instances, detectron2's detection format, for training the proposal detector.

The index (queries x annotated frames, with the masks as COCO RLE) is built once per split and
annotation folder and cached in ``<root>/cache/`` (or under ``$AAMN_CACHE``, default
``~/.cache/aamn``, when the root is read-only).  It is rebuilt when any source file changes
(``videoset.csv``, the annotation and missed-video lists, an ``.h5`` file, a video): the cache
holds a fingerprint of their names, sizes and modification times.
"""

import csv
import hashlib
import logging
import os
import re

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from aamn.utils.io import check_plain_name
from aamn.utils.masks import mask_to_box, mask_to_rle

from ..layout_writers import VAL_LIST
from ..video import video_info
from .common import (
    A2D_ACTIONS,
    A2D_ACTORS,
    cache_dir_for,
    cached_index,
    file_signature,
    layout_metadata,
    read_query_csv,
    register_video_layout,
    unregister,
)

__all__ = [
    "A2D_ACTORS",
    "A2D_ACTIONS",
    "DEFAULT_ANNOTATION_DIR",
    "register_a2d_sentences",
    "register_a2d_frames",
    "load_a2d_sentences",
    "load_a2d_frames",
    "read_a2d_frame_h5",
    "read_videoset",
    "read_a2d_annotations",
]

logger = logging.getLogger(__name__)

DEFAULT_ANNOTATION_DIR = "text_annotations/a2d_annotation_with_instances"
# A split and the usage value of ``videoset.csv`` its videos carry; ``val`` is the part of the
# training videos listed in ``VAL_LIST`` (and ``train`` is the rest of them).
SPLITS = {"train": 0, "val": 0, "test": 1}

_H5_NAME = re.compile(r"^(\d+)\.h5$")


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


# ---------------------------------------------------------------------------- release files
def _paths(root, annotation_dir):
    return {
        "videoset": os.path.join(root, "Release", "videoset.csv"),
        "clips": os.path.join(root, "Release", "clips320H"),
        "annotations": os.path.join(root, "text_annotations", "a2d_annotation.txt"),
        "missed": os.path.join(root, "text_annotations", "a2d_missed_videos.txt"),
        "val": os.path.join(root, VAL_LIST),
        "masks": os.path.join(root, annotation_dir),
    }


def _check_tree(root, paths):
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"A2D Sentences root not found: {root}. Place the release there (Release/, "
            "text_annotations/), set $AAMN_DATASETS, or call "
            "register_a2d_sentences(name, root, split) with its location."
        )
    for key, what in (
        ("videoset", "file"),
        ("clips", "folder"),
        ("annotations", "file"),
        ("masks", "folder"),
    ):
        p = paths[key]
        ok = os.path.isdir(p) if what == "folder" else os.path.isfile(p)
        if not ok:
            raise FileNotFoundError(f"A2D Sentences release {what} not found: {p} (root {root})")


def read_videoset(path):
    """Read ``Release/videoset.csv`` (no header).

    Returns:
        dict video_id -> dict(label, start, end, height, width, num_frames, num_annotated, usage)
        with ``usage`` 0 = train, 1 = test.
    """
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 9:
                raise ValueError(
                    f"{path}, line {lineno}: {len(row)} columns, expected 9 (no header)"
                )
            vid = check_plain_name(row[0].strip(), f"video id of line {lineno}", path)
            try:
                out[vid] = {
                    "label": int(float(row[1])),
                    "start": float(row[2]),
                    "end": float(row[3]),
                    "height": int(float(row[4])),
                    "width": int(float(row[5])),
                    "num_frames": int(float(row[6])),
                    "num_annotated": int(float(row[7])),
                    "usage": int(float(row[8])),
                }
            except ValueError as e:
                raise ValueError(f"{path}, line {lineno}: {e} in {row!r}") from e
    return out


def read_a2d_annotations(path):
    """Read ``a2d_annotation.txt``.

    Returns:
        (rows, dropped): ``rows`` a list of ``(video_id, instance_id int, query)`` with the query
        lower-cased and its white space collapsed; ``dropped`` the rows whose instance id is not an
        integer (the release's ``1 (copy)`` row), as ``(line number, video_id, instance_id text)``.
    """
    rows, dropped = [], []
    for lineno, row in read_query_csv(path, ("video_id", "instance_id", "query")):
        vid = check_plain_name(row[0].strip(), f"video id of line {lineno}", path)
        iid = row[1].strip()
        try:
            iid_int = int(iid)
        except ValueError:
            dropped.append((lineno, vid, iid))
            continue
        rows.append((vid, iid_int, row[2]))
    return rows, dropped


def read_missed_videos(path):
    """The video ids of a list file (one per line; ``a2d_missed_videos.txt``, :data:`VAL_LIST`),
    each a plain name; an empty set when the file does not exist."""
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8") as f:
        return {
            check_plain_name(line.strip(), f"video id of line {lineno}", path)
            for lineno, line in enumerate(f, start=1)
            if line.strip()
        }


class _AnnotationError(ValueError):
    """An annotation file that reads but holds the wrong content (the message names it)."""


def read_a2d_frame_h5(path):
    """Read one annotated frame ``<frame:05d>.h5``.

    Returns:
        dict with ``instance_ids`` (list of N ints), ``masks`` bool ``(N, H, W)`` (image
        orientation: MATLAB's ``reMask`` ``(N, W, H)`` / ``(W, H)`` transposed), ``boxes`` float
        ``(N, 4)`` from ``reBBox`` (or None), ``codes`` (N ints from ``id``, actor*10+action, or
        None).

    Raises:
        IOError: the file is not a readable HDF5 file (missing, truncated, a damaged body).
        ValueError: datasets missing, of inconsistent shapes, or values a mask / id cannot have
            (a damaged body that still parses).
    """
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"A2D annotation file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            for key in ("instance", "reMask"):
                if key not in f:
                    raise _AnnotationError(
                        f"{path}: no '{key}' dataset (an A2D frame annotation needs "
                        "'instance' and 'reMask')"
                    )
            ids = np.asarray(f["instance"][()]).reshape(-1)
            re_mask = np.asarray(f["reMask"][()])
            boxes = np.asarray(f["reBBox"][()], dtype=np.float64) if "reBBox" in f else None
            codes = np.asarray(f["id"][()]).reshape(-1) if "id" in f else None
    except _AnnotationError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, RuntimeError, KeyError, ...
        raise IOError(
            f"Cannot read the A2D annotation file {path} (corrupt or not HDF5): "
            f"{type(e).__name__}: {e}"
        ) from e
    if (
        not (np.isfinite(ids).all() and np.isfinite(re_mask).all())
        or not np.isin(re_mask, (0, 1)).all()
    ):
        raise _AnnotationError(
            f"{path}: 'reMask' / 'instance' hold values a 0/1 mask or an instance id cannot have "
            "(a damaged file)"
        )
    n = ids.shape[0]
    if re_mask.ndim == 2:
        re_mask = re_mask[None]
    if re_mask.ndim != 3 or re_mask.shape[0] != n:
        raise ValueError(
            f"{path}: 'reMask' has shape {re_mask.shape} for {n} instance(s); expected (N, W, H), "
            "or (W, H) for one instance"
        )
    masks = np.ascontiguousarray(np.transpose(re_mask, (0, 2, 1)) != 0)
    if boxes is not None:
        boxes = boxes.reshape(4, -1).T if boxes.size == 4 * n else None
    if codes is not None and codes.shape[0] != n:
        raise ValueError(f"{path}: 'id' has {codes.shape[0]} values for {n} instances")
    ids_int = [int(round(float(i))) for i in ids]
    return {
        "instance_ids": ids_int,
        "masks": masks,
        "boxes": boxes,
        "codes": None if codes is None else [int(round(float(c))) for c in codes],
    }


def _frame_annotations(path, height, width):
    """The ``annotations`` list of one ``.h5`` frame, checked against the video size."""
    data = read_a2d_frame_h5(path)
    masks = data["masks"]
    if masks.shape[1:] != (height, width):
        raise ValueError(
            f"{path}: mask size {masks.shape[1]}x{masks.shape[2]} (HxW, after transposing MATLAB's "
            f"'reMask') does not match the video's frame size {height}x{width}"
        )
    annos = []
    for k, iid in enumerate(data["instance_ids"]):
        box = mask_to_box(masks[k])
        if box is None:
            box = [float(v) for v in data["boxes"][k]] if data["boxes"] is not None else [0.0] * 4
        anno = {
            "instance_id": iid,
            "bbox": box,
            "bbox_mode": BoxMode.XYXY_ABS,
            "segmentation": mask_to_rle(masks[k]),
            "category_id": 0,
            "iscrowd": 0,
        }
        if data["codes"] is not None:
            actor, action = divmod(data["codes"][k], 10)
            if 1 <= actor <= len(A2D_ACTORS):
                anno["category_id"] = actor - 1
            if 1 <= action <= len(A2D_ACTIONS):
                anno["action_id"] = action - 1
        annos.append(anno)
    return annos


def _list_h5(folder):
    """Sorted [(frame number, path)] of a video's annotation folder (empty when absent)."""
    if not os.path.isdir(folder):
        return []
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            m = _H5_NAME.match(entry.name)
            if m:
                out.append((int(m.group(1)), entry.path))
    return sorted(out)


# ---------------------------------------------------------------------------- the index
def _split_videos(paths, split):
    if split not in SPLITS:
        raise ValueError(f"A2D Sentences split must be one of {sorted(SPLITS)}, got {split!r}")
    videoset = read_videoset(paths["videoset"])
    missed = read_missed_videos(paths["missed"])
    held_out = read_val_list(paths["val"], videoset, required=split == "val")
    usage = SPLITS[split]
    videos = [v for v in sorted(videoset) if videoset[v]["usage"] == usage and v not in missed]
    if split == "val":
        return videoset, [v for v in videos if v in held_out]
    return videoset, [v for v in videos if v not in held_out]


def read_val_list(path, videoset, required=False):
    """The validation videos of a tree (:data:`VAL_LIST`): training-usage videos of
    ``videoset.csv`` held out from training.

    Raises:
        FileNotFoundError: ``required`` and the file does not exist (it names the tool to make it).
        ValueError: a listed id is not in ``videoset.csv`` or is a test video (the line is named).
    """
    if not os.path.isfile(path):
        if required:
            raise FileNotFoundError(
                f"A2D validation list not found: {path}. The synthetic benchmark writes it; for a "
                "release, make one with datasets/make_val_split.py"
            )
        return set()
    ids = read_missed_videos(path)
    for vid in sorted(ids):
        if vid not in videoset:
            raise ValueError(f"{path}: video {vid!r} is not in Release/videoset.csv")
        if videoset[vid]["usage"] != SPLITS["train"]:
            raise ValueError(
                f"{path}: video {vid!r} is a test video (usage {videoset[vid]['usage']}); the "
                "validation videos must be held out of the training videos"
            )
    return ids


def _fingerprint(paths, videos):
    h = hashlib.sha1()
    for key in ("videoset", "annotations", "missed", "val"):
        h.update(repr(file_signature(paths[key])).encode())
    for vid in videos:
        h.update(repr(file_signature(os.path.join(paths["clips"], vid + ".mp4"))).encode())
        folder = os.path.join(paths["masks"], vid)
        for frame, path in _list_h5(folder):
            h.update(repr(file_signature(path)).encode())
    return h.hexdigest()


def _build_index(root, paths, split, videos):
    """Read every annotated frame of the split's videos and match the queries to them."""
    from tqdm import tqdm

    video_set = set(videos)
    rows, dropped = read_a2d_annotations(paths["annotations"])
    videoset = read_videoset(paths["videoset"])
    missed = read_missed_videos(paths["missed"])
    queries = {}
    unknown_videos = set()
    for vid, iid, q in rows:
        if vid in video_set:
            queries.setdefault(vid, []).append((iid, q))
        elif vid not in videoset and vid not in missed:
            unknown_videos.add(vid)
    n_queries = sum(len(v) for v in queries.values())

    video_table, frame_table = {}, {}
    samples, no_frame = [], []
    bar = tqdm(
        total=n_queries, desc=f"A2D Sentences {split} index", unit="query", disable=n_queries < 100
    )
    missing_h5 = []
    for vid in videos:
        h5s = _list_h5(os.path.join(paths["masks"], vid))
        if queries.get(vid) and len(h5s) < videoset[vid]["num_annotated"]:
            missing_h5.append((os.path.join(paths["masks"], vid), len(h5s)))
        if not h5s:
            for iid, q in queries.get(vid, []):
                no_frame.append((vid, iid, q))
            bar.update(len(queries.get(vid, [])))
            continue
        video_path = os.path.join(paths["clips"], vid + ".mp4")
        if not os.path.isfile(video_path):
            raise FileNotFoundError(
                f"A2D video not found: {video_path} (video {vid} of the {split} split has "
                f"annotations in {os.path.join(paths['masks'], vid)})"
            )
        length, height, width = video_info(video_path)
        video_table[vid] = {
            "file_name": video_path,
            "length": length,
            "height": height,
            "width": width,
        }
        frames = []
        for frame, path in h5s:
            if not 1 <= frame <= length:
                raise ValueError(
                    f"{path}: frame {frame} is outside the video {video_path} (frames 1..{length})"
                )
            frames.append((frame, _frame_annotations(path, height, width)))
        frame_table[vid] = frames
        for iid, q in queries.get(vid, []):
            hits = [frame for frame, annos in frames if any(a["instance_id"] == iid for a in annos)]
            if not hits:
                no_frame.append((vid, iid, q))
            samples.extend((vid, frame, iid, q) for frame in hits)
        bar.update(len(queries.get(vid, [])))
    bar.close()

    if dropped:
        logger.warning(
            "A2D Sentences: dropped %d annotation row(s) whose instance id is not an integer "
            "(an annotation mistake of the release), e.g. %s line %d: video %s, instance id %r",
            len(dropped),
            paths["annotations"],
            dropped[0][0],
            dropped[0][1],
            dropped[0][2],
        )
    if no_frame:
        logger.warning(
            "A2D Sentences %s: skipped %d of %d queries whose instance is in no annotated frame, "
            "e.g. video %s instance %d %r",
            split,
            len(no_frame),
            n_queries,
            *no_frame[0],
        )
    if missing_h5:
        logger.warning(
            "A2D Sentences %s: %d video(s) with queries have fewer .h5 files than %s gives "
            "annotated frames (their missing frames give no sample), e.g. %s holds %d of %d",
            split,
            len(missing_h5),
            paths["videoset"],
            missing_h5[0][0],
            missing_h5[0][1],
            videoset[os.path.basename(missing_h5[0][0])]["num_annotated"],
        )
    if unknown_videos:
        logger.warning(
            "A2D Sentences: %d annotated video(s) are not in %s, e.g. %s",
            len(unknown_videos),
            paths["videoset"],
            sorted(unknown_videos)[0],
        )
    stats = {
        "queries": n_queries,
        "samples": len(samples),
        "dropped_rows": dropped,
        "queries_without_frame": no_frame,
        "videos_missing_h5": [folder for folder, _ in missing_h5],
        "unknown_videos": sorted(unknown_videos),
    }
    logger.info(
        "A2D Sentences %s: %d queries, %d samples, %d annotated frames of %d videos",
        split,
        n_queries,
        len(samples),
        sum(len(f) for f in frame_table.values()),
        len(frame_table),
    )
    return {"videos": video_table, "frames": frame_table, "samples": samples, "stats": stats}


def load_a2d_index(root, split, annotation_dir=DEFAULT_ANNOTATION_DIR):
    """The cached index of one split: dict with ``videos``, ``frames``, ``samples``, ``stats``.

    ``videos``: video_id -> dict(file_name, length, height, width); ``frames``: video_id -> list
    of (frame number, annotations); ``samples``: list of (video_id, frame, instance_id, query);
    ``stats``: counts of the rows dropped and queries skipped.
    """
    root = os.path.abspath(os.fspath(root))
    paths = _paths(root, annotation_dir)
    _check_tree(root, paths)
    _, videos = _split_videos(paths, split)
    fingerprint = _fingerprint(paths, videos)
    cache_file = os.path.join(cache_dir_for(root), f"a2d_index_{split}_{_slug(annotation_dir)}.pkl")
    return cached_index(cache_file, fingerprint, lambda: _build_index(root, paths, split, videos))


def load_a2d_sentences(root, split, annotation_dir=DEFAULT_ANNOTATION_DIR, dataset_name=None):
    """Records of the single-frame protocol (the record contract), one per (query, frame).

    Args:
        root: the A2D Sentences root.
        split: ``"train"`` or ``"test"``.
        annotation_dir: folder of the per-frame ``.h5`` files, relative to ``root``.
        dataset_name: stored in each record as ``dataset_name``.

    Returns:
        list[dict]: ``file_name``, ``video_id``, ``frame_idx`` (1-based), ``length``, ``height``,
        ``width``, ``query``, ``instance_id``, ``image_id``, ``annotations`` (every instance of
        the frame: ``instance_id``, ``bbox`` XYXY_ABS, ``bbox_mode``, ``segmentation`` RLE,
        ``category_id``), ``dataset_name``.
    """
    index = load_a2d_index(root, split, annotation_dir)
    frame_annos = {
        (vid, f): annos for vid, frames in index["frames"].items() for f, annos in frames
    }
    records = []
    for vid, frame, iid, query in index["samples"]:
        records.append(
            dict(
                _frame_fields(index, vid, frame, dataset_name),
                query=query,
                instance_id=iid,
                image_id=f"v_{vid}_f_{frame}_i_{iid}",
                annotations=frame_annos[(vid, frame)],
            )
        )
    return records


def _frame_fields(index, vid, frame, dataset_name):
    """The fields every record of one video frame has (sample and detection records alike)."""
    v = index["videos"][vid]
    return {
        "file_name": v["file_name"],
        "video_id": vid,
        "frame_idx": frame,
        "length": v["length"],
        "height": v["height"],
        "width": v["width"],
        "dataset_name": dataset_name,
    }


def load_a2d_frames(root, split, annotation_dir=DEFAULT_ANNOTATION_DIR, dataset_name=None):
    """Detection records, one per annotated frame of the split's videos, with all instances.

    Returns:
        list[dict]: ``file_name`` (the video), ``video_id``, ``frame_idx`` (1-based), ``length``,
        ``height``, ``width``, ``image_id`` (``<video_id>/<frame:05d>``), ``annotations``
        (``bbox`` XYXY_ABS, ``bbox_mode``, ``segmentation`` RLE, ``category_id`` = actor class,
        ``instance_id``), ``dataset_name``.
    """
    index = load_a2d_index(root, split, annotation_dir)
    records = []
    for vid in sorted(index["frames"]):
        for frame, annos in index["frames"][vid]:
            records.append(
                dict(
                    _frame_fields(index, vid, frame, dataset_name),
                    image_id=f"{vid}/{frame:05d}",
                    annotations=annos,
                )
            )
    return records


# ---------------------------------------------------------------------------- registration
def register_a2d_sentences(
    name, root, split, annotation_dir=DEFAULT_ANNOTATION_DIR, synthetic_meta=None, **metadata
):
    """Register an A2D-Sentences-layout tree as a detectron2 data set (single-frame protocol).

    Args:
        name: the data set name (an existing registration of that name is replaced).
        root: the tree's root (the folder holding ``Release/`` and ``text_annotations/``).
        split: ``"train"``, ``"val"`` or ``"test"`` (``videoset.csv``'s usage column; ``val``:
            the training videos listed in :data:`VAL_LIST`, which ``train`` leaves out).
        annotation_dir: folder of the per-frame ``.h5`` files, relative to ``root`` (another folder
            with masks for every frame registers a full-video evaluation set).
        synthetic_meta: path of the synthetic benchmark's ``synthetic_meta.json``; None: that file
            in ``root`` when it exists.
        metadata: extra MetadataCatalog fields.

    Nothing is read until ``DatasetCatalog.get(name)``.
    """
    root = _register_split(name, root, split, annotation_dir, load_a2d_sentences)
    MetadataCatalog.get(name).set(
        annotation_dir=annotation_dir,
        **layout_metadata(name, root, split, "rvos", "a2d", A2D_ACTIONS, synthetic_meta, metadata),
    )


def register_a2d_frames(name, root, split, annotation_dir=DEFAULT_ANNOTATION_DIR, **metadata):
    """Register the annotated frames of an A2D-layout tree for the proposal detector.

    One record per annotated frame, all instances, detectron2's detection format
    (``load_a2d_frames``); ``evaluator_type`` is ``"coco"``.
    """
    root = _register_split(name, root, split, annotation_dir, load_a2d_frames)
    meta = layout_metadata(name, root, split, "coco", "a2d", A2D_ACTIONS, None, metadata)
    meta["synthetic_meta"] = None
    MetadataCatalog.get(name).set(annotation_dir=annotation_dir, **meta)


def _register_split(name, root, split, annotation_dir, loader):
    """Check the split, replace any registration of ``name`` and register ``loader``'s records
    (read lazily).  Returns the absolute root."""
    root = os.path.abspath(os.fspath(root))
    if split not in SPLITS:
        raise ValueError(f"A2D Sentences split must be one of {sorted(SPLITS)}, got {split!r}")
    unregister(name)
    DatasetCatalog.register(name, lambda: loader(root, split, annotation_dir, dataset_name=name))
    return root


def list_a2d_videos(root):
    """Sorted ``[(video_id, mp4 path)]`` of an A2D-layout tree: every video of
    ``Release/videoset.csv`` except those of ``text_annotations/a2d_missed_videos.txt`` (ids are
    checked to be plain names by the readers: they become folders of the flow cache)."""
    videoset = os.path.join(root, "Release", "videoset.csv")
    clips = os.path.join(root, "Release", "clips320H")
    if not os.path.isfile(videoset):
        raise FileNotFoundError(f"A2D videoset file not found: {videoset}")
    missed = read_missed_videos(os.path.join(root, "text_annotations", "a2d_missed_videos.txt"))
    return [
        (v, os.path.join(clips, v + ".mp4"))
        for v in sorted(read_videoset(videoset))
        if v not in missed
    ]


register_video_layout("a2d", "Release", list_a2d_videos)
