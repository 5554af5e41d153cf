"""The 9 actions of the synthetic benchmark as motion patterns: one :class:`Pose` per frame.

Each action is a distinct pattern that can be told apart within any 5 consecutive frames, both in
the RGB frames (posture) and in the optical flow (direction and speed).  Speeds are in units of
``u = H / 96`` pixels per frame, so the patterns look the same at every frame size:

=========  =========================================================================================
walking    horizontal, ~1.0 u/frame, slow leg swing, slight bob
running    horizontal, ~3.0 u/frame, fast wide leg swing, leaning forward
crawling   horizontal, ~0.6 u/frame, body squashed low (about 60 % of its height), slow pulse
climbing   steady upward, ~1.1 u/frame, limbs swinging, small side sway
jumping    in place, vertical bounce of ~16 % of the frame height every 7-9 frames, squash
           on landing
flying     diagonal drift, ~1.6 u/frame, wings flapping every 4 frames (others wobble)
rolling    horizontal, ~1.6 u/frame, turning ~20 degrees per frame in the direction of travel
eating     in place, a periodic nod forward (rotation) with a pulse in height, every 5-7 frames
none       static
=========  =========================================================================================

Horizontal movers bounce off the edges of their allowed region (turning round); climbing never
reaches the top edge (its speed is chosen so the climb fits the region).
"""

from typing import List, Tuple

import numpy as np

from .actors import ACTION_CLASSES, Pose, half_extent

__all__ = ["simulate_motion", "centre_bounds"]

Region = Tuple[float, float, float, float]  # x_lo, x_hi, y_lo, y_hi (fractions of W, H)


def centre_bounds(
    category: str,
    action: str,
    scale: float,
    height: int,
    width: int,
    region: Region = (0.0, 1.0, 0.0, 1.0),
) -> Tuple[float, float, float, float]:
    """Bounds ``(x_lo, x_hi, y_lo, y_hi)`` in pixels for the actor's centre.

    The actor stays inside the frame, and its centre inside ``region`` (fractions of the frame).
    Rotating actors (rolling) get the larger half extent on both axes.
    """
    hx, hy = half_extent(category)
    if action == "rolling":
        hx = hy = float(np.hypot(hx, hy))
    elif action == "crawling":
        hx *= 1.2
    hx, hy = hx * scale + 1, hy * scale + 1
    x_lo, x_hi = max(hx, region[0] * width), min(width - hx, region[1] * width)
    y_lo, y_hi = max(hy, region[2] * height), min(height - hy, region[3] * height)
    if x_lo > x_hi:
        x_lo = x_hi = (x_lo + x_hi) / 2
    if y_lo > y_hi:
        y_lo = y_hi = (y_lo + y_hi) / 2
    return x_lo, x_hi, y_lo, y_hi


def _bounce(pos: float, vel: float, lo: float, hi: float) -> Tuple[float, float]:
    """One step of a point moving at ``vel`` inside [lo, hi], reflected at the ends."""
    if hi - lo < 1e-6:
        return lo, vel
    pos += vel
    for _ in range(4):
        if pos < lo:
            pos, vel = 2 * lo - pos, -vel
        elif pos > hi:
            pos, vel = 2 * hi - pos, -vel
        else:
            break
    return float(np.clip(pos, lo, hi)), vel


