"""Actors of the synthetic benchmark: A2D's 7 classes as distinct silhouettes, colours and sizes.

An actor is drawn from a list of *parts*, each a polygon in a normalised frame (x to the right,
y down, origin at the actor's centre, the largest extent of the silhouette about 1) with a shade
(``"body"`` in the actor's colour, ``"dark"`` and ``"light"`` details that make the class readable:
wheels, eyes, stripes, windows).  A :class:`Pose` (scale, squash, rotation, facing, gait phase,
wing angle) moves and deforms the parts; :func:`draw_actor` rasterises them with OpenCV at
sub-pixel precision and without anti-aliasing, so the mask is exactly the set of pixels painted in
the actor's colours.

The silhouettes are chosen to be told apart at 16-45 px:

=========  ==================================================================================
adult      tall figure: small round head, torso with a dark belt, arms and legs swinging
baby       short figure with a large round head and stubby limbs
ball       disc with dark spots that turn with its rotation
bird       horizontal body, round head, beak, tail and two triangular wings that flap
car        wide box on two dark wheels, a cabin with light windows
cat        slender four-legged body, pointed ears, tall curved tail, dark stripes
dog        heavy four-legged body, long snout, floppy dark ears, short tail, a dark patch
=========  ==================================================================================
"""

import functools
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np


from ..datasets.common import A2D_ACTIONS, A2D_ACTORS

__all__ = [
    "ACTOR_CLASSES",
    "ACTION_CLASSES",
    "VALID_ACTIONS",
    "COLORS",
    "SIZES",
    "SIZE_RANGES",
    "Pose",
    "actor_parts",
    "draw_actor",
    "actor_action_id",
    "half_extent",
]

# A2D's classes, in A2D's order (the 1-based position is the code used in ``.h5`` ``id`` values).
ACTOR_CLASSES = tuple(A2D_ACTORS)
ACTION_CLASSES = tuple(A2D_ACTIONS)
# A2D's 43 valid actor-action pairs (the release labels no other combination).
VALID_ACTIONS: Dict[str, Tuple[str, ...]] = {
    "adult": ("climbing", "crawling", "eating", "jumping", "rolling", "running", "walking", "none"),
    "baby": ("climbing", "crawling", "rolling", "walking", "none"),
    "ball": ("flying", "jumping", "rolling", "none"),
    "bird": ("climbing", "eating", "flying", "jumping", "rolling", "walking", "none"),
    "car": ("flying", "jumping", "rolling", "running", "none"),
    "cat": ("climbing", "eating", "jumping", "rolling", "running", "walking", "none"),
    "dog": ("crawling", "eating", "jumping", "rolling", "running", "walking", "none"),
}
# Six colours far apart in hue and value, all distinct from the dull backgrounds (RGB).
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 85, 240),
    "yellow": (240, 225, 40),
    "purple": (160, 55, 210),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
# Largest extent of the silhouette, as a fraction of the frame height (96 px high: 18-23 / 36-45
# px).
SIZE_RANGES: Dict[str, Tuple[float, float]] = {"small": (0.19, 0.24), "large": (0.38, 0.47)}


def actor_action_id(actor: str, action: str) -> int:
    """A2D's actor-action code: actor * 10 + action, both 1-based in A2D's order (e.g.
    adult-walking 18)."""
    return (ACTOR_CLASSES.index(actor) + 1) * 10 + ACTION_CLASSES.index(action) + 1


@dataclass
class Pose:
    """Where and how an actor is drawn in one frame.

    ``cx, cy``: centre in pixels; ``scale``: pixels per normalised unit (the silhouette's largest
    extent); ``sx, sy``: squash / stretch factors; ``theta``: rotation in radians (positive turns
    clockwise on screen, the image's y axis pointing down); ``facing``: +1 faces right, -1 left;
    ``gait``: phase of the leg / arm swing in radians; ``swing``: its amplitude in radians;
    ``wing``: wing angle in [-1, 1] (+1 up, -1 down).
    """

    cx: float
    cy: float
    scale: float
    sx: float = 1.0
    sy: float = 1.0
    theta: float = 0.0
    facing: int = 1
    gait: float = 0.0
    swing: float = 0.0
    wing: float = 0.0


