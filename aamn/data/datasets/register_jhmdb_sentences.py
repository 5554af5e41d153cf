"""J-HMDB Sentences as a detectron2 data set (evaluation only).

Layout read (the public release, unpacked as is)::

    <root>/jhmdb_annotation.txt                               header video_id,query
    <root>/Rename_Images/<action>/<video_id>/<frame:05d>.png  frames, 1-based
    <root>/puppet_mask/<action>/<video_id>/puppet_mask.mat    'part_mask' (H, W, T), MATLAB v5

Protocol: one actor per video (instance id 1), its mask in frame ``t`` is
``part_mask[:, :, t - 1] != 0``; only frames ``1..T`` that have a mask are usable (some videos have
fewer masks than frames).  Three frames per video are sampled uniformly over the usable frames,
deterministically: ``round(linspace(1, T_usable, 3))`` (fewer when ``T_usable < 3``); each
(video, frame) is one sample.

The index is cached in ``<root>/cache/`` (or under ``$AAMN_CACHE``) and rebuilt when the
annotation file, a frame folder or a ``.mat`` file changes.
"""

import hashlib
import logging
import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from aamn.utils.io import check_plain_name
from aamn.utils.masks import mask_to_box, mask_to_rle

from ..video import video_info
from .common import (
    cache_dir_for,
    cached_index,
    file_signature,
    layout_metadata,
    read_query_csv,
    register_video_layout,
    unregister,
)

__all__ = [
    "JHMDB_ACTIONS",
    "FRAMES_PER_VIDEO",
    "register_jhmdb_sentences",
    "load_jhmdb_sentences",
    "read_puppet_mask",
    "sample_frames",
]

logger = logging.getLogger(__name__)

# The 21 J-HMDB action classes (the folder names of Rename_Images and puppet_mask).
JHMDB_ACTIONS = [
    "brush_hair",
    "catch",
    "clap",
    "climb_stairs",
    "golf",
    "jump",
    "kick_ball",
    "pick",
    "pour",
    "pullup",
    "push",
    "run",
    "shoot_ball",
    "shoot_bow",
    "shoot_gun",
    "sit",
    "stand",
    "swing_baseball",
    "throw",
    "walk",
    "wave",
]
FRAMES_PER_VIDEO = 3


def sample_frames(num_usable, k=FRAMES_PER_VIDEO):
    """1-based frame numbers sampled uniformly over ``1..num_usable``: ``round(linspace)``,
    unique."""
    if num_usable <= 0:
        return []
    picks = np.rint(np.linspace(1, num_usable, k)).astype(int)
    return sorted(set(int(p) for p in picks))


def read_puppet_mask(path):
    """Read ``puppet_mask.mat``: bool ``(T, H, W)`` (frame ``t`` is index ``t - 1``).

    Raises:
        FileNotFoundError: no such file.
        IOError: not a readable MATLAB file.
        ValueError: no ``part_mask`` variable, or not of shape ``(H, W, T)``.
    """
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise FileNotFoundError(f"J-HMDB puppet mask not found: {path}")
    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise IOError(
            f"Cannot read the J-HMDB mask file {path} (corrupt or not MATLAB): {e}"
        ) from e
    if "part_mask" not in data:
        raise ValueError(
            f"{path}: no 'part_mask' variable (found "
            f"{sorted(k for k in data if not k.startswith('__'))})"
        )
    pm = np.asarray(data["part_mask"])
    if pm.ndim == 2:
        pm = pm[:, :, None]
    if pm.ndim != 3:
        raise ValueError(f"{path}: 'part_mask' has shape {pm.shape}, expected (H, W, T)")
    return np.ascontiguousarray(np.transpose(pm != 0, (2, 0, 1)))


def _read_annotations(path):
    return [
        (check_plain_name(row[0].strip(), f"video id of line {lineno}", path), row[1])
        for lineno, row in read_query_csv(path, ("video_id", "query"))
    ]


def _video_folders(root):
    """video_id -> action, from ``Rename_Images/<action>/<video_id>/``."""
    images = os.path.join(root, "Rename_Images")
    out = {}
    for action in sorted(os.listdir(images)):
        adir = os.path.join(images, action)
        if not os.path.isdir(adir):
            continue
        for vid in sorted(os.listdir(adir)):
            if os.path.isdir(os.path.join(adir, vid)):
                out.setdefault(vid, action)
    return out


def _check_tree(root):
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"J-HMDB Sentences root not found: {root}. Place the release there "
            "(jhmdb_annotation.txt, Rename_Images/, puppet_mask/), set $AAMN_DATASETS, or call "
            "register_jhmdb_sentences(name, root) with its location."
        )
    for rel, is_dir in (
        ("jhmdb_annotation.txt", False),
        ("Rename_Images", True),
        ("puppet_mask", True),
    ):
        p = os.path.join(root, rel)
        if not (os.path.isdir(p) if is_dir else os.path.isfile(p)):
            raise FileNotFoundError(
                f"J-HMDB Sentences release {'folder' if is_dir else 'file'} not found: {p} (root "
                f"{root})"
            )


