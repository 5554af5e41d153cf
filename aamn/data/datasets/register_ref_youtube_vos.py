"""Ref-YouTube-VOS and Ref-DAVIS17 (in the Ref-YouTube-VOS form of ReferFormer's conversion) as
detectron2 data sets.

Layout read (the releases as unpacked)::

    <root>/meta_expressions/<split>/meta_expressions.json
        {"videos": {video: {"expressions": {exp_id: {"exp": text, "obj_id": "1"}},
                            "frames": ["00000", "00005", ...]}}}
    <root>/<split>/JPEGImages/<video>/<frame>.jpg
    <root>/<split>/Annotations/<video>/<frame>.png   palette PNG: pixel = object id, 0 background
    <root>/<split>/meta.json                          {"videos": {video: {"objects": {obj_id:
                                                       {"category": name, ...}}}}} (optional)

A split with ``Annotations/`` (Ref-YouTube-VOS train, both Ref-DAVIS17 splits) gives one record
per (expression, listed frame) in which the referred object is present (the single-frame
protocol's sample, as A2D's), or, with ``all_frames``, per listed frame whatever it shows (the J&F
protocol scores every frame: an absent object is an empty target).  A split without masks
(Ref-YouTube-VOS valid) gives one record per (expression, listed frame) without annotations, for
inference only.  ``frame_idx`` is the frame's 1-based position in its ``JPEGImages`` folder (the
folder holds the listed frames: every 5th of the video in Ref-YouTube-VOS); ``frame_name`` its
file stem.  Boxes come from the masks.  Names read from the files (videos, frames, expression ids)
must be plain names, and an expression's ``obj_id`` an integer.

MeViS (``register_mevis``)::

    <root>/<split>/JPEGImages/<video>/<frame>.jpg
    <root>/<split>/meta_expressions.json   expressions with "obj_id" and "anno_id" lists
    <root>/<split>/mask_dict.json          {anno_id: [COCO RLE or null, one per listed frame]}

An expression may refer to several objects (``instance_ids``); its target in a frame is the union
of their masks, and may be empty.  It is scored with J&F over every listed frame (its protocol),
the union as one mask; ``valid`` has no ``mask_dict.json`` (inference only).

Ref-DAVIS17's expression ids come four per object (ReferFormer's conversion): the first and the
second annotator's, each a first-frame and a full-video expression; ``annotator`` is 0 or 1
(``exp_id // 2 % 2``), and its valid split is scored for each annotator apart, then averaged.
"""

import hashlib
import json
import os
from typing import Dict, List, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from aamn.utils.io import check_plain_name, read_json_file
from aamn.utils.masks import mask_to_box, mask_to_rle

from ..video import folder_frames, video_info
from .common import (
    A2D_ACTORS,
    cache_dir_for,
    cached_index,
    file_signature,
    layout_metadata,
    normalize_query,
    register_video_layout,
    unregister,
)

__all__ = [
    "load_mevis",
    "load_ref_youtube_vos",
    "load_ref_youtube_vos_frames",
    "read_meta_expressions",
    "read_palette_png",
    "register_mevis",
    "register_ref_davis",
    "register_ref_youtube_vos",
    "register_ref_youtube_vos_frames",
]


