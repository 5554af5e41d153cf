"""Temporal proposal linking (Eq. 1) and aggregation (Eq. 2), Sec. III-A.

Tubes are anchored at the key frame ``L`` (the annotated middle frame of a clip of ``T = 2L+1``
frames): tube ``k`` starts at proposal ``k`` of the key frame and is chained frame by frame towards
both ends of the clip.  Each step takes the proposal of the adjacent frame with the highest linking
score against the previous link of the chain (not against the anchor):

    s_link(r1, r2) = IoU(r1, r2) + rho / (1 + ||x1 - x2||_2)                          # Eq. (1)

where ``x`` is the proposal's RoI feature of the stream(s) selected by ``link_feature``: ``"rgb"``
(``v``, the paper's choice), ``"flow"`` (``f``) or ``"both"`` (the concatenation ``[v, f]``, i.e.
the distance ``sqrt(||dv||^2 + ||df||^2)``), Table V.  Several tubes may share a proposal in
a frame.  Linking is a discrete choice: no gradient flows through it.

The tube feature (Eq. 2) is the key-frame feature plus the mean of the other ``2L`` frames'
features (``"eq2"``), or the plain mean over the ``T`` frames (``"mean"``, Table VI), followed by
one FC + ReLU to ``TUBE_DIM`` (``Cv'``).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from ..config import check_choice

__all__ = [
    "pairwise_iou_batched",
    "link_tubes",
    "gather_tubes",
    "TubeLinker",
    "TemporalAggregation",
]

LINK_FEATURES = ("rgb", "flow", "both")
AGGREGATIONS = ("eq2", "mean")


def pairwise_iou_batched(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of XYXY boxes ``a (..., N, 4)`` and ``b (..., M, 4)`` -> ``(..., N, M)`` (0 for
    empty)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


@torch.no_grad()
def link_tubes(
    boxes: torch.Tensor, features: torch.Tensor, key_index: int, rho: float = 1.0
) -> torch.Tensor:
    """Link the proposals of each clip into K tubes anchored at frame ``key_index`` (Eq. 1).

    Args:
        boxes: ``(B, T, K, 4)`` XYXY proposals of every frame.
        features: ``(B, T, K, C)`` the proposals' features for the semantic term.
        key_index: the anchor frame ``L``.
        rho: weight of the semantic term.

    Returns:
        LongTensor ``(B, K, T)``: ``tubes[b, k, t]`` is the proposal of frame ``t`` in tube ``k``
        (``tubes[:, k, key_index] == k``).
    """
    if boxes.dim() != 4 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, T, K, 4), got {tuple(boxes.shape)}")
    B, T, K, _ = boxes.shape
    if features.shape[:3] != (B, T, K):
        raise ValueError(
            f"features {tuple(features.shape)} do not match boxes {tuple(boxes.shape)}"
        )
    if not 0 <= key_index < T:
        raise ValueError(f"key_index {key_index} outside a clip of {T} frames")
    features = features.float()
    tubes = boxes.new_zeros((B, K, T), dtype=torch.long)
    anchor = torch.arange(K, device=boxes.device).expand(B, K)
    tubes[:, :, key_index] = anchor
    for direction in (1, -1):
        idx = anchor
        t = key_index + direction
        while 0 <= t < T:
            prev = t - direction
            prev_box = torch.gather(boxes[:, prev], 1, idx[..., None].expand(B, K, 4))  # (B, K, 4)
            prev_feat = torch.gather(
                features[:, prev], 1, idx[..., None].expand(B, K, features.shape[-1])
            )
            iou = pairwise_iou_batched(prev_box, boxes[:, t])  # (B, K, K)
            dist = torch.cdist(prev_feat, features[:, t])  # (B, K, K) Euclidean distance
            score = iou + rho / (1.0 + dist)  # Eq. (1)
            idx = score.argmax(dim=-1)
            tubes[:, :, t] = idx
            t += direction
    return tubes


def gather_tubes(per_frame: torch.Tensor, tubes: torch.Tensor) -> torch.Tensor:
    """Pick the tubes' entries: ``per_frame (B, T, K, ...)``, ``tubes (B, K', T)`` ->
    ``(B, K', T, ...)``."""
    B, T, K = per_frame.shape[:3]
    rest = per_frame.shape[3:]
    flat = per_frame.reshape(B, T * K, -1)
    offsets = (torch.arange(T, device=tubes.device) * K)[None, None, :]
    index = (tubes + offsets).reshape(B, -1)  # (B, K' * T)
    out = torch.gather(flat, 1, index[..., None].expand(-1, -1, flat.shape[-1]))
    return out.reshape(B, tubes.shape[1], T, *rest)


class TubeLinker(nn.Module):
    """Eq. (1) with the feature choice of Table V; no parameters."""

    @configurable
    def __init__(self, *, rho: float = 1.0, link_feature: str = "rgb"):
        """
        Args:
            rho: weight of the semantic term of Eq. (1) (paper: 1.0).
            link_feature: ``"rgb"``, ``"flow"`` or ``"both"``.
        """
        super().__init__()
        check_choice("MODEL.AAMN.LINK_FEATURE", link_feature, LINK_FEATURES)
        self.rho = rho
        self.link_feature = link_feature

    @classmethod
    def from_config(cls, cfg):
        return {"rho": cfg.MODEL.AAMN.LINK_RHO, "link_feature": cfg.MODEL.AAMN.LINK_FEATURE}

    @property
    def needs_flow(self) -> bool:
        return self.link_feature in ("flow", "both")

    @property
    def needs_rgb(self) -> bool:
        return self.link_feature in ("rgb", "both")

    def forward(
        self,
        boxes: torch.Tensor,
        rgb: Optional[torch.Tensor],
        flow: Optional[torch.Tensor],
        key_index: int,
    ) -> torch.Tensor:
        """``boxes (B, T, K, 4)``, ``rgb``/``flow`` ``(B, T, K, Cv)`` (None for a stream that is
        off)
        -> tubes ``(B, K, T)``."""
        if self.needs_flow and flow is None:
            raise ValueError(
                f"LINK_FEATURE={self.link_feature!r} needs the Flow stream (MODEL.AAMN.USE_FLOW)"
            )
        if self.needs_rgb and rgb is None:
            raise ValueError(
                f"LINK_FEATURE={self.link_feature!r} needs the RGB stream (MODEL.AAMN.USE_RGB)"
            )
        if self.link_feature == "rgb":
            feats = rgb
        elif self.link_feature == "flow":
            feats = flow
        else:
            feats = torch.cat([rgb, flow], dim=-1)
        return link_tubes(boxes, feats.detach(), key_index, self.rho)


class TemporalAggregation(nn.Module):
    """Eq. (2) (or the plain mean) over the frames of a tube, then FC + ReLU.

    ``(..., T, Cv) -> (..., Cv')``.
    """

    @configurable
    def __init__(self, *, in_dim: int, out_dim: int, mode: str = "eq2"):
        """
        Args:
            in_dim: ``Cv``.
            out_dim: ``Cv'`` (``TUBE_DIM``).
            mode: ``"eq2"`` (key frame + mean of the others) or ``"mean"`` (plain average).
        """
        super().__init__()
        check_choice("MODEL.AAMN.TEMPORAL_AGGREGATION", mode, AGGREGATIONS)
        self.mode = mode
        self.fc = nn.Linear(in_dim, out_dim)

    @classmethod
    def from_config(cls, cfg):
        return {
            "in_dim": cfg.MODEL.AAMN.ROI_FC_DIM,
            "out_dim": cfg.MODEL.AAMN.TUBE_DIM,
            "mode": cfg.MODEL.AAMN.TEMPORAL_AGGREGATION,
        }

    def aggregate(self, x: torch.Tensor, key_index: int) -> torch.Tensor:
        """The pooled feature before the FC: ``(..., T, C) -> (..., C)``."""
        T = x.shape[-2]
        if not 0 <= key_index < T:
            raise ValueError(f"key_index {key_index} outside a clip of {T} frames")
        if self.mode == "mean" or T == 1:
            return x.mean(dim=-2)
        key = x[..., key_index, :]
        others = (x.sum(dim=-2) - key) / (T - 1)
        return key + others  # Eq. (2): v~ = v_L + 1/(2L) sum_{n != L} v_n

    def forward(self, x: torch.Tensor, key_index: int) -> torch.Tensor:
        return F.relu(self.fc(self.aggregate(x, key_index)))
