"""Writing the synthetic benchmark in the A2D Sentences and J-HMDB Sentences layouts.

``generate(output, size, seed, workers)`` writes::

    <output>/synthetic_info.json                      size, seed, generator version, statistics
    <output>/a2d_sentences/Release/videoset.csv
    <output>/a2d_sentences/Release/clips320H/<video_id>.mp4
    <output>/a2d_sentences/text_annotations/a2d_annotation.txt
    <output>/a2d_sentences/text_annotations/a2d_missed_videos.txt
    <output>/a2d_sentences/text_annotations/a2d_annotation_with_instances/<video_id>/<frame:05d>.h5
    <output>/a2d_sentences/synthetic_full_annotations/<video_id>/<frame:05d>.h5   (every frame)
    <output>/a2d_sentences/synthetic_meta.json
    <output>/jhmdb_sentences/jhmdb_annotation.txt
    <output>/jhmdb_sentences/Rename_Images/<action>/<video_id>/<frame:05d>.png
    <output>/jhmdb_sentences/puppet_mask/<action>/<video_id>/puppet_mask.mat
    <output>/jhmdb_sentences/synthetic_meta.json

Every file goes through :mod:`aamn.data.layout_writers`, so the layout is written in one place.
Each video is drawn from its own random stream, seeded by ``(seed, stream, index)``, so the files
do not depend on the number of worker processes, and the same seed writes byte-identical files.
The tree is written into a sibling folder ``<output>.incomplete-<pid>`` and renamed to ``output``
at the end, so an interrupted run leaves no half-written benchmark under the final name.
"""

import base64
import hashlib
import json
import multiprocessing as mp
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from ...utils.io import pid_alive
from ..layout_writers import VAL_LIST
from .actors import ACTION_CLASSES, ACTOR_CLASSES, actor_action_id
from .queries import QUERY_TYPES, query_types
from .scenes import SceneConfig, sample_a2d_video, sample_jhmdb_video

__all__ = [
    "SIZES",
    "SizeSpec",
    "GENERATOR_VERSION",
    "generate",
    "read_info",
    "a2d_video_id",
    "compute_statistics",
]

GENERATOR_VERSION = 2
# an instance counts as occluded in a frame when less than this fraction of it is visible
OCCLUDED_BELOW = 0.98
FPS = 24
# the random streams of the three parts of the benchmark
_STREAMS = {"train": 0, "test": 1, "jhmdb": 2, "val": 3}
# videoset.csv's usage column: A2D has train (0) and test (1); the validation videos are training
# videos in the release's terms, held out by the list file VAL_LIST (as one holds out a part of
# the real release's training videos).
_USAGE = {"train": 0, "val": 0, "test": 1}


@dataclass(frozen=True)
class SizeSpec:
    """Size of a synthetic benchmark.  ``train`` / ``val`` / ``test`` count the videos used (not
    missed); the validation videos are drawn from their own random stream, so adding them leaves
    the training and test videos as they were."""

    height: int
    width: int
    train: int
    test: int
    min_frames: int
    max_frames: int
    jhmdb: int
    missed_per_split: int = 1
    val: int = 0


SIZES: Dict[str, SizeSpec] = {
    "tiny": SizeSpec(
        height=48, width=64, train=8, test=4, min_frames=12, max_frames=16, jhmdb=4, val=4
    ),
    "default": SizeSpec(
        height=96, width=128, train=600, test=150, min_frames=24, max_frames=32, jhmdb=60, val=100
    ),
    "large": SizeSpec(
        height=192,
        width=256,
        train=3000,
        test=750,
        min_frames=24,
        max_frames=32,
        jhmdb=300,
        val=500,
    ),
}


def synthetic_tree_name(size: str) -> str:
    """The folder of a size's benchmark under ``$AAMN_DATASETS``: ``synthetic`` for the default
    size, ``synthetic_<size>`` for the others (each size in its own tree)."""
    return "synthetic" if size == "default" else f"synthetic_{size}"