def simulate_motion(
    rng: np.random.Generator,
    category: str,
    action: str,
    scale: float,
    num_frames: int,
    height: int,
    width: int,
    region: Region = (0.0, 1.0, 0.0, 1.0),
) -> List[Pose]:
    """Sample one trajectory of ``action`` for an actor: a list of ``num_frames`` :class:`Pose`.

    ``scale``: the actor's size in pixels (its largest extent); ``region``: fractions of the frame
    the actor's centre stays in.  All randomness comes from ``rng``.
    """
    if action not in ACTION_CLASSES:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTION_CLASSES}")
    u = height / 96.0
    x_lo, x_hi, y_lo, y_hi = centre_bounds(category, action, scale, height, width, region)
    T = num_frames
    facing = int(rng.choice([-1, 1]))
    x = float(rng.uniform(x_lo, x_hi))
    y = float(rng.uniform(y_lo, y_hi))
    phase = float(rng.uniform(0, 2 * np.pi))
    poses: List[Pose] = []

    if action == "none":
        return [Pose(x, y, scale, facing=facing) for _ in range(T)]

    if action == "eating":
        period = float(rng.uniform(5, 7))
        for t in range(T):
            a = 2 * np.pi * t / period + phase
            nod = 0.5 - 0.5 * np.cos(a)
            poses.append(
                Pose(
                    x,
                    y + 0.8 * u * nod,
                    scale,
                    sy=1.0 - 0.08 * nod,
                    theta=facing * 0.3 * nod,
                    facing=facing,
                )
            )
        return poses

    if action in ("walking", "running", "crawling", "rolling"):
        speed = {"walking": 1.0, "running": 3.0, "crawling": 0.6, "rolling": 1.6}[action]
        vx = facing * speed * u * float(rng.uniform(0.9, 1.1))
        theta = float(rng.uniform(0, 2 * np.pi))
        for t in range(T):
            if t:
                x, vx = _bounce(x, vx, x_lo, x_hi)
            face = 1 if vx > 0 else -1
            if action == "walking":
                g = phase + 2 * np.pi * t / 10
                poses.append(
                    Pose(x, y - 0.5 * u * abs(np.sin(g)), scale, facing=face, gait=g, swing=0.35)
                )
            elif action == "running":
                g = phase + 2 * np.pi * t / 5
                poses.append(
                    Pose(
                        x,
                        y - 1.2 * u * abs(np.sin(g)),
                        scale,
                        theta=0.15 * face,
                        facing=face,
                        gait=g,
                        swing=0.7,
                    )
                )
            elif action == "crawling":
                g = phase + 2 * np.pi * t / 8
                poses.append(
                    Pose(
                        x,
                        y,
                        scale,
                        sx=1.15,
                        sy=0.6 + 0.05 * np.sin(g),
                        facing=face,
                        gait=g,
                        swing=0.25,
                    )
                )
            else:  # rolling: turns in the direction of travel
                if t:
                    theta += 0.35 * face
                poses.append(Pose(x, y, scale, theta=theta, facing=face))
        return poses

    if action == "climbing":
        speed = 1.1 * u * float(rng.uniform(0.9, 1.1))
        span = y_hi - y_lo
        speed = min(speed, span / max(T - 1, 1))
        y0 = y_hi - float(rng.uniform(0, max(0.0, span - speed * (T - 1))))
        sway = 0.6 * u
        x = (
            float(np.clip(x, x_lo + sway, x_hi - sway))
            if x_hi - x_lo > 2 * sway
            else (x_lo + x_hi) / 2
        )
        for t in range(T):
            g = phase + 2 * np.pi * t / 8
            poses.append(
                Pose(x + sway * np.sin(g), y0 - speed * t, scale, facing=facing, gait=g, swing=0.5)
            )
        return poses

    if action == "jumping":
        period = float(rng.uniform(7, 9))
        amp = min(0.16 * height * float(rng.uniform(0.9, 1.1)), y_hi - y_lo)
        base = float(rng.uniform(y_lo + amp, y_hi)) if y_hi - y_lo > amp else y_hi
        vx = facing * 0.3 * u
        for t in range(T):
            if t:
                x, vx = _bounce(x, vx, x_lo, x_hi)
            lift = abs(np.sin(np.pi * t / period + phase))
            squash = 0.85 if lift < 0.25 else 1.05
            poses.append(Pose(x, base - amp * lift, scale, sy=squash, facing=1 if vx > 0 else -1))
        return poses

    if action == "flying":
        angle = float(rng.uniform(np.pi / 6, np.pi / 3))
        speed = 1.6 * u * float(rng.uniform(0.9, 1.1))
        vx = facing * speed * np.cos(angle)
        vy = -speed * np.sin(angle) * float(rng.choice([-1, 1]))
        for t in range(T):
            if t:
                x, vx = _bounce(x, vx, x_lo, x_hi)
                y, vy = _bounce(y, vy, y_lo, y_hi)
            flap = np.sin(2 * np.pi * t / 4 + phase)
            face = 1 if vx > 0 else -1
            wobble = 0.0 if category == "bird" else 0.15 * flap
            poses.append(Pose(x, y, scale, theta=wobble, facing=face, wing=flap))
        return poses

    raise AssertionError(action)