def read_palette_png(path: str) -> np.ndarray:
    """The object ids ``(H, W)`` of a palette PNG (its indices, not its colours).

    Raises:
        FileNotFoundError / IOError: missing, or not a readable PNG (named).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise IOError(f"{path}: a {im.mode} image; expected a palette PNG of object ids")
            return np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation not found: {path}") from None
    except OSError as e:
        if str(e).startswith(path):
            raise
        raise IOError(f"cannot read the annotation {path} (corrupt or not a PNG): {e}") from None


def read_meta_expressions(path: str, multi_object: bool = False) -> Dict[str, Dict]:
    """``{video: {"frames": [names], "expressions": {exp_id: {"exp": text, "obj_ids": [int]}}}}``
    of a ``meta_expressions.json`` (``obj_id`` absent in a split without masks: ``obj_ids`` []).
    ``multi_object``: ``obj_id`` may be a list (MeViS).

    Raises:
        FileNotFoundError / ValueError: the file is missing or malformed, naming it and the
            video / expression.
    """
    meta = read_json_file(path, "expressions file")
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        raise ValueError(f'{path}: expected {{"videos": {{video: ...}}}}')
    out = {}
    for vid, v in videos.items():
        check_plain_name(vid, "video id", path)
        if not isinstance(v, dict) or not isinstance(v.get("frames"), list):
            raise ValueError(f"{path}: video {vid} has no 'frames' list")
        frames = [check_plain_name(str(t), f"frame of video {vid}", path) for t in v["frames"]]
        expressions = {}
        for exp_id, e in (v.get("expressions") or {}).items():
            check_plain_name(str(exp_id), f"expression id of video {vid}", path)
            if not isinstance(e, dict) or not normalize_query(e.get("exp", "")):
                raise ValueError(f"{path}: expression {vid}/{exp_id} has no 'exp' text")
            ids = e.get("obj_id", [])  # none in a split without masks
            if isinstance(ids, list) and ids and not multi_object:
                raise ValueError(
                    f"{path}: expression {vid}/{exp_id}: one obj_id expected, got {ids}"
                )
            try:
                obj_ids = [int(i) for i in (ids if isinstance(ids, list) else [ids])]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}: expression {vid}/{exp_id}: obj_id {ids!r} is not an integer"
                ) from None
            expressions[str(exp_id)] = {"exp": normalize_query(e["exp"]), "obj_ids": obj_ids}
        out[vid] = {"frames": frames, "expressions": expressions}
    return out


def _categories(split_root: str) -> Dict[str, Dict[int, str]]:
    """``{video: {obj_id: category}}`` of ``meta.json`` (empty when there is none)."""
    path = os.path.join(split_root, "meta.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        return {
            str(vid): {int(k): str(o.get("category", "")) for k, o in v["objects"].items()}
            for vid, v in meta["videos"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path}: expected {{'videos': {{video: {{'objects': {{id: {{'category'}}}}}}}}}} ({e})"
        ) from None


def thing_classes_of(split_root: str) -> List[str]:
    """The classes of a split's objects: A2D's actors when every category of ``meta.json`` is one
    (the synthetic benchmark in this layout; without ``meta.json`` every object is then of class
    0), else one class, ``"object"``: the proposal detector of a release with its own categories
    (Ref-YouTube-VOS's) is class-agnostic (``ROI_HEADS.NUM_CLASSES 1``); the referring models
    read no class."""
    names = {c for v in _categories(split_root).values() for c in v.values()}
    return list(A2D_ACTORS) if names <= set(A2D_ACTORS) else ["object"]


def registered_classes(split_root: str) -> List[str]:
    """``thing_classes_of`` at registration (``meta.json`` is small: registering reads no more);
    a malformed ``meta.json`` gives A2D's actors here and is named when the records are read."""
    try:
        return thing_classes_of(split_root)
    except ValueError:
        return list(A2D_ACTORS)


def _paths(root: str, split: str):
    split_root = os.path.join(root, split)
    return (
        split_root,
        os.path.join(root, "meta_expressions", split, "meta_expressions.json"),
        os.path.join(split_root, "Annotations"),
    )


def _listed_frames(split_root: str, vid: str, names: List[str], meta_file: str):
    """``(folder, length, height, width, [(name, frame_idx)])`` of a video's listed frames: its
    ``JPEGImages`` folder and each listed frame's 1-based position in it.

    Raises:
        FileNotFoundError: no folder, or a listed frame not in it (named)."""
    folder = os.path.join(split_root, "JPEGImages", vid)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"video {vid} of {meta_file}: no frame folder {folder}")
    order = {os.path.splitext(n)[0]: i + 1 for i, n in enumerate(folder_frames(folder))}
    missing = [n for n in names if n not in order]
    if missing:
        raise FileNotFoundError(f"frame {missing[0]} of video {vid} ({meta_file}) not in {folder}")
    length, height, width = video_info(folder)
    return folder, length, height, width, [(n, order[n]) for n in names]


def _annotation(obj: int, mask: np.ndarray, category_id: int = 0) -> Dict:
    """One object of a frame in the record contract: its box from its mask."""
    return {"instance_id": obj, "bbox": mask_to_box(mask), "bbox_mode": BoxMode.XYXY_ABS,
            "segmentation": mask_to_rle(mask), "category_id": category_id,
            "iscrowd": 0}  # fmt: skip


