"""The actor module (Sec. III-C1, Eq. 6) and the matching form it shares with the action module.

``ScoreHead`` implements the scoring form of Eq. (6) / Eq. (9):

    v~ = W1 v + b1,   q~ = W2 q + b2,   x = ||v~||_2 (*) ||q~||_2,   s = W3 x + b3

(``||.||_2`` = L2 normalisation, ``(*)`` = element-wise product).  Both modules score every tube
of every clip against every query of the batch at once (``(B, Q, K)``): the query side of the
matching loss (Eq. 12) needs the matched tube's score with other queries, and the visual side of
both modules does not depend on the query, so the cross scores cost one small product.

``ActorModule`` uses ``v_actor = [v_k, l_k]`` with the 5-d location feature of the tube's
key-frame box ``l = (x1/W, y1/H, x2/W, y2/H, w*h/(W*H))`` (``W, H`` = the frame size the boxes are
in), or ``v_k`` alone (``use_location=False``, Table IV "w/o location feature").  With
``motion_dim > 0`` (Table IV "(Actor Module) w/ Optical Flow", ``MODEL.AAMN.ACTOR_USES_FLOW``) the
Flow tube feature joins it: ``v_actor = [v_k, f_k, l_k]``.  Without the RGB stream (Table IV
"w/o RGB Stream") the meta-architecture passes ``f_k`` as ``v_k``.

Scaling of the parts (``feature_norm``, ``MODEL.AAMN.ACTOR_FEATURE_NORM``; the paper does not say):
the tube features are ReLU outputs whose norm is of the order of 10^2, the location feature's
about 1, so with plain concatenation (``"none"``) the location is a tiny part of the input of
``W1`` and the module barely learns to use it (BENCHMARKS.md, Table IV).
``"l2"`` L2-normalises ``v_k`` (and ``f_k``) before the concatenation, as is usual when features of
different kinds are concatenated, so each part enters ``W1`` at a comparable scale.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from ..config import check_choice

__all__ = ["ScoreHead", "ActorModule", "location_features", "ACTOR_FEATURE_NORMS"]

ACTOR_FEATURE_NORMS = ("none", "l2")


def location_features(boxes: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """The 5-d location feature of Eq. (6).

    Args:
        boxes: ``(B, K, 4)`` XYXY key-frame boxes.
        image_sizes: ``(B, 2)`` (height, width) of the frames the boxes are in.

    Returns:
        ``(B, K, 5)``: ``x1/W, y1/H, x2/W, y2/H, w*h/(W*H)``.
    """
    h = image_sizes[:, 0].to(boxes.dtype)[:, None]
    w = image_sizes[:, 1].to(boxes.dtype)[:, None]
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    return torch.stack([x1 / w, y1 / h, x2 / w, y2 / h, area / (w * h)], dim=-1)


class ScoreHead(nn.Module):
    """Eq. (6) / (9): visual ``(B, K, Dv)`` x query ``(Q, Dq)`` -> scores ``(B, Q, K)``.

    ``norm_scale`` (``MODEL.AAMN.MATCH_NORM_SCALE``) is the norm both vectors are normalised to
    before the product: 1 is the paper's L2 normalisation.  With unit vectors every element of
    ``x`` is about ``1/D``, so at initialisation the scores are ~100x smaller than the margin of
    Eq. (12) and ``W3`` must first grow by that much; a scale of ``sqrt(D)`` starts the scores at
    O(1) (a choice the paper leaves open; the short from-scratch synthetic schedules use it).
    """

    def __init__(self, visual_dim: int, query_dim: int, match_dim: int, norm_scale: float = 1.0):
        super().__init__()
        if norm_scale <= 0:
            raise ValueError(f"MODEL.AAMN.MATCH_NORM_SCALE must be > 0, got {norm_scale}")
        self.norm_scale = float(norm_scale)
        self.visual_fc = nn.Linear(visual_dim, match_dim)  # W1, b1 (W9, b9)
        self.query_fc = nn.Linear(query_dim, match_dim)  # W2, b2 (W10, b10)
        self.score_fc = nn.Linear(match_dim, 1)  # W3, b3 (W11, b11)

    def _embed(self, visual: torch.Tensor, query: torch.Tensor):
        """``||W1 v + b1||``, ``||W2 q + b2||`` (times ``norm_scale``): ``(..., D)`` each."""
        v = F.normalize(self.visual_fc(visual), dim=-1) * self.norm_scale
        q = F.normalize(self.query_fc(query), dim=-1) * self.norm_scale
        return v, q

    def forward(self, visual: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        v, q = self._embed(visual, query)  # (B, K, D), (Q, D)
        # W3 (v (*) q) + b3 for every (clip, query, tube): sum_d w_d v_d q_d + b.
        w = self.score_fc.weight[0]
        return torch.einsum("bkd,qd->bqk", v * w, q) + self.score_fc.bias


class ActorModule(nn.Module):
    """Eq. (6): ``s(t_k | q_actor)`` from the tube feature (optionally with the motion feature) and
    the key-frame box location."""

    @configurable
    def __init__(
        self,
        *,
        tube_dim: int,
        query_dim: int,
        match_dim: int,
        use_location: bool = True,
        motion_dim: int = 0,
        norm_scale: float = 1.0,
        feature_norm: str = "none",
    ):
        """
        Args:
            tube_dim: ``Cv'``, width of the RGB tube features.
            query_dim: ``Ce``, width of ``q_actor``.
            match_dim: width of the joint embedding.
            use_location: append the 5-d location feature to the tube feature.
            motion_dim: width of the motion feature ``f_k`` appended after ``v_k`` (0: none, the
                paper's actor module).
            norm_scale: see ``ScoreHead``.
            feature_norm: ``"none"`` or ``"l2"`` (see the module docstring).
        """
        super().__init__()
        if motion_dim < 0:
            raise ValueError(f"motion_dim must be >= 0, got {motion_dim}")
        check_choice("MODEL.AAMN.ACTOR_FEATURE_NORM", feature_norm, ACTOR_FEATURE_NORMS)
        self.feature_norm = feature_norm
        self.use_location = use_location
        self.motion_dim = motion_dim
        self.head = ScoreHead(
            tube_dim + motion_dim + (5 if use_location else 0), query_dim, match_dim, norm_scale
        )

    @classmethod
    def from_config(cls, cfg):
        return {
            "tube_dim": cfg.MODEL.AAMN.TUBE_DIM,
            "query_dim": cfg.MODEL.LANGUAGE.EMBED_DIM,
            "match_dim": cfg.MODEL.AAMN.MATCH_DIM,
            "use_location": cfg.MODEL.AAMN.USE_LOCATION,
            "motion_dim": cfg.MODEL.AAMN.TUBE_DIM if cfg.MODEL.AAMN.ACTOR_USES_FLOW else 0,
            "norm_scale": cfg.MODEL.AAMN.MATCH_NORM_SCALE,
            "feature_norm": cfg.MODEL.AAMN.ACTOR_FEATURE_NORM,
        }

    @property
    def uses_motion(self) -> bool:
        return self.motion_dim > 0

    def visual_features(
        self,
        tubes: torch.Tensor,
        key_boxes: torch.Tensor,
        image_sizes: torch.Tensor,
        motion: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``v_actor = [v_k, (f_k,) (l_k)]``: ``(B, K, Cv' (+Cv') (+5))``; with
        ``feature_norm="l2"``
        ``v_k`` and ``f_k`` are unit vectors."""
        parts = [tubes]
        if self.uses_motion:
            if motion is None:
                raise ValueError(
                    "The actor module uses the motion feature (MODEL.AAMN.ACTOR_USES_FLOW) but "
                    "none was given"
                )
            parts.append(motion)
        if self.feature_norm == "l2":
            parts = [F.normalize(p, dim=-1) for p in parts]
        if self.use_location:
            parts.append(location_features(key_boxes, image_sizes))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def forward(
        self,
        tubes: torch.Tensor,
        key_boxes: torch.Tensor,
        image_sizes: torch.Tensor,
        q_actor: torch.Tensor,
        motion: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            tubes: ``(B, K, Cv')`` RGB tube features ``v_k``.
            key_boxes: ``(B, K, 4)`` the tubes' key-frame boxes.
            image_sizes: ``(B, 2)`` (height, width) of the frames.
            q_actor: ``(Q, Ce)``.
            motion: ``(B, K, Cv')`` Flow tube features ``f_k`` (only with ``motion_dim > 0``;
                ignored otherwise).

        Returns:
            ``(B, Q, K)``: ``s(t_k | q_actor)`` of tube ``k`` of clip ``b`` with query ``q``.
        """
        return self.head(self.visual_features(tubes, key_boxes, image_sizes, motion), q_actor)