def a2d_video_id(seed: int, split: str, index: int) -> str:
    """An 11-character A2D-like (YouTube-like) video id derived from ``(seed, split, index)``."""
    digest = hashlib.sha256(f"aamn-synthetic:{seed}:{split}:{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:11]


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[stream], int(index)]))


def _scene_config(spec: SizeSpec) -> SceneConfig:
    return SceneConfig(
        height=spec.height, width=spec.width, min_frames=spec.min_frames, max_frames=spec.max_frames
    )


def _instance_meta(inst: dict) -> dict:
    out = {
        k: inst[k] for k in ("category", "color", "size", "action", "location", "queried", "boxes")
    }
    out["visible_fraction"] = [round(v, 3) for v in inst["visible_fraction"]]
    return out


# ---------------------------------------------------------------------------- per-video work
def _a2d_task(args) -> dict:
    """Sample, render and write one A2D-layout video; returns its metadata."""
    from .. import layout_writers as lw

    tmp_root, seed, spec, split, index = args
    vid = a2d_video_id(seed, split, index)
    video = sample_a2d_video(_rng(seed, split, index), _scene_config(spec))
    root = os.path.join(tmp_root, "a2d_sentences")
    lw.write_video_mp4(
        os.path.join(root, "Release", "clips320H", vid + ".mp4"), video.frames, fps=FPS
    )
    sparse = os.path.join(root, "text_annotations", "a2d_annotation_with_instances", vid)
    full = os.path.join(root, "synthetic_full_annotations", vid)
    annotated = set(video.annotated_frames)
    for t in range(video.frames.shape[0]):
        ids, masks, boxes, codes = video.masks(t)
        if not ids:
            continue
        name = f"{t + 1:05d}.h5"
        lw.write_a2d_frame_h5(os.path.join(full, name), ids, masks, boxes, codes)
        if t + 1 in annotated:  # the same frame annotation: a copy of the file just written
            os.makedirs(sparse, exist_ok=True)
            shutil.copyfile(os.path.join(full, name), os.path.join(sparse, name))
    first = min(video.queries, key=lambda q: q["instance_id"])["instance_id"]
    label = actor_action_id(video.instances[first]["category"], video.instances[first]["action"])
    return {
        "video_id": vid,
        "split": split,
        "index": index,
        "label": label,
        "length": int(video.frames.shape[0]),
        "height": spec.height,
        "width": spec.width,
        "annotated_frames": video.annotated_frames,
        "instances": {str(i["instance_id"]): _instance_meta(i) for i in video.instances},
        "queries": [dict(q, video_id=vid) for q in video.queries],
    }


def _jhmdb_task(args) -> dict:
    """Sample, render and write one J-HMDB-layout video; returns its metadata."""
    from .. import layout_writers as lw

    tmp_root, seed, spec, _, index = args
    rng = _rng(seed, "jhmdb", index)
    video, action = sample_jhmdb_video(rng, _scene_config(spec))
    vid = f"synthetic_{action}_{index:04d}"
    root = os.path.join(tmp_root, "jhmdb_sentences")
    T = video.frames.shape[0]
    # like some release videos, every 10th video has masks for fewer frames than it has
    num_masks = T - int(rng.integers(1, 4)) if index % 10 == 3 else T
    lw.write_jhmdb_frames(os.path.join(root, "Rename_Images", action, vid), video.frames)
    lw.write_jhmdb_puppet_mask(
        os.path.join(root, "puppet_mask", action, vid, "puppet_mask.mat"),
        video.labels[:num_masks] == 1,
    )
    inst = _instance_meta(video.instances[0])
    inst["boxes"] = inst["boxes"][:num_masks] + [None] * (T - num_masks)
    return {
        "video_id": vid,
        "split": "test",
        "index": index,
        "action_folder": action,
        "length": T,
        "num_masks": num_masks,
        "height": spec.height,
        "width": spec.width,
        "instances": {"1": inst},
        "queries": [dict(q, video_id=vid, instance_id=1) for q in video.queries],
    }