def _build_index(root, split, meta_file, multi_object):
    split_root, _, annotations = _paths(root, split)
    videos = read_meta_expressions(meta_file, multi_object)
    has_masks = os.path.isdir(annotations)
    categories = _categories(split_root)
    classes = thing_classes_of(split_root)
    out = {"videos": {}, "has_masks": has_masks, "thing_classes": classes}
    for vid, v in sorted(videos.items()):
        folder, length, height, width, listed = _listed_frames(
            split_root, vid, v["frames"], meta_file
        )
        frames = {}
        for name, t in listed:
            anns = []
            if has_masks:
                ids = read_palette_png(os.path.join(annotations, vid, f"{name}.png"))
                if ids.shape != (height, width):
                    raise ValueError(
                        f"{os.path.join(annotations, vid, name)}.png is {ids.shape[0]}x"
                        f"{ids.shape[1]}, the frames of {folder} {height}x{width}"
                    )
                for obj in (int(i) for i in np.unique(ids) if i != 0):
                    category = categories.get(vid, {}).get(obj)
                    index = classes.index(category) if category in classes else 0
                    anns.append(_annotation(obj, ids == obj, index))
            frames[name] = (t, anns)
        out["videos"][vid] = {
            "file_name": folder,
            "length": length,
            "height": height,
            "width": width,
            "frames": frames,
            "expressions": v["expressions"],
        }
    return out


def load_index(root: str, split: str, multi_object: bool = False) -> Dict:
    """The cached index of a split (``_build_index``), rebuilt when a file it read changed."""
    root = os.path.abspath(os.fspath(root))
    split_root, meta_file, annotations = _paths(root, split)
    if not os.path.isdir(split_root):
        raise FileNotFoundError(
            f"{split} split not found: {split_root}. Place the release there (JPEGImages/, "
            "Annotations/, and meta_expressions/<split>/meta_expressions.json beside), set "
            "$AAMN_DATASETS, or register it with its location."
        )
    h = hashlib.sha1(repr(file_signature(meta_file)).encode())
    for sub in ("JPEGImages", "Annotations"):
        folder = os.path.join(split_root, sub)
        if os.path.isdir(folder):
            for vid in sorted(os.listdir(folder)):
                h.update(repr(file_signature(os.path.join(folder, vid))).encode())
    h.update(repr(file_signature(os.path.join(split_root, "meta.json"))).encode())
    cache = os.path.join(cache_dir_for(split_root), f"ytvos_index_{multi_object:d}.pkl")
    return cached_index(
        cache, h.hexdigest(), lambda: _build_index(root, split, meta_file, multi_object)
    )


def annotator_of(exp_id: str) -> Optional[int]:
    """Ref-DAVIS17's annotator of an expression id (module docstring); None when not a number."""
    return int(exp_id) // 2 % 2 if str(exp_id).isdigit() else None


def load_ref_youtube_vos(
    root: str,
    split: str,
    dataset_name: Optional[str] = None,
    all_frames: bool = False,
    multi_object: bool = False,
) -> List[Dict]:
    """Records of the record contract (module docstring): ``file_name`` (the frame folder),
    ``video_id``, ``frame_idx`` (1-based), ``frame_name``, ``length``, ``height``, ``width``,
    ``query``, ``exp_id``, ``instance_id`` (the first referred object), ``instance_ids`` (all),
    ``image_id`` (``v_<video>_f_<frame_idx>_e_<exp_id>``), ``annotations`` (every object of the
    frame), ``annotator`` (Ref-DAVIS17's), ``dataset_name``."""
    return _records(load_index(root, split, multi_object), dataset_name, all_frames)


def _records(index: Dict, dataset_name: Optional[str], all_frames: bool) -> List[Dict]:
    """The records of an index (``load_ref_youtube_vos``'s docstring)."""
    records = []
    for vid, v in index["videos"].items():
        for exp_id, e in sorted(v["expressions"].items()):
            for name, (t, anns) in v["frames"].items():
                present = {a["instance_id"] for a in anns} & set(e["obj_ids"])
                if index["has_masks"] and not all_frames and not present:
                    continue
                records.append(
                    {
                        "file_name": v["file_name"],
                        "video_id": vid,
                        "frame_idx": t,
                        "frame_name": name,
                        "length": v["length"],
                        "height": v["height"],
                        "width": v["width"],
                        "query": e["exp"],
                        "exp_id": exp_id,
                        # the first referred object in the frame (the training target of a
                        # model of one actor), else the first referred
                        "instance_id": next(
                            (o for o in e["obj_ids"] if o in present), (e["obj_ids"] or [0])[0]
                        ),
                        "instance_ids": list(e["obj_ids"]),
                        "image_id": f"v_{vid}_f_{t}_e_{exp_id}",
                        "annotations": anns,
                        "annotator": annotator_of(exp_id),
                        "dataset_name": dataset_name,
                    }
                )
    return records


