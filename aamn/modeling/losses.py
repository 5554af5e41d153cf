"""The losses of Sec. III-E: matching (Eq. 12), segmentation (Eq. 11), joint (Eq. 10).

Matching loss (Eq. 12), a bidirectional triplet hinge with margin ``m`` over the scores
``s = s_actor + s_action``.  For clip ``b`` with its query ``q_b`` and matched tube ``k*``:

* tube side: ``max(0, m - s(k*, q_b) + s(j, q_b))`` for the ``K - 1`` other tubes ``j`` of the clip;
* query side: ``max(0, m - s(k*, q_b) + s(k*, q'))`` for the negative queries ``q'`` of ``b``
  (``query_negatives``: ``"batch"`` = the other queries of the batch, ``"video"`` = the other
  queries of the same video in the batch, ``"none"`` = no query side).  A query is never a negative
  for a clip when it refers to the same actor (same ``video_id`` and ``instance_id``) or has the
  same words as ``q_b``.

Normalisation (``reduction``, ``MODEL.AAMN.MATCH_LOSS_REDUCTION``): ``"mean"`` (default) averages
each side over its negatives, ``"sum"`` sums them as Eq. (12) is written; a side without negatives
contributes 0; the two sides are added and the result is averaged over the clips of the batch.

Segmentation loss (Eq. 11): binary cross-entropy averaged over the ``28 x 28`` cells of the matched
tube's key-frame mask, averaged over the clips.  Joint loss (Eq. 10): ``L_match + lambda L_seg``;
the returned ``loss_mask`` already carries ``lambda``.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from ..config import check_choice

__all__ = [
    "MATCH_LOSS_REDUCTIONS",
    "TRAINING_STRATEGIES",
    "QUERY_NEGATIVE_MODES",
    "query_negative_mask",
    "triplet_matching_loss",
    "mask_bce_loss",
    "joint_loss",
]

QUERY_NEGATIVE_MODES = ("batch", "video", "none")
MATCH_LOSS_REDUCTIONS = ("mean", "sum")
# Table VII: joint training (Eq. 10), or matching then segmentation, or the other way round.
TRAINING_STRATEGIES = ("joint", "M+S", "S+M")


def query_negative_mask(
    video_ids: Sequence,
    mode: str = "batch",
    instance_ids: Optional[Sequence] = None,
    query_tokens: Optional[Sequence[Sequence[str]]] = None,
    device=None,
) -> torch.Tensor:
    """Which queries are negatives for which clip.

    Args:
        video_ids: B video ids of the clips (clip ``b`` comes with query ``b``).
        mode: ``"batch"``, ``"video"`` or ``"none"``.
        instance_ids: B referred instance ids (a query of the same actor is no negative).
        query_tokens: B token lists (a query with the same words is no negative).

    Returns:
        bool ``(B, B)``: ``[b, q]`` True when query ``q`` is a negative for clip ``b``.
    """
    check_choice("MODEL.AAMN.QUERY_NEGATIVES", mode, QUERY_NEGATIVE_MODES)
    B = len(video_ids)
    neg = torch.zeros((B, B), dtype=torch.bool, device=device)
    if mode == "none":
        return neg
    for b in range(B):
        for q in range(B):
            if q == b:
                continue
            same_video = video_ids[b] is not None and video_ids[b] == video_ids[q]
            if mode == "video" and not same_video:
                continue
            if (
                same_video
                and instance_ids is not None
                and instance_ids[b] is not None
                and instance_ids[b] == instance_ids[q]
            ):
                continue
            if query_tokens is not None and list(query_tokens[b]) == list(query_tokens[q]):
                continue
            neg[b, q] = True
    return neg


def triplet_matching_loss(
    scores: torch.Tensor,
    matched: torch.Tensor,
    negative_queries: Optional[torch.Tensor] = None,
    margin: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. (12).

    Args:
        scores: ``(B, Q, K)``, ``scores[b, q, k]`` = ``s`` of tube ``k`` of clip ``b`` with query
            ``q``; query ``b`` is clip ``b``'s own query (``Q >= B``).
        matched: LongTensor ``(B,)``, the matched tube ``k*`` of each clip.
        negative_queries: bool ``(B, Q)`` (``query_negative_mask``) or None (no query side).
        margin: ``m``.
        reduction: ``"mean"`` or ``"sum"`` over the negatives of each side.

    Returns:
        scalar loss (see the module docstring for the normalisation).
    """
    check_choice("MODEL.AAMN.MATCH_LOSS_REDUCTION", reduction, MATCH_LOSS_REDUCTIONS)
    B, Q, K = scores.shape
    if Q < B:
        raise ValueError(f"scores {tuple(scores.shape)}: need each clip's own query (Q >= B)")
    ar = torch.arange(B, device=scores.device)
    own = scores[ar, ar]  # (B, K): every tube with the clip's own query
    pos = own[ar, matched]  # (B,): s(k*, q_b)
    loss = scores.new_zeros(B)
    if K > 1:
        # Tube side: the K - 1 other tubes with the same query.
        not_matched = torch.ones_like(own, dtype=torch.bool)
        not_matched[ar, matched] = False
        hinge = F.relu(margin - pos[:, None] + own) * not_matched
        loss = loss + hinge.sum(dim=1) / ((K - 1) if reduction == "mean" else 1)
    if negative_queries is not None and negative_queries.any():
        # Query side: the matched tube with the other (negative) queries.
        with_queries = scores[ar, :, matched]  # (B, Q)
        neg = negative_queries.to(torch.bool)
        hinge = F.relu(margin - pos[:, None] + with_queries) * neg
        count = neg.sum(dim=1).clamp(min=1) if reduction == "mean" else 1
        loss = loss + hinge.sum(dim=1) / count
    return loss.mean()


def mask_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (11): mean binary cross-entropy, ``logits`` / ``targets`` ``(N, M, M)``."""
    if logits.shape != targets.shape:
        raise ValueError(f"mask logits {tuple(logits.shape)} vs targets {tuple(targets.shape)}")
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="mean")


def joint_loss(
    loss_match: torch.Tensor, loss_seg: torch.Tensor, mask_loss_weight: float = 5.0
) -> dict:
    """Eq. (10) as the detectron2 loss dict:
    ``{"loss_match": L_mat, "loss_mask": lambda L_seg}``."""
    return {"loss_match": loss_match, "loss_mask": mask_loss_weight * loss_seg}
