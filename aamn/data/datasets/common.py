"""What the A2D Sentences and J-HMDB Sentences readers share: the actor and action classes of
A2D (models are trained on A2D Sentences, so both layouts name A2D's actors), the annotation CSV
reader, the cached index, the registration helpers and the MetadataCatalog fields of a tree."""

import csv
import logging
import os
import pickle

from detectron2.data import DatasetCatalog, MetadataCatalog

from aamn.utils.io import atomic_path, cache_dir
from aamn.utils.safe_pickle import safe_load

__all__ = [
    "REFERRING_TYPES",
    "A2D_ACTORS",
    "A2D_ACTIONS",
    "cache_dir_for",
    "cached_index",
    "file_signature",
    "layout_metadata",
    "normalize_query",
    "read_query_csv",
    "unregister",
]

logger = logging.getLogger(__name__)

_INDEX_VERSION = 1

# The evaluator types of the referring-video data sets (clips of a query): "rvos" (the papers'
# metrics and J&F), "jf" (every frame of every expression: J&F alone), "none" (no masks:
# inference only).  Others (A2D's frames: "coco") are single frames.
REFERRING_TYPES = ("rvos", "jf", "none")

A2D_ACTORS = ["adult", "baby", "ball", "bird", "car", "cat", "dog"]
A2D_ACTIONS = [
    "climbing",
    "crawling",
    "eating",
    "flying",
    "jumping",
    "rolling",
    "running",
    "walking",
    "none",
]


def normalize_query(text):
    """Lower-case and collapse white space."""
    return " ".join(str(text).lower().split())


def unregister(name):
    """Remove ``name`` from DatasetCatalog and MetadataCatalog (no error when absent)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


def cache_dir_for(root):
    """``<root>/cache`` when writable, else ``$AAMN_CACHE/index/<hash of root>``."""
    return cache_dir(os.path.join(root, "cache"), "index", root)


def file_signature(path):
    """(name, size, mtime_ns) of a file, or (name, None, None) when it does not exist."""
    try:
        st = os.stat(path)
        return (path, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        return (path, None, None)


def cached_index(cache_file, fingerprint, build):
    """Load ``cache_file`` when its fingerprint matches, else ``build()`` it and write it
    atomically."""
    if os.path.isfile(cache_file):
        try:
            data = safe_load(cache_file, "data-set index cache")
            if (
                isinstance(data, dict)
                and data.get("version") == _INDEX_VERSION
                and data.get("fingerprint") == fingerprint
            ):
                return data["index"]
            logger.info("Index cache %s is out of date: rebuilding it", cache_file)
        except Exception as e:  # a corrupt cache is rebuilt
            logger.warning("Cannot read the index cache %s (%s): rebuilding it", cache_file, e)
    index = build()
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            pickle.dump(
                {"version": _INDEX_VERSION, "fingerprint": fingerprint, "index": index},
                f,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
    except OSError as e:
        logger.warning("Cannot write the index cache %s: %s", cache_file, e)
    return index


def read_query_csv(path, header):
    """Rows of an annotation CSV whose first line is ``header`` and whose last column is a query.

    Yields ``(line number, fields)`` with the query (commas inside it kept) normalised
    (``normalize_query``) as the last field.  Blank lines are skipped; a row whose query has no
    word (empty, or punctuation only) is dropped with one warning naming the file and its lines.

    Raises:
        ValueError: another header, a row with too few columns, or text that is not UTF-8, naming
            the file and line.
    """
    from ..text import query_words, tokenize

    n = len(header)
    empty = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            if first is None or [h.strip() for h in first[:n]] != list(header):
                raise ValueError(f"{path}: expected the header {','.join(header)!r}, got {first!r}")
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < n:
                    raise ValueError(f"{path}, line {lineno}: expected {','.join(header)}: {row!r}")
                query = normalize_query(",".join(row[n - 1 :]))
                if not query_words(tokenize(query)):
                    empty.append(lineno)
                    continue
                yield lineno, row[: n - 1] + [query]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    if empty:
        logger.warning(
            "%s: dropped %d row(s) whose query has no word, line(s) %s",
            path,
            len(empty),
            ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else ""),
        )


def layout_metadata(
    name, root, split, evaluator_type, layout, action_classes, synthetic_meta=None, extra=None
):
    """The MetadataCatalog fields of a data set in one of the release layouts (A2D or J-HMDB):
    where its derived data lives (``flow_dir``, ``proposal_file``) and what it holds.  Models are
    trained on A2D Sentences, so the actor classes are A2D's in both layouts."""
    if synthetic_meta is None:
        candidate = os.path.join(root, "synthetic_meta.json")
        synthetic_meta = candidate if os.path.isfile(candidate) else None
    meta = {
        "evaluator_type": evaluator_type,
        "root": root,
        "split": split,
        "dataset_layout": layout,
        "thing_classes": list(A2D_ACTORS),
        "action_classes": list(action_classes),
        "flow_dir": os.path.join(root, "flow"),
        "proposal_file": os.path.join(root, "proposals", f"{name}.pkl"),
        "synthetic_meta": synthetic_meta,
    }
    meta.update(extra or {})
    return meta


# How the videos of a data-set tree are listed, per layout (each loader module registers its own):
# ``layout -> (marker, lister)``: ``marker`` is the folder (relative to the root) that identifies
# the layout, ``lister(root)`` the sorted ``[(video_id, video path: file or folder of frames)]``.
# ``datasets/prepare_flow.py`` asks this, so a new layout needs no edit there.
VIDEO_LAYOUTS = {}


def register_video_layout(layout: str, marker: str, lister) -> None:
    """Register how the trees of ``layout`` are recognised (``marker``) and listed
    (``lister``)."""
    VIDEO_LAYOUTS[layout] = (marker, lister)


def detect_layout(root: str) -> str:
    """The registered layout whose marker folder ``root`` holds.

    Raises:
        FileNotFoundError: naming the root and every layout's marker."""
    for layout, (marker, _) in VIDEO_LAYOUTS.items():
        if os.path.isdir(os.path.join(root, marker)):
            return layout
    known = ", ".join(f"{m}/ ({layout})" for layout, (m, _) in VIDEO_LAYOUTS.items())
    raise FileNotFoundError(f"{root} is not a data-set tree of a known layout (none of: {known})")


def list_layout_videos(root: str, layout: str = ""):
    """Sorted ``[(video_id, path)]`` of every video of the tree ``root`` (its ``layout``, default
    detected).  Raises ``ValueError`` naming an unknown layout."""
    layout = layout or detect_layout(root)
    if layout not in VIDEO_LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r} (expected one of {sorted(VIDEO_LAYOUTS)})")
    return VIDEO_LAYOUTS[layout][1](root)