def _build_index(root, rows, actions):
    from tqdm import tqdm

    videos = {}
    samples = []
    for vid, query in tqdm(
        rows, desc="J-HMDB Sentences index", unit="query", disable=len(rows) < 100
    ):
        if vid not in actions:
            raise FileNotFoundError(
                f"J-HMDB video not found: no folder Rename_Images/<action>/{vid} under {root}"
            )
        action = actions[vid]
        frames_dir = os.path.join(root, "Rename_Images", action, vid)
        mat = os.path.join(root, "puppet_mask", action, vid, "puppet_mask.mat")
        if vid not in videos:
            length, height, width = video_info(frames_dir)
            masks = read_puppet_mask(mat)
            if masks.shape[1:] != (height, width):
                raise ValueError(
                    f"{mat}: mask size {masks.shape[1]}x{masks.shape[2]} (HxW of 'part_mask') does "
                    f"not match the frames of {frames_dir}, {height}x{width}"
                )
            usable = min(length, masks.shape[0])
            if masks.shape[0] < length:
                logger.debug("%s: %d masks for %d frames", vid, masks.shape[0], length)
            frames = {}
            for t in sample_frames(usable):
                m = masks[t - 1]
                box = mask_to_box(m) or [0.0, 0.0, 0.0, 0.0]
                frames[t] = [
                    {
                        "instance_id": 1,
                        "bbox": box,
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "segmentation": mask_to_rle(m),
                        "category_id": 0,
                        "iscrowd": 0,
                    }
                ]
            videos[vid] = {
                "file_name": frames_dir,
                "action": action,
                "length": length,
                "num_masks": int(masks.shape[0]),
                "height": height,
                "width": width,
                "frames": frames,
            }
        for t in sorted(videos[vid]["frames"]):
            samples.append((vid, t, query))
    return {"videos": videos, "samples": samples}


def load_jhmdb_index(root):
    """The cached index: dict with ``videos`` (video_id -> info and sampled frames' annotations)
    and ``samples`` (list of (video_id, frame, query))."""
    root = os.path.abspath(os.fspath(root))
    _check_tree(root)
    ann = os.path.join(root, "jhmdb_annotation.txt")
    rows = _read_annotations(ann)
    actions = _video_folders(root)
    h = hashlib.sha1(repr(file_signature(ann)).encode())
    for vid in sorted({v for v, _ in rows}):
        action = actions.get(vid)
        if action is None:
            h.update(f"missing {vid}".encode())
            continue
        frames_dir = os.path.join(root, "Rename_Images", action, vid)
        h.update(repr(file_signature(frames_dir)).encode())
        h.update(
            repr(
                file_signature(os.path.join(root, "puppet_mask", action, vid, "puppet_mask.mat"))
            ).encode()
        )
    cache_file = os.path.join(cache_dir_for(root), "jhmdb_index.pkl")
    return cached_index(cache_file, h.hexdigest(), lambda: _build_index(root, rows, actions))


def load_jhmdb_sentences(root, dataset_name=None):
    """Records of the record contract, one per (query, sampled frame).

    Returns:
        list[dict]: ``file_name`` (the frame folder), ``video_id``, ``frame_idx`` (1-based),
        ``length`` (frames in the folder), ``height``, ``width``, ``query``, ``instance_id`` (1),
        ``image_id``, ``annotations`` (the actor), ``action`` (J-HMDB class), ``num_masks``,
        ``dataset_name``.
    """
    index = load_jhmdb_index(root)
    records = []
    for vid, t, query in index["samples"]:
        v = index["videos"][vid]
        records.append(
            {
                "file_name": v["file_name"],
                "video_id": vid,
                "frame_idx": t,
                "length": v["length"],
                "height": v["height"],
                "width": v["width"],
                "query": query,
                "instance_id": 1,
                "image_id": f"v_{vid}_f_{t}_i_1",
                "annotations": v["frames"][t],
                "action": v["action"],
                "num_masks": v["num_masks"],
                "dataset_name": dataset_name,
            }
        )
    return records


def register_jhmdb_sentences(name, root, synthetic_meta=None, **metadata):
    """Register a J-HMDB-Sentences-layout tree as a detectron2 data set (evaluation).

    Args:
        name: the data set name (an existing registration of that name is replaced).
        root: the folder holding ``jhmdb_annotation.txt``, ``Rename_Images/``, ``puppet_mask/``.
        synthetic_meta: path of the synthetic benchmark's ``synthetic_meta.json``; None: that file
            in ``root`` when it exists.
        metadata: extra MetadataCatalog fields.
    """
    root = os.path.abspath(os.fspath(root))
    unregister(name)
    DatasetCatalog.register(name, lambda: load_jhmdb_sentences(root, dataset_name=name))
    # The actor of J-HMDB is a person (A2D category 0); the action classes are J-HMDB's own.
    meta = layout_metadata(
        name, root, "test", "rvos", "jhmdb", JHMDB_ACTIONS, synthetic_meta, metadata
    )
    MetadataCatalog.get(name).set(**meta)


def list_jhmdb_videos(root):
    """Sorted ``[(video_id, frame folder)]`` of a J-HMDB-layout tree: every
    ``Rename_Images/<action>/<video_id>`` folder (the first action's, for an id in several)."""
    images = os.path.join(root, "Rename_Images")
    out = {}
    for action in sorted(os.listdir(images)):
        adir = os.path.join(images, action)
        if os.path.isdir(adir):
            for vid in sorted(os.listdir(adir)):
                if os.path.isdir(os.path.join(adir, vid)):
                    out.setdefault(vid, os.path.join(adir, vid))
    return sorted(out.items())


register_video_layout("jhmdb", "Rename_Images", list_jhmdb_videos)