def register_ref_youtube_vos(name, root, split, all_frames=False, **metadata):
    """Register a split of a Ref-YouTube-VOS-layout release (``root``: the folder holding
    ``meta_expressions/`` and the split folders) as ``name``.  A split with masks is evaluated
    (``evaluator_type`` "rvos"; with ``all_frames`` "jf": J&F only, every frame a sample); one
    without is for inference (``evaluator_type`` "none")."""
    root = os.path.abspath(os.fspath(root))
    split_root, meta_file, annotations = _paths(root, split)
    unregister(name)
    DatasetCatalog.register(
        name, lambda: load_ref_youtube_vos(root, split, dataset_name=name, all_frames=all_frames)
    )
    has_masks = os.path.isdir(annotations)
    evaluator = ("jf" if all_frames else "rvos") if has_masks else "none"
    classes = registered_classes(split_root)
    extra = {
        "meta_expressions": meta_file,
        "annotations_dir": annotations if has_masks else None,
        "all_frames": all_frames,
        "thing_classes": classes,
        **metadata,
    }
    meta = layout_metadata(name, split_root, split, evaluator, "ytvos", [], None, extra)
    MetadataCatalog.get(name).set(**meta)


def load_ref_youtube_vos_frames(root: str, split: str, dataset_name=None) -> List[Dict]:
    """One detection record per listed frame that shows an object (the proposal detector's
    training data, as A2D's ``_frames`` sets): ``file_name`` (the frame folder), ``frame_idx``,
    ``height``, ``width``, ``image_id``, ``annotations`` (every object)."""
    index = load_index(root, split)
    if not index["has_masks"]:
        raise ValueError(f"{os.path.join(root, split)} has no Annotations/: no boxes to train on")
    records = []
    for vid, v in index["videos"].items():
        for name, (t, anns) in v["frames"].items():
            if anns:
                records.append({"file_name": v["file_name"], "video_id": vid, "frame_idx": t,
                                "length": v["length"], "height": v["height"],
                                "width": v["width"], "image_id": f"{vid}_{t}",
                                "annotations": anns, "dataset_name": dataset_name})  # fmt: skip
    return records


def register_ref_youtube_vos_frames(name, root, split, **metadata):
    """The annotated frames of a Ref-YouTube-VOS-layout split (``load_ref_youtube_vos_frames``),
    for the proposal detector (``evaluator_type`` "coco")."""
    root = os.path.abspath(os.fspath(root))
    split_root = os.path.join(root, split)
    unregister(name)
    DatasetCatalog.register(name, lambda: load_ref_youtube_vos_frames(root, split, name))
    classes = registered_classes(split_root)
    meta = layout_metadata(name, split_root, split, "coco", "ytvos", [], None,
                           {"thing_classes": classes, **metadata})  # fmt: skip
    MetadataCatalog.get(name).set(**meta)


def register_ref_davis(name, root, split, all_frames=False, **metadata):
    """Ref-DAVIS17 in ReferFormer's Ref-YouTube-VOS form (``register_ref_youtube_vos``), its
    records carrying the annotator of each expression."""
    register_ref_youtube_vos(name, root, split, all_frames, per_annotator=True, **metadata)


def read_mask_dict(path: str, anno_ids: Dict[int, int]) -> Dict[int, List]:
    """``{anno_id: [COCO RLE or None per listed frame]}`` of MeViS's ``mask_dict.json`` for the
    ``anno_ids`` asked (``{anno_id: the number of listed frames of its video}``, the length each
    list must have).

    Raises:
        FileNotFoundError / ValueError: the file, or an anno id in it, missing or malformed.
    """
    masks = read_json_file(path, "mask file")
    out = {}
    for anno, length in anno_ids.items():
        rles = masks.get(str(anno)) if isinstance(masks, dict) else None
        if not isinstance(rles, list) or len(rles) != length:
            raise ValueError(
                f"{path}: anno_id {anno} needs a list of {length} masks (one per listed frame), "
                f"got {type(rles).__name__ if not isinstance(rles, list) else len(rles)}"
            )
        for rle in rles:
            if rle is not None and not (
                isinstance(rle, dict) and isinstance(rle.get("size"), list) and "counts" in rle
            ):
                raise ValueError(f"{path}: anno_id {anno}: a mask is not a COCO RLE: {rle!r:.80}")
        out[int(anno)] = rles
    return out