_UNIT_CIRCLES: Dict[int, np.ndarray] = {}


def _ellipse(cx, cy, rx, ry, n=20):
    circle = _UNIT_CIRCLES.get(n)
    if circle is None:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        circle = _UNIT_CIRCLES[n] = np.stack([np.cos(a), np.sin(a)], 1)
    return circle * (rx, ry) + (cx, cy)


def _limb(x0, y0, length, width, angle):
    """A thin quad from (x0, y0) of ``length``, hanging down and turned by ``angle`` (radians)."""
    dx, dy = math.sin(angle), math.cos(angle)
    nx, ny = dy * width / 2, -dx * width / 2
    x1, y1 = x0 + dx * length, y0 + dy * length
    return np.array(
        [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]
    )


def _poly(*pts):
    return np.array(pts, dtype=np.float64)


Part = Tuple[np.ndarray, str]


def actor_parts(
    category: str, gait: float = 0.0, swing: float = 0.0, wing: float = 0.0
) -> List[Part]:
    """The parts of one class, drawn in order: a list of ``(polygon (P, 2), shade)``.

    Normalised coordinates (facing right); ``gait`` / ``swing`` move legs and arms, ``wing`` the
    wings.  Shades: ``"body"``, ``"dark"``, ``"light"``.
    """
    s = np.sin(gait) * swing
    if category == "adult":
        return [
            (_limb(-0.05, 0.02, 0.46, 0.11, -0.1 + s), "body"),
            (_limb(0.05, 0.02, 0.46, 0.11, 0.1 - s), "body"),
            (_limb(-0.11, -0.29, 0.32, 0.08, -0.35 - 0.8 * s), "body"),
            (_limb(0.11, -0.29, 0.32, 0.08, 0.35 + 0.8 * s), "body"),
            (_poly((-0.13, -0.32), (0.13, -0.32), (0.11, 0.06), (-0.11, 0.06)), "body"),
            (_ellipse(0.0, -0.41, 0.1, 0.1), "body"),
            (_ellipse(0.04, -0.42, 0.025, 0.025, 8), "dark"),
            (_poly((-0.11, 0.0), (0.11, 0.0), (0.11, 0.06), (-0.11, 0.06)), "dark"),
        ]
    if category == "baby":
        return [
            (_limb(-0.08, 0.2, 0.22, 0.1, 0.6 * s), "body"),
            (_limb(0.08, 0.2, 0.22, 0.1, -0.6 * s), "body"),
            (_limb(-0.17, 0.02, 0.2, 0.09, -0.9 - 0.5 * s), "body"),
            (_limb(0.17, 0.02, 0.2, 0.09, 0.9 + 0.5 * s), "body"),
            (_ellipse(0.0, 0.1, 0.18, 0.17), "body"),
            (_ellipse(0.0, -0.2, 0.23, 0.22), "body"),
            (_ellipse(0.09, -0.22, 0.035, 0.035, 10), "dark"),
            (_ellipse(-0.04, -0.22, 0.035, 0.035, 10), "dark"),
        ]
    if category == "ball":
        parts = [(_ellipse(0.0, 0.0, 0.5, 0.5, 32), "body")]
        for a in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
            parts.append((_ellipse(0.28 * np.cos(a), 0.28 * np.sin(a), 0.11, 0.11, 12), "dark"))
        parts.append((_ellipse(0.0, 0.0, 0.08, 0.08, 10), "light"))
        return parts
    if category == "bird":
        w = float(np.clip(wing, -1.0, 1.0))
        tip_y = -0.36 * w
        return [
            (_poly((-0.25, -0.02), (-0.5, -0.12), (-0.5, 0.1)), "body"),
            (_ellipse(0.0, 0.0, 0.3, 0.13), "body"),
            (_ellipse(0.3, -0.1, 0.1, 0.1), "body"),
            (_poly((0.38, -0.13), (0.52, -0.09), (0.38, -0.05)), "dark"),
            (_ellipse(0.32, -0.12, 0.025, 0.025, 8), "dark"),
            (_poly((-0.12, -0.04), (0.12, -0.04), (-0.06, tip_y - 0.02)), "light"),
            (_poly((-0.08, -0.02), (0.16, -0.02), (-0.02, tip_y)), "body"),
            (_limb(-0.03, 0.1, 0.14, 0.035, 0.3 * s), "dark"),
            (_limb(0.05, 0.1, 0.14, 0.035, -0.3 * s), "dark"),
        ]
    if category == "car":
        return [
            (_poly((-0.5, -0.06), (0.5, -0.06), (0.5, 0.16), (-0.5, 0.16)), "body"),
            (_poly((-0.3, -0.06), (-0.2, -0.26), (0.18, -0.26), (0.3, -0.06)), "body"),
            (_poly((-0.22, -0.08), (-0.15, -0.22), (-0.02, -0.22), (-0.02, -0.08)), "light"),
            (_poly((0.03, -0.08), (0.03, -0.22), (0.15, -0.22), (0.22, -0.08)), "light"),
            (_ellipse(-0.29, 0.17, 0.11, 0.11, 16), "dark"),
            (_ellipse(0.29, 0.17, 0.11, 0.11, 16), "dark"),
            (_poly((0.44, -0.02), (0.5, -0.02), (0.5, 0.04), (0.44, 0.04)), "light"),
        ]
    if category == "cat":
        return [
            (
                _poly((-0.3, -0.02), (-0.36, -0.02), (-0.5, -0.32), (-0.42, -0.42), (-0.4, -0.3)),
                "body",
            ),
            (_limb(-0.22, 0.05, 0.24, 0.055, s), "body"),
            (_limb(-0.14, 0.05, 0.24, 0.055, -s), "body"),
            (_limb(0.14, 0.05, 0.24, 0.055, -s), "body"),
            (_limb(0.22, 0.05, 0.24, 0.055, s), "body"),
            (_ellipse(0.0, 0.0, 0.32, 0.1), "body"),
            (_ellipse(0.36, -0.12, 0.11, 0.1), "body"),
            (_poly((0.27, -0.17), (0.29, -0.32), (0.35, -0.2)), "body"),
            (_poly((0.38, -0.2), (0.45, -0.32), (0.46, -0.16)), "body"),
            (_poly((-0.15, -0.09), (-0.1, -0.09), (-0.12, 0.06), (-0.17, 0.06)), "dark"),
            (_poly((0.0, -0.1), (0.05, -0.1), (0.03, 0.07), (-0.02, 0.07)), "dark"),
            (_poly((0.14, -0.08), (0.19, -0.08), (0.17, 0.06), (0.12, 0.06)), "dark"),
            (_ellipse(0.41, -0.13, 0.022, 0.022, 8), "dark"),
        ]
    if category == "dog":
        return [
            (_poly((-0.32, -0.06), (-0.5, -0.14), (-0.5, -0.08), (-0.32, 0.0)), "body"),
            (_limb(-0.23, 0.06, 0.25, 0.09, s), "body"),
            (_limb(-0.13, 0.06, 0.25, 0.09, -s), "body"),
            (_limb(0.13, 0.06, 0.25, 0.09, -s), "body"),
            (_limb(0.23, 0.06, 0.25, 0.09, s), "body"),
            (_ellipse(0.0, 0.0, 0.34, 0.14), "body"),
            (_ellipse(0.34, -0.15, 0.1, 0.1), "body"),
            (_poly((0.36, -0.2), (0.5, -0.16), (0.5, -0.06), (0.38, -0.06)), "body"),
            (_ellipse(0.5, -0.13, 0.03, 0.03, 8), "dark"),
            (_ellipse(0.28, -0.1, 0.05, 0.1), "dark"),
            (_ellipse(-0.1, -0.03, 0.1, 0.07), "dark"),
            (_ellipse(0.37, -0.18, 0.022, 0.022, 8), "dark"),
        ]
    raise ValueError(f"unknown actor class {category!r}; expected one of {ACTOR_CLASSES}")