def _run_task(args):
    kind = args[0]
    return (_a2d_task if kind == "a2d" else _jhmdb_task)(args[1:])


def _init_worker():
    import cv2

    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------- statistics
def compute_statistics(meta: dict) -> dict:
    """Statistics of an A2D-layout ``synthetic_meta.json`` dict (videos not marked ``missed``).

    Returns per split: videos, frames, annotated frames, instances, queries, the fraction of queries
    of each type (:func:`aamn.data.synthetic.query_types`), actors per video, class and action
    counts, the share of annotated instance-frames that are partly occluded, vocabulary size.
    """
    types = query_types(meta)
    out = {}
    for split in ("train", "val", "test", "all"):
        vids = [
            v
            for v, m in meta["videos"].items()
            if not m.get("missed") and split in ("all", m["split"])
        ]
        vidset = set(vids)
        qs = [q for q in meta["queries"] if q["video_id"] in vidset]
        n_q = max(len(qs), 1)
        fractions = {
            t: sum(t in types[(q["video_id"], int(q["instance_id"]))] for q in qs) / n_q
            for t in QUERY_TYPES
        }
        insts = [i for v in vids for i in meta["videos"][v]["instances"].values()]
        occluded = visible = 0
        for v in vids:
            m = meta["videos"][v]
            for f in m.get("annotated_frames", ()):
                for i in m["instances"].values():
                    if i["boxes"][f - 1] is not None:
                        visible += 1
                        occluded += i["visible_fraction"][f - 1] < OCCLUDED_BELOW
        words = Counter(w for q in qs for w in q["query"].split())
        per_video = Counter(len(meta["videos"][v]["instances"]) for v in vids)
        out[split] = {
            "videos": len(vids),
            "frames": sum(meta["videos"][v]["length"] for v in vids),
            "annotated_frames": sum(
                len(meta["videos"][v].get("annotated_frames", ())) for v in vids
            ),
            "instances": len(insts),
            "queries": len(qs),
            "query_type_fractions": {t: round(f, 4) for t, f in fractions.items()},
            "actors_per_video": {str(k): n for k, n in sorted(per_video.items())},
            "classes": {c: sum(i["category"] == c for i in insts) for c in ACTOR_CLASSES},
            "actions": {a: sum(i["action"] == a for i in insts) for a in ACTION_CLASSES},
            "occluded_in_annotated_frames": round(occluded / max(visible, 1), 4),
            "vocabulary": len(words),
            "mean_query_words": round(sum(len(q["query"].split()) for q in qs) / n_q, 2),
        }
    return out


# ---------------------------------------------------------------------------- the whole tree
def _check_output(output: str) -> None:
    """Refuse to write into (or over) a real release or a folder this generator did not write."""
    path = os.path.abspath(output)
    probe = path
    while True:
        if (
            os.path.isfile(os.path.join(probe, "Release", "videoset.csv"))
            or os.path.isdir(os.path.join(probe, "Rename_Images"))
            or os.path.basename(probe)
            in ("Release", "clips320H", "Rename_Images", "puppet_mask", "text_annotations")
        ):
            if not _is_synthetic_tree(probe):
                raise ValueError(
                    f"refusing to write the synthetic benchmark to {path}: it is inside {probe}, "
                    "which looks like an A2D / J-HMDB Sentences release; choose another --output"
                )
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if (
        os.path.isdir(path)
        and os.listdir(path)
        and not os.path.isfile(os.path.join(path, "synthetic_info.json"))
    ):
        raise ValueError(
            f"refusing to write the synthetic benchmark to {path}: the folder is not empty and "
            "holds no synthetic_info.json (it was not written by this generator); choose another "
            "--output"
        )


def _is_synthetic_tree(folder: str) -> bool:
    """Whether ``folder`` is (inside) a tree written by this generator."""
    probe = folder
    while True:
        if os.path.isfile(os.path.join(probe, "synthetic_info.json")) or os.path.isfile(
            os.path.join(probe, "synthetic_meta.json")
        ):
            return True
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent


def read_info(output: str) -> Optional[dict]:
    """The ``synthetic_info.json`` of a generated tree, or None."""
    path = os.path.join(output, "synthetic_info.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _dump_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def generate(
    output: str,
    size: str = "default",
    seed: int = 0,
    workers: Optional[int] = None,
    overwrite: bool = False,
    progress: Optional[Callable] = None,
) -> dict:
    """Write the synthetic benchmark to ``output`` and return its ``synthetic_info.json`` dict.

    Args:
        output: the benchmark's folder (``a2d_sentences/`` and ``jhmdb_sentences/`` go inside).
        size: ``"tiny"`` (seconds, for tests), ``"default"`` or ``"large"`` (see :data:`SIZES`).
        seed: the random seed; the same seed writes byte-identical files.
        workers: processes drawing videos in parallel (default ``min(2, cpu count)``); the output
            does not depend on it.
        overwrite: regenerate even when ``output`` already holds this size and seed.
        progress: optional callable ``progress(iterable, total=..., desc=...)`` wrapping the
            per-video loop (e.g. ``tqdm.tqdm``).

    The info dict has ``size``, ``seed``, ``generator_version``, ``statistics`` (see
    :func:`compute_statistics`) and ``skipped`` (True when an existing tree of the same size, seed
    and generator version was kept).  A tree of another size or seed is replaced only with
    ``overwrite`` (else ``ValueError`` naming both); one of an earlier generator version is
    rewritten; a non-empty folder not written by it, or a folder inside a real release, is refused.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    output = os.path.abspath(os.fspath(output))
    _check_output(output)
    info = read_info(output)
    if (
        not overwrite
        and info is not None
        and info.get("size") == size
        and info.get("seed") == seed
        and info.get("generator_version") == GENERATOR_VERSION
    ):
        return dict(info, skipped=True)
    if not overwrite and info is not None and (info.get("size"), info.get("seed")) != (size, seed):
        raise ValueError(
            f"{output} holds the synthetic benchmark of size {info.get('size')} and seed "
            f"{info.get('seed')}; writing size {size} and seed {seed} there would replace it and "
            "invalidate the flow, proposals and models made from it.  Choose another output "
            "folder (each size has its own by default), or pass --overwrite"
        )

    spec = SIZES[size]
    workers = max(1, int(workers if workers is not None else min(2, os.cpu_count() or 1)))
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(output)
    for name in os.listdir(parent):  # leftovers of interrupted runs (not of a run still going)
        for mark in (".incomplete-", ".old-"):
            if name.startswith(base + mark) and not pid_alive(name[len(base + mark) :]):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    tmp = os.path.join(parent, f"{base}.incomplete-{os.getpid()}")
    os.makedirs(tmp)
    try:
        info = _generate_into(tmp, spec, size, seed, workers, progress)
        if os.path.exists(output):
            old = os.path.join(parent, f"{base}.old-{os.getpid()}")
            os.rename(output, old)
            os.rename(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, output)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return dict(info, skipped=False)


def _missed(seed: int, split: str, n_total: int, k: int) -> List[int]:
    """``k`` indices among ``n_total`` videos of a split, listed as missed (deterministic)."""
    order = _rng(seed, split, 10**9).permutation(n_total)
    return sorted(int(i) for i in order[:k])


def _generate_into(tmp: str, spec: SizeSpec, size: str, seed: int, workers: int, progress) -> dict:
    from .. import layout_writers as lw

    n_split = {
        "train": spec.train + spec.missed_per_split,
        "test": spec.test + spec.missed_per_split,
    }
    tasks = [
        ("a2d", tmp, seed, spec, split, i)
        for split in ("train", "test")
        for i in range(n_split[split])
    ]
    tasks += [("a2d", tmp, seed, spec, "val", i) for i in range(spec.val)]
    tasks += [("jhmdb", tmp, seed, spec, "test", i) for i in range(spec.jhmdb)]
    missed = {
        a2d_video_id(seed, split, i)
        for split in n_split
        for i in _missed(seed, split, n_split[split], spec.missed_per_split)
    }

    if workers > 1:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        pool = ctx.Pool(workers, initializer=_init_worker)
        results_iter = pool.imap(_run_task, tasks, chunksize=4)
    else:
        _init_worker()
        pool = None
        results_iter = map(_run_task, tasks)
    if progress is not None:
        results_iter = progress(
            results_iter, total=len(tasks), desc=f"synthetic benchmark ({size})"
        )
    try:
        results = list(results_iter)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    a2d = [r for t, r in zip(tasks, results) if t[0] == "a2d"]
    jhmdb = [r for t, r in zip(tasks, results) if t[0] == "jhmdb"]
    ids = [r["video_id"] for r in a2d]
    if len(set(ids)) != len(ids):
        raise RuntimeError("video id collision; use another seed")

    # ---- A2D Sentences files
    root = os.path.join(tmp, "a2d_sentences")
    rows = [
        [
            r["video_id"],
            r["label"],
            0,
            round(r["length"] / FPS, 3),
            r["height"],
            r["width"],
            r["length"],
            len(r["annotated_frames"]),
            _USAGE[r["split"]],
        ]
        for r in sorted(a2d, key=lambda r: r["video_id"])
    ]
    lw.write_a2d_videoset_csv(os.path.join(root, "Release", "videoset.csv"), rows)
    queries = [q for r in a2d for q in r["queries"]]
    lw.write_a2d_annotation_txt(
        os.path.join(root, "text_annotations", "a2d_annotation.txt"),
        [(q["video_id"], q["instance_id"], q["query"]) for q in queries],
    )
    lw.write_a2d_missed_videos(
        os.path.join(root, "text_annotations", "a2d_missed_videos.txt"), sorted(missed)
    )
    lw.write_video_list(
        os.path.join(root, VAL_LIST), sorted(r["video_id"] for r in a2d if r["split"] == "val")
    )
    meta = {
        "videos": {
            r["video_id"]: {
                "split": r["split"],
                "missed": r["video_id"] in missed,
                "length": r["length"],
                "height": r["height"],
                "width": r["width"],
                "annotated_frames": r["annotated_frames"],
                "instances": r["instances"],
            }
            for r in a2d
        },
        "queries": [
            {k: q[k] for k in ("video_id", "instance_id", "query", "location", "types")}
            for q in queries
        ],
    }
    _dump_json(os.path.join(root, "synthetic_meta.json"), meta)

    # ---- J-HMDB Sentences files
    jroot = os.path.join(tmp, "jhmdb_sentences")
    jqueries = [q for r in jhmdb for q in r["queries"]]
    lw.write_jhmdb_annotation_txt(
        os.path.join(jroot, "jhmdb_annotation.txt"), [(q["video_id"], q["query"]) for q in jqueries]
    )
    jmeta = {
        "videos": {
            r["video_id"]: {
                k: r[k]
                for k in (
                    "split",
                    "action_folder",
                    "length",
                    "num_masks",
                    "height",
                    "width",
                    "instances",
                )
            }
            for r in jhmdb
        },
        "queries": [
            {k: q[k] for k in ("video_id", "instance_id", "query", "location", "types")}
            for q in jqueries
        ],
    }
    _dump_json(os.path.join(jroot, "synthetic_meta.json"), jmeta)

    stats = compute_statistics(meta)
    stats["jhmdb"] = {
        "videos": len(jhmdb),
        "frames": sum(r["length"] for r in jhmdb),
        "queries": len(jqueries),
        "actions": dict(sorted(Counter(r["action_folder"] for r in jhmdb).items())),
        "videos_with_fewer_masks": sum(r["num_masks"] < r["length"] for r in jhmdb),
    }
    info = {
        "size": size,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "missed_videos": sorted(missed),
        "statistics": stats,
    }
    _dump_json(os.path.join(tmp, "synthetic_info.json"), info)
    return info
