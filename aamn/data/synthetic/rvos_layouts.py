"""The synthetic benchmark in the Ref-YouTube-VOS and MeViS layouts: the same videos, frames,
masks and queries as its A2D-layout tree (``a2d_sentences/``), written again as those releases
are unpacked, so that their loaders (``aamn.data.datasets.register_ref_youtube_vos``) read them.

Splits: ``train``, ``valid`` and ``test`` hold the A2D tree's train, val and test videos (its
missed videos left out), every split with masks (the synthetic benchmark scores its own valid and
test).  Every ``frame_step``-th frame is listed, from the first (Ref-YouTube-VOS lists every 5th
of its videos; the default here, 1, every frame, keeps the A2D tree's clips); its masks are the
tree's full annotations (``synthetic_full_annotations/``: every frame annotated).  An instance
``i`` of the A2D tree is object ``i + 1`` (0 is the background of a palette PNG); MeViS's objects
keep ``i`` (its ids start at 0).

``ytvos``::

    <out>/meta_expressions/<split>/meta_expressions.json   the queries, obj_id "i + 1"
    <out>/<split>/JPEGImages/<video>/<frame>.jpg
    <out>/<split>/Annotations/<video>/<frame>.png           palette PNG of object ids
    <out>/<split>/meta.json                                 each object's category (A2D's actor)

``mevis``: ``<out>/<split>/{JPEGImages/, meta_expressions.json, mask_dict.json}``, the queries
with ``obj_id [i]`` and an ``anno_id`` per object, plus expressions about several actors: for
each action (not "none") that two or more actors of a video perform, "the two (three, four)
actors that are <action>", referring to all of them.
"""

import json
import os
import shutil
from typing import Dict, List

import numpy as np

__all__ = ["LAYOUTS", "SPLITS", "write_rvos_layout"]

LAYOUTS = ("ytvos", "mevis")
SPLITS = {"train": "train", "valid": "val", "test": "test"}  # layout split -> A2D tree split
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
_PALETTE = [0, 0, 0] + [int(v) for i in range(1, 256) for v in ((37 * i) % 256, (91 * i) % 256,
                                                                   (151 * i) % 256)]  # fmt: skip


def _frame_ids(a2d_root: str, vid: str, t: int, shape) -> np.ndarray:
    """Object ids ``(H, W)`` uint8 of frame ``t`` (0-based) from the full annotations: instance
    ``i`` is ``i + 1``."""
    from ..datasets.register_a2d_sentences import read_a2d_frame_h5

    ids = np.zeros(shape, np.uint8)
    path = os.path.join(a2d_root, "synthetic_full_annotations", vid, f"{t + 1:05d}.h5")
    if os.path.isfile(path):  # no file: no actor in the frame
        ann = read_a2d_frame_h5(path)
        for inst, mask in zip(ann["instance_ids"], ann["masks"]):
            ids[mask] = inst + 1
    return ids


def _several_actors(instances: Dict[str, Dict]) -> List[Dict]:
    """MeViS-like expressions about several actors: one per action performed by 2+ actors."""
    by_action: Dict[str, List[int]] = {}
    for i, inst in sorted(instances.items(), key=lambda kv: int(kv[0])):
        if inst.get("action") not in (None, "none"):
            by_action.setdefault(inst["action"], []).append(int(i))
    return [
        {"exp": f"the {_COUNT_WORDS.get(len(ids), str(len(ids)))} actors that are {action}",
         "instances": ids}
        for action, ids in sorted(by_action.items()) if len(ids) >= 2
    ]  # fmt: skip