# Half extents (x, y) of each class's unposed silhouette, in normalised units, used to keep actors
# inside the frame.
def _extents():
    out = {}
    for c in ACTOR_CLASSES:
        pts = np.concatenate([p for p, _ in actor_parts(c, swing=0.6, wing=1.0)])
        out[c] = (float(np.abs(pts[:, 0]).max()), float(np.abs(pts[:, 1]).max()))
    return out


_EXTENTS = _extents()


def half_extent(category: str) -> Tuple[float, float]:
    """(x, y) half extent of the class's silhouette in normalised units (times ``Pose.scale`` =
    px)."""
    return _EXTENTS[category]


_SHIFT = 4  # cv2 fixed-point bits: polygons are drawn at 1/16 px precision
_SHADES = ("body", "dark", "light")


@functools.lru_cache(maxsize=None)
def _palette(color: Tuple[int, int, int]) -> np.ndarray:
    """uint8 ``(4, 3)``: row 1 + i is the colour of shade ``_SHADES[i]`` (row 0 unused)."""
    c = np.asarray(color, dtype=np.float64)
    light = c + (255 - c) * 0.6 if c.mean() < 200 else c * 0.6
    return np.round(np.stack([c, c, c * 0.35, light])).astype(np.uint8)


def draw_actor(
    image: np.ndarray,
    labels: np.ndarray,
    label: int,
    category: str,
    color: Tuple[int, int, int],
    pose: Pose,
) -> np.ndarray:
    """Draw one actor over ``image`` (H, W, 3) uint8 RGB and mark its pixels in ``labels`` (H, W).

    Pixels painted by the actor get ``labels == label`` (later actors overwrite earlier ones, so
    drawing in z-order leaves each actor's visible part).  No anti-aliasing: the marked pixels are
    exactly the pixels painted in the actor's colours.  Returns the actor's own (unoccluded) mask,
    bool ``(H, W)``."""
    parts = actor_parts(category, gait=pose.gait, swing=pose.swing, wing=pose.wing)
    c, s = np.cos(pose.theta), np.sin(pose.theta)
    rot = np.array([[c, -s], [s, c]])
    lin = rot @ np.diag([pose.facing * pose.sx * pose.scale, pose.sy * pose.scale]) * (1 << _SHIFT)
    offset = np.array([pose.cx, pose.cy]) * (1 << _SHIFT)
    pts = np.round(np.concatenate([p for p, _ in parts]) @ lin.T + offset).astype(np.int32)
    h, w = labels.shape
    mask = np.zeros((h, w), bool)
    lo, hi = pts.min(0) >> _SHIFT, pts.max(0) >> _SHIFT
    x0, y0 = max(int(lo[0]) - 1, 0), max(int(lo[1]) - 1, 0)
    x1, y1 = min(int(hi[0]) + 2, w), min(int(hi[1]) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return mask
    pts -= np.array([x0, y0], np.int32) << _SHIFT
    polys, start = [], 0
    for p, _ in parts:
        polys.append(pts[start : start + len(p)])
        start += len(p)
    # a canvas of shade indices (1 + index in _SHADES) over the actor's box, parts painted in order
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for q, (_, shade) in zip(polys, parts):
        cv2.fillPoly(canvas, q[None], 1 + _SHADES.index(shade), lineType=cv2.LINE_8, shift=_SHIFT)
    local = canvas > 0
    image[y0:y1, x0:x1][local] = _palette(color)[canvas[local]]
    labels[y0:y1, x0:x1][local] = label
    mask[y0:y1, x0:x1] = local
    return mask
