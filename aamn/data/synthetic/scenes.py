"""Sampling and rendering one synthetic video: the cast, its motions, the background, the queries.

A2D-layout videos hold 2-4 actors.  The cast is built around an *anchor* actor with distractors
that make the queries hard on purpose:

- an **action twin** (same class, colour and size, another action): only the action words and the
  motion tell the two apart (``needs_action``);
- an **appearance twin** (same action, another class, colour or size): only the actor words and
  the appearance tell them apart (``needs_appearance``);
- a **location twin** (same look and action, kept in the other half of the frame): only the
  location words tell them apart (``needs_location``);
- the remaining actors are drawn at random.

Actors are drawn in a random depth order, so they occlude each other at times; an instance's mask
is its visible part.  The annotated frames (3-5, spread over the video as in A2D) are chosen among
the frames where every queried actor shows at least :data:`MIN_VISIBLE_FRACTION` of itself.  The
background is a smooth random texture panning slowly; Gaussian noise is added to every frame.

J-HMDB-layout videos hold one adult, larger on average, with one of the actions J-HMDB shares with
A2D (climb_stairs, jump, run, walk, stand).
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .actors import (
    ACTOR_CLASSES,
    COLORS,
    SIZE_RANGES,
    SIZES,
    VALID_ACTIONS,
    Pose,
    actor_action_id,
    draw_actor,
)
from ...utils.masks import mask_to_box
from .motions import simulate_motion
from .queries import describe, instance_query_types, location_words

__all__ = [
    "SceneConfig",
    "RenderedVideo",
    "sample_a2d_video",
    "sample_jhmdb_video",
    "render",
    "JHMDB_ACTION_FOLDERS",
    "MIN_VISIBLE_FRACTION",
]

# J-HMDB action folder for each A2D action an adult can take in J-HMDB.
JHMDB_ACTION_FOLDERS = {
    "climbing": "climb_stairs",
    "jumping": "jump",
    "running": "run",
    "walking": "walk",
    "none": "stand",
}
MIN_VISIBLE_FRACTION = 0.4
_LEFT, _RIGHT, _FULL = (0.0, 0.42, 0.0, 1.0), (0.58, 1.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0)


@dataclass
class SceneConfig:
    """How videos are drawn (probabilities of the distractor patterns, noise, number of frames)."""

    height: int = 96
    width: int = 128
    min_frames: int = 24
    max_frames: int = 32
    num_actors_p: Tuple[float, float, float] = (0.25, 0.4, 0.35)  # 2, 3, 4 actors
    p_action_twin: float = 0.55
    p_location_twin: float = 0.3
    p_appearance_twin: float = 0.6
    p_unqueried_filler: float = 0.15
    min_annotated: int = 3
    max_annotated: int = 5
    noise_std: Tuple[float, float] = (2.0, 5.0)
    max_attempts: int = 50


@dataclass
class RenderedVideo:
    """A rendered video with its ground truth.

    - ``frames``: uint8 ``(T, H, W, 3)`` RGB;
    - ``labels``: int ``(T, H, W)``, 0 = background, ``k + 1`` = the visible part of
      ``instances[k]``;
    - ``instances``: dicts with ``instance_id``, ``category``, ``color``, ``size``, ``action``,
      ``queried``, ``location`` (words valid over the whole video), ``boxes`` (per frame
      ``[x1, y1, x2, y2]`` of the visible mask, exclusive ends as in ``mask_to_box``, or None when
      not visible), ``visible_fraction`` (per frame, visible / unoccluded pixels);
    - ``queries``: dicts with ``instance_id``, ``query``, ``location``, ``types``;
    - ``annotated_frames``: 1-based frame numbers.
    """

    frames: np.ndarray
    labels: np.ndarray
    instances: List[dict]
    queries: List[dict] = field(default_factory=list)
    annotated_frames: List[int] = field(default_factory=list)

    def masks(self, t: int) -> Tuple[List[int], np.ndarray, np.ndarray, List[int]]:
        """Instances visible in 0-based frame ``t``:
        ``(ids, masks (N, H, W) bool, boxes (N, 4), codes)``."""
        ids, masks, boxes, codes = [], [], [], []
        for k, inst in enumerate(self.instances):
            box = inst["boxes"][t]
            if box is None:
                continue
            ids.append(inst["instance_id"])
            masks.append(self.labels[t] == k + 1)
            boxes.append(box)
            codes.append(actor_action_id(inst["category"], inst["action"]))
        h, w = self.labels.shape[1:]
        return (
            ids,
            np.asarray(masks, bool).reshape(-1, h, w),
            np.asarray(boxes, np.float64).reshape(-1, 4),
            codes,
        )


# ---------------------------------------------------------------------------------------- cast
def _random_look(rng) -> Dict[str, str]:
    return {
        "category": ACTOR_CLASSES[int(rng.integers(len(ACTOR_CLASSES)))],
        "color": list(COLORS)[int(rng.integers(len(COLORS)))],
        "size": SIZES[int(rng.integers(len(SIZES)))],
    }


def _random_actor(rng) -> dict:
    a = _random_look(rng)
    acts = VALID_ACTIONS[a["category"]]
    a["action"] = acts[int(rng.integers(len(acts)))]
    a["region"] = _FULL
    return a


def _sample_cast(rng, cfg: SceneConfig) -> List[dict]:
    n = int(rng.choice([2, 3, 4], p=cfg.num_actors_p))
    anchor = _random_actor(rng)
    anchor["queried"] = True
    cast = [anchor]
    if len(cast) < n and rng.random() < cfg.p_action_twin:
        acts = [a for a in VALID_ACTIONS[anchor["category"]] if a != anchor["action"]]
        twin = dict(anchor, action=acts[int(rng.integers(len(acts)))], queried=True)
        cast.append(twin)
    if len(cast) < n and rng.random() < cfg.p_location_twin:
        twin = dict(anchor, queried=True)
        sides = (_LEFT, _RIGHT) if rng.random() < 0.5 else (_RIGHT, _LEFT)
        anchor["region"], twin["region"] = sides
        cast.append(twin)
    if len(cast) < n and rng.random() < cfg.p_appearance_twin:
        classes = [c for c in ACTOR_CLASSES if anchor["action"] in VALID_ACTIONS[c]]
        for _ in range(20):
            look = _random_look(rng)
            look["category"] = classes[int(rng.integers(len(classes)))]
            if any(look[a] != anchor[a] for a in ("category", "color", "size")):
                break
        cast.append(dict(look, action=anchor["action"], region=_FULL, queried=True))
    while len(cast) < n:
        filler = _random_actor(rng)
        filler["queried"] = bool(rng.random() >= cfg.p_unqueried_filler)
        cast.append(filler)
    order = rng.permutation(len(cast))
    return [cast[i] for i in order]


# ---------------------------------------------------------------------------------------- drawing
def _background(rng, height: int, width: int, num_frames: int) -> np.ndarray:
    """A smooth random colour texture panning slowly: float32 ``(T, H, W, 3)``."""
    u = height / 96.0
    speed = float(rng.uniform(0.2, 0.45)) * u
    angle = float(rng.uniform(0, 2 * np.pi))
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    pad = int(np.ceil(speed * num_frames)) + 2
    th, tw = height + 2 * pad, width + 2 * pad
    # a dull base colour; blotches mostly in brightness, a little in hue, so that the actors'
    # saturated colours stand out and keep their names
    base = float(rng.uniform(70, 140)) + rng.uniform(-15, 15, size=3)
    coarse = rng.uniform(-1, 1, size=(4, 5, 4)).astype(np.float32)
    fine = rng.uniform(-1, 1, size=(12, 16)).astype(np.float32)
    coarse = cv2.resize(coarse, (tw, th), interpolation=cv2.INTER_CUBIC)
    tex = (
        base.astype(np.float32)
        + 30 * coarse[..., :1]
        + 8 * coarse[..., 1:]
        + 12 * cv2.resize(fine, (tw, th), interpolation=cv2.INTER_CUBIC)[..., None]
    )
    frames = np.empty((num_frames, height, width, 3), np.float32)
    for t in range(num_frames):
        m = np.float32([[1, 0, pad + vx * t], [0, 1, pad + vy * t]])
        frames[t] = cv2.warpAffine(
            tex,
            m,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
    return frames


def render(
    rng,
    cast: List[dict],
    poses: List[List[Pose]],
    height: int,
    width: int,
    num_frames: int,
    noise_std: float,
):
    """Draw the cast over a panning background.

    Returns ``frames`` uint8 ``(T, H, W, 3)``, ``labels`` int32 ``(T, H, W)`` (``k + 1`` = visible
    part of ``cast[k]``), ``full_area`` ``(K, T)`` (unoccluded pixel count) and ``centres``
    ``(K, T, 2)`` (centre of the unoccluded box, pixels).  The cast is drawn in the order of its
    ``z`` keys (back to front).
    """
    frames = np.clip(_background(rng, height, width, num_frames), 0, 255).astype(np.uint8)
    labels = np.zeros((num_frames, height, width), np.int32)
    full_area = np.zeros((len(cast), num_frames))
    centres = np.zeros((len(cast), num_frames, 2))
    z_order = sorted(range(len(cast)), key=lambda k: cast[k]["z"])
    for t in range(num_frames):
        for k in z_order:
            mask = draw_actor(
                frames[t],
                labels[t],
                k + 1,
                cast[k]["category"],
                COLORS[cast[k]["color"]],
                poses[k][t],
            )
            full_area[k, t] = mask.sum()
            box = mask_to_box(mask)
            if box is not None:
                centres[k, t] = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    # sensor-like noise, the same on the three channels of a pixel
    noise = rng.standard_normal(size=(num_frames, height, width, 1), dtype=np.float32) * np.float32(
        noise_std
    )
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    return frames, labels, full_area, centres


def _finish(cast, labels, full_area, centres, height, width) -> List[dict]:
    instances = []
    for k, a in enumerate(cast):
        vis = labels == k + 1
        area = vis.reshape(vis.shape[0], -1).sum(1)
        instances.append(
            {
                "instance_id": k,
                "category": a["category"],
                "color": a["color"],
                "size": a["size"],
                "action": a["action"],
                "queried": a.get("queried", True),
                "location": location_words(centres[k], height, width),
                "boxes": [mask_to_box(v) for v in vis],
                "visible_fraction": [
                    float(v / f) if f else 0.0 for v, f in zip(area, full_area[k])
                ],
            }
        )
    return instances


def _annotated_frames(rng, ok: np.ndarray, lo: int, hi: int) -> List[int]:
    """3-5 frames spread over the video among those where ``ok`` (bool ``(T,)``): 1-based
    numbers."""
    want = int(rng.integers(lo, hi + 1))
    T = ok.shape[0]
    chosen = []
    for seg in np.array_split(np.arange(T), want):
        cand = [t for t in seg if ok[t]]
        if cand:
            chosen.append(int(cand[int(rng.integers(len(cand)))]) + 1)
    return chosen


def sample_a2d_video(rng: np.random.Generator, cfg: SceneConfig) -> RenderedVideo:
    """Sample and render one A2D-layout video (2-4 actors, queries, annotated frames).

    Draws are repeated (up to ``cfg.max_attempts``) until every queried actor can be described
    uniquely and at least ``cfg.min_annotated`` frames show every queried actor well.
    """
    H, W = cfg.height, cfg.width
    for _ in range(cfg.max_attempts):
        T = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        cast = _sample_cast(rng, cfg)
        poses = []
        for z, a in zip(rng.permutation(len(cast)), cast):
            a["z"] = int(z)
            scale = float(rng.uniform(*SIZE_RANGES[a["size"]])) * H
            poses.append(
                simulate_motion(rng, a["category"], a["action"], scale, T, H, W, a["region"])
            )
        noise_std = float(rng.uniform(*cfg.noise_std))
        frames, labels, full_area, centres = render(rng, cast, poses, H, W, T, noise_std)
        instances = _finish(cast, labels, full_area, centres, H, W)
        queries = _queries(rng, instances)
        if queries is None:
            continue
        queried = {q["instance_id"] for q in queries}
        vis = np.array([instances[k]["visible_fraction"] for k in sorted(queried)])
        ok = (vis >= MIN_VISIBLE_FRACTION).all(0)
        annotated = _annotated_frames(rng, ok, cfg.min_annotated, cfg.max_annotated)
        if len(annotated) < cfg.min_annotated:
            continue
        return RenderedVideo(frames, labels, instances, queries, annotated)
    raise RuntimeError(f"could not sample a valid video in {cfg.max_attempts} attempts")


def _queries(rng, instances: List[dict]) -> Optional[List[dict]]:
    out = []
    for inst in instances:
        if not inst["queried"]:
            continue
        others = [o for o in instances if o is not inst]
        res = describe(rng, inst, others)
        if res is None:
            return None
        query, location = res
        out.append(
            {
                "instance_id": inst["instance_id"],
                "query": query,
                "location": location,
                "types": sorted(instance_query_types(inst, others, location)),
            }
        )
    return out or None


def sample_jhmdb_video(rng: np.random.Generator, cfg: SceneConfig) -> Tuple[RenderedVideo, str]:
    """Sample and render one J-HMDB-layout video: one adult; returns the video and its J-HMDB
    action folder."""
    H, W = cfg.height, cfg.width
    T = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    actions = list(JHMDB_ACTION_FOLDERS)
    actor = _random_look(rng)
    actor.update(
        category="adult",
        size="large" if rng.random() < 0.75 else "small",
        action=actions[int(rng.integers(len(actions)))],
        z=0,
        queried=True,
    )
    scale = float(rng.uniform(*SIZE_RANGES[actor["size"]])) * H
    poses = [simulate_motion(rng, "adult", actor["action"], scale, T, H, W)]
    frames, labels, full_area, centres = render(
        rng, [actor], poses, H, W, T, float(rng.uniform(*cfg.noise_std))
    )
    instances = _finish([actor], labels, full_area, centres, H, W)
    query, location = describe(
        rng, instances[0], [], p_color=0.9, p_action=0.9, p_size=0.3, p_location=0.1
    )
    queries = [{"instance_id": 0, "query": query, "location": location, "types": []}]
    return RenderedVideo(
        frames, labels, instances, queries, list(range(1, T + 1))
    ), JHMDB_ACTION_FOLDERS[actor["action"]]