def write_rvos_layout(
    a2d_root: str,
    output: str,
    layout: str = "ytvos",
    frame_step: int = 1,
    overwrite=False,
    splits=tuple(SPLITS),
):
    """Write the A2D-layout synthetic tree ``a2d_root`` (``<tree>/a2d_sentences``) in ``layout``
    (``LAYOUTS``) into ``output`` (module docstring; ``splits``: those of ``SPLITS`` only).
    Returns ``{split: {"videos", "expressions", "several_actors"}}``.  An ``output`` written
    before from the same tree with the same layout, step and splits is kept; one of another is
    replaced only with ``overwrite``; a non-empty folder this function did not write is never
    replaced.  The layout is written into a temporary folder beside ``output`` and renamed when
    whole: a run that fails leaves nothing.

    Raises:
        ValueError: an unknown layout or step, ``a2d_root`` not a synthetic tree, or an
            ``output`` that may not be replaced (named).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be at least 1, got {frame_step}")
    meta_path = os.path.join(a2d_root, "synthetic_meta.json")
    if not os.path.isfile(meta_path):
        raise ValueError(f"{a2d_root} is not the synthetic benchmark's A2D tree (no {meta_path})")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    unknown = set(splits) - set(SPLITS)
    if unknown or not splits:
        raise ValueError(f"splits must be some of {list(SPLITS)}, got {list(splits)}")
    record = {"layout": layout, "frame_step": frame_step, "source": os.path.abspath(a2d_root),
              "splits": sorted(splits)}  # fmt: skip
    mark = os.path.join(output, "synthetic_layout.json")
    if os.path.isdir(output) and os.listdir(output):
        if not os.path.isfile(mark):
            raise ValueError(
                f"{output} is not empty and was not written by the synthetic layout writer: "
                "choose another --output"
            )
        with open(mark, encoding="utf-8") as f:
            old = json.load(f)
        if {k: old.get(k) for k in record} == record:
            return old["statistics"]
        if not overwrite:
            raise ValueError(
                f"{output} holds the synthetic benchmark in {old.get('layout')} (frame step "
                f"{old.get('frame_step')}, from {old.get('source')}); pass --overwrite to "
                "replace it"
            )
    queries: Dict[str, List[Dict]] = {}
    for q in meta["queries"]:
        queries.setdefault(q["video_id"], []).append(q)
    tmp = f"{output}.incomplete-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        stats = _write_splits(tmp, a2d_root, meta, queries, layout, frame_step, splits)
    except BaseException:  # an interrupted or failed run leaves no partial folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with open(os.path.join(tmp, "synthetic_layout.json"), "w") as f:
        json.dump(dict(record, statistics=stats), f, indent=1)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.rename(tmp, output)
    return stats


def _write_splits(tmp, a2d_root, meta, queries, layout, frame_step, splits) -> Dict:
    """Write the ``splits`` of the layout into the folder ``tmp``; returns their statistics
    (``write_rvos_layout``)."""
    from PIL import Image

    import pycocotools.mask as mask_util

    from ..video import VideoReader

    stats = {}
    for split, source in SPLITS.items():
        if split not in splits:
            continue
        split_root = os.path.join(tmp, split)
        videos, objects, mask_dict = {}, {}, {}
        n_exp = n_several = 0
        for vid, v in sorted(meta["videos"].items()):
            if v["split"] != source or v.get("missed"):
                continue
            frames = VideoReader(os.path.join(a2d_root, "Release", "clips320H", vid + ".mp4"))
            rgb = frames.read_all()
            listed = list(range(0, len(rgb), frame_step))
            names = [f"{t:05d}" for t in listed]
            folder = os.path.join(split_root, "JPEGImages", vid)
            os.makedirs(folder)
            ids = [_frame_ids(a2d_root, vid, t, rgb.shape[1:3]) for t in listed]
            for t, name, frame_ids in zip(listed, names, ids):
                Image.fromarray(rgb[t]).save(os.path.join(folder, f"{name}.jpg"), quality=95)
                if layout == "ytvos":
                    png = os.path.join(split_root, "Annotations", vid, f"{name}.png")
                    os.makedirs(os.path.dirname(png), exist_ok=True)
                    im = Image.fromarray(frame_ids, mode="P")
                    im.putpalette(_PALETTE)
                    im.save(png)
            exps = {}
            for q in sorted(queries.get(vid, []), key=lambda q: (q["instance_id"], q["query"])):
                exps[str(len(exps))] = {"exp": q["query"], "instances": [q["instance_id"]]}
            if layout == "mevis":
                for e in _several_actors(v["instances"]):
                    exps[str(len(exps))] = e
                    n_several += 1
            n_exp += len(exps)
            if layout == "ytvos":
                expressions = {k: {"exp": e["exp"], "obj_id": str(e["instances"][0] + 1)}
                               for k, e in exps.items()}  # fmt: skip
                objects[vid] = {"objects": {
                    str(int(i) + 1): {"category": inst["category"]}
                    for i, inst in v["instances"].items()}}  # fmt: skip
            else:
                annos = {int(i): len(mask_dict) + k for k, i in enumerate(sorted(
                    int(i) for i in v["instances"]))}  # fmt: skip
                for inst, anno in annos.items():
                    rles = []
                    for frame_ids in ids:
                        m = frame_ids == inst + 1
                        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                        rles.append(
                            {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
                            if m.any()
                            else None
                        )
                    mask_dict[str(anno)] = rles
                expressions = {k: {"exp": e["exp"], "obj_id": list(e["instances"]),
                                   "anno_id": [annos[i] for i in e["instances"]]}
                               for k, e in exps.items()}  # fmt: skip
            videos[vid] = {"expressions": expressions, "frames": names}
        if layout == "ytvos":
            expr_file = os.path.join(tmp, "meta_expressions", split, "meta_expressions.json")
            with open(os.path.join(split_root, "meta.json"), "w") as f:
                json.dump({"videos": objects}, f)
        else:
            expr_file = os.path.join(split_root, "meta_expressions.json")
            with open(os.path.join(split_root, "mask_dict.json"), "w") as f:
                json.dump(mask_dict, f)
        os.makedirs(os.path.dirname(expr_file), exist_ok=True)
        with open(expr_file, "w") as f:
            json.dump({"videos": videos}, f)
        stats[split] = {"videos": len(videos), "expressions": n_exp, "several_actors": n_several}
    return stats