def _build_mevis_index(root, split):
    import pycocotools.mask as mask_util

    split_root = os.path.join(root, split)
    meta_file = os.path.join(split_root, "meta_expressions.json")
    mask_file = os.path.join(split_root, "mask_dict.json")
    with open(meta_file, encoding="utf-8") as f:
        raw = json.load(f)
    videos = read_meta_expressions(meta_file, multi_object=True)
    has_masks = os.path.isfile(mask_file)
    pairs = {}  # video -> {anno_id: obj_id}
    for vid, v in videos.items():
        for exp_id, e in v["expressions"].items():
            annos = raw["videos"][vid]["expressions"][exp_id].get("anno_id", [])
            if has_masks and len(annos) != len(e["obj_ids"]):
                raise ValueError(
                    f"{meta_file}: expression {vid}/{exp_id} pairs {len(e['obj_ids'])} obj_id with "
                    f"{len(annos)} anno_id"
                )
            pairs.setdefault(vid, {}).update(zip((int(a) for a in annos), e["obj_ids"]))
    lengths = {a: len(videos[vid]["frames"]) for vid, p in pairs.items() for a in p}
    masks = read_mask_dict(mask_file, lengths) if has_masks else {}
    out = {"videos": {}, "has_masks": has_masks, "thing_classes": list(A2D_ACTORS)}
    for vid, v in sorted(videos.items()):
        folder, length, height, width, listed = _listed_frames(
            split_root, vid, v["frames"], meta_file
        )
        frames = {}
        for k, (name, t) in enumerate(listed):
            anns = []
            for anno, obj in sorted(pairs.get(vid, {}).items()):
                rle = masks.get(anno, [None] * len(v["frames"]))[k]
                if rle is None:
                    continue
                m = mask_util.decode(rle).astype(bool)
                if m.shape != (height, width):
                    raise ValueError(
                        f"{mask_file}: anno_id {anno} frame {name} is {m.shape[0]}x{m.shape[1]}, "
                        f"the frames of {folder} {height}x{width}"
                    )
                if m.any():
                    anns.append(_annotation(obj, m))
            frames[name] = (t, anns)
        out["videos"][vid] = {"file_name": folder, "length": length, "height": height,
                              "width": width, "frames": frames,
                              "expressions": v["expressions"]}  # fmt: skip
    return out


def load_mevis(root: str, split: str, dataset_name: Optional[str] = None, all_frames=True):
    """MeViS's records (module docstring): ``load_ref_youtube_vos``'s, ``instance_ids`` all the
    referred objects; by default every listed frame (its J&F protocol)."""
    root = os.path.abspath(os.fspath(root))
    split_root = os.path.join(root, split)
    meta_file = os.path.join(split_root, "meta_expressions.json")
    if not os.path.isfile(meta_file):
        raise FileNotFoundError(f"MeViS {split} split not found: no {meta_file}")
    h = hashlib.sha1(repr(file_signature(meta_file)).encode())
    h.update(repr(file_signature(os.path.join(split_root, "mask_dict.json"))).encode())
    cache = os.path.join(cache_dir_for(split_root), "mevis_index.pkl")
    index = cached_index(cache, h.hexdigest(), lambda: _build_mevis_index(root, split))
    return _records(index, dataset_name, all_frames)


def register_mevis(name, root, split, all_frames=True, **metadata):
    """Register a MeViS split (``root``: the folder holding the split folders) as ``name``:
    every listed frame of every expression, scored with J&F (``evaluator_type`` "jf"; "none"
    without ``mask_dict.json``); without ``all_frames``, the frames showing a referred object
    (training)."""
    root = os.path.abspath(os.fspath(root))
    split_root = os.path.join(root, split)
    unregister(name)
    DatasetCatalog.register(
        name, lambda: load_mevis(root, split, dataset_name=name, all_frames=all_frames)
    )
    has_masks = os.path.isfile(os.path.join(split_root, "mask_dict.json"))
    extra = {"meta_expressions": os.path.join(split_root, "meta_expressions.json"),
             "mask_dict": os.path.join(split_root, "mask_dict.json") if has_masks else None,
             "all_frames": all_frames, **metadata}  # fmt: skip
    meta = layout_metadata(
        name, split_root, split, "jf" if has_masks else "none", "ytvos", [], None, extra
    )
    MetadataCatalog.get(name).set(**meta)


def list_ytvos_videos(split_root: str):
    """Sorted ``[(video_id, frame folder)]`` of a Ref-YouTube-VOS-layout split: every
    ``JPEGImages/<video>`` folder."""
    images = os.path.join(split_root, "JPEGImages")
    return [
        (vid, os.path.join(images, vid))
        for vid in sorted(os.listdir(images))
        if os.path.isdir(os.path.join(images, vid))
    ]


register_video_layout("ytvos", "JPEGImages", list_ytvos_videos)
