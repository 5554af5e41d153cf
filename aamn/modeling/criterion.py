"""AAMN's training targets and losses (Sec. III-E): the criterion of the meta-architecture.

Two calls, as a detectron2 criterion: ``targets(inputs, boxes)`` before the matching head (it
modifies none of its inputs: the substituted proposals are a copy, ``targets["boxes"]``), and
``forward(outputs, targets)`` after it.

``targets``:

* ground-truth substitution (before linking): when no key-frame proposal reaches
  ``MATCH_IOU_THRESHOLD`` IoU with the referred ground-truth box, the box replaces the
  lowest-scored key-frame proposal; the matched tube ``k*`` is the one whose key-frame box
  overlaps the ground truth most;
* the mask head's training boxes (``MASK_HEAD.TRAIN_ROIS``): the matched tube's key-frame box
  ("matched", the paper) or every key-frame proposal that overlaps an annotated actor
  ("positive", ``positive_mask_rois``), each with the mask of its actor; the mask head grows them
  into its RoIs (``AAMNMaskHead.rois``) and ``forward`` crops the actors' masks to those RoIs
  (Mask R-CNN's targets, 28x28).

Losses (``aamn.modeling.losses``): ``loss_match`` = Eq. (12) over the tube side and the query side
(``QUERY_NEGATIVES``, ``MATCH_LOSS_REDUCTION``), ``loss_mask`` = lambda x Eq. (11) (Eq. 10);
``TRAINING_STRATEGY`` (Table VII) trains them jointly or one after the other (``resting_loss``).
"""

from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.structures import Boxes, Instances, pairwise_iou

from .losses import (
    MATCH_LOSS_REDUCTIONS,
    TRAINING_STRATEGIES,
    QUERY_NEGATIVE_MODES,
    joint_loss,
    mask_bce_loss,
    query_negative_mask,
    triplet_matching_loss,
)
from .mask_head import MASK_TRAIN_ROIS, mask_targets, positive_mask_rois

__all__ = ["AAMNCriterion", "referred_ground_truth"]


def referred_ground_truth(x: Dict) -> Instances:
    """The referred actor's row of a mapper dict's key-frame ``instances``."""
    instances = x["instances"]
    idx = int(x["referred_idx"])
    if not 0 <= idx < len(instances):
        raise ValueError(f"referred_idx {idx} outside the {len(instances)} key-frame instances")
    return instances[idx : idx + 1]


def _event_storage():
    """detectron2's current ``EventStorage``, or None outside a training loop."""
    from detectron2.utils.events import get_event_storage

    try:
        return get_event_storage()
    except AssertionError:
        return None


class AAMNCriterion(nn.Module):
    """Ground-truth substitution, mask RoIs and targets, Eq. (10)-(12).  No parameters."""

    @configurable
    def __init__(
        self,
        *,
        match_iou_threshold: float = 0.5,
        match_margin: float = 0.1,
        query_negatives: str = "batch",
        match_loss_reduction: str = "mean",
        mask_loss_weight: float = 5.0,
        mask_train_rois: str = "matched",
        training_strategy: str = "joint",
        phase_split_iter: int = 0,
    ):
        """
        Args:
            match_iou_threshold: GT substitution threshold (and the "positive" RoI threshold).
            match_margin: Eq. (12) margin.
            query_negatives: ``"batch"``, ``"video"`` or ``"none"``.
            match_loss_reduction: ``"mean"`` or ``"sum"`` over the negatives.
            mask_loss_weight: Eq. (10) lambda.
            mask_train_rois: ``"matched"`` or ``"positive"``.
            training_strategy: Table VII, ``"joint"``, ``"M+S"`` or ``"S+M"``.
            phase_split_iter: the first iteration of the second phase (``"M+S"`` / ``"S+M"``).
        """
        super().__init__()
        for name, value, choices in (
            ("QUERY_NEGATIVES", query_negatives, QUERY_NEGATIVE_MODES),
            ("MATCH_LOSS_REDUCTION", match_loss_reduction, MATCH_LOSS_REDUCTIONS),
            ("MASK_HEAD.TRAIN_ROIS", mask_train_rois, MASK_TRAIN_ROIS),
            ("TRAINING_STRATEGY", training_strategy, TRAINING_STRATEGIES),
        ):
            if value not in choices:
                raise ValueError(f"Unknown MODEL.AAMN.{name} {value!r}; choose from {choices}")
        # Matching (Eq. 12) and ground-truth substitution.
        self.match_iou_threshold, self.match_margin = match_iou_threshold, match_margin
        self.query_negatives, self.match_loss_reduction = query_negatives, match_loss_reduction
        # Segmentation (Eq. 10-11).
        self.mask_loss_weight, self.mask_train_rois = mask_loss_weight, mask_train_rois
        self.training_strategy, self.phase_split_iter = training_strategy, int(phase_split_iter)

    @classmethod
    def from_config(cls, cfg):
        A = cfg.MODEL.AAMN
        return {
            "match_iou_threshold": A.MATCH_IOU_THRESHOLD,
            "match_margin": A.MATCH_MARGIN,
            "query_negatives": A.QUERY_NEGATIVES,
            "match_loss_reduction": A.MATCH_LOSS_REDUCTION,
            "mask_loss_weight": A.MASK_LOSS_WEIGHT,
            "mask_train_rois": A.MASK_HEAD.TRAIN_ROIS,
            "training_strategy": A.TRAINING_STRATEGY,
            "phase_split_iter": int(round(A.PHASE_SPLIT * cfg.SOLVER.MAX_ITER)),
        }

    def targets(self, batched_inputs: List[Dict], boxes: torch.Tensor) -> Dict:
        """The training targets of a batch, before the matching head runs.

        Args:
            batched_inputs: B dicts of ``ClipDatasetMapper`` (key-frame ``instances``,
                ``referred_idx``, ``proposal_scores``, ``query_tokens``, ids).
            boxes: ``(B, T, K, 4)`` proposals (not modified).

        Returns:
            dict: ``boxes`` ``(B, T, K, 4)``, a copy of the proposals with the substituted
            ground-truth boxes (what the matching head links), ``matched`` ``(B,)`` tube indices,
            ``substituted`` ``(B,)`` bool,
            ``mask_frame_index`` ``(N,)`` (non-decreasing, in the stacked ``B*T`` frames),
            ``mask_boxes`` ``(N, 4)`` (key-frame boxes, before the mask head grows them),
            ``mask_actors`` (per clip, the ``BitMasks`` of its boxes' actors), and the inputs'
            ``video_ids``, ``instance_ids``, ``query_tokens`` (the query-side negatives).
        """
        T = boxes.shape[1]
        key = T // 2
        boxes = boxes.clone()  # the inputs stay as they are
        matched, substituted = self._substitute_ground_truth(batched_inputs, boxes, key)
        frame_index, mask_boxes, actors = [], [], []
        for b, x in enumerate(batched_inputs):
            instances = x["instances"]
            referred = int(x["referred_idx"])
            referred_ground_truth(x)  # checks referred_idx
            if self.mask_train_rois == "matched":
                proposals = matched[b : b + 1]
                actor_rows = torch.tensor([referred])
            else:
                proposals, actor_rows = positive_mask_rois(
                    boxes[b, key],
                    instances.gt_boxes.tensor,
                    self.match_iou_threshold,
                    int(matched[b]),
                    referred,
                )
            frame_index.append(
                torch.full((len(proposals),), b * T + key, dtype=torch.long, device=boxes.device)
            )
            mask_boxes.append(boxes[b, key, proposals])
            actors.append(instances.gt_masks[actor_rows.cpu()])
        return {
            "boxes": boxes,
            "matched": matched,
            "substituted": substituted,
            "mask_frame_index": torch.cat(frame_index),
            "mask_boxes": torch.cat(mask_boxes),
            "mask_actors": actors,
            "video_ids": [x.get("video_id") for x in batched_inputs],
            "instance_ids": [x.get("instance_id") for x in batched_inputs],
            "query_tokens": [x["query_tokens"] for x in batched_inputs],
        }

    def _substitute_ground_truth(self, batched_inputs: List[Dict], boxes: torch.Tensor, key: int):
        """Put the referred GT box into the key frame when no proposal overlaps it (``boxes``
        ``(B, T, K, 4)``, ``targets``' own copy, modified in place); returns matched ``(B,)``,
        substituted ``(B,)``."""
        B = boxes.shape[0]
        gt = torch.stack(
            [referred_ground_truth(x).gt_boxes.tensor[0].to(boxes) for x in batched_inputs]
        )  # (B, 4)
        matched = torch.zeros(B, dtype=torch.long, device=boxes.device)
        substituted = torch.zeros(B, dtype=torch.bool, device=boxes.device)
        for b, x in enumerate(batched_inputs):
            iou = pairwise_iou(Boxes(boxes[b, key]), Boxes(gt[b : b + 1]))[:, 0]  # (K,)
            if iou.max() < self.match_iou_threshold:
                lowest = int(torch.argmin(x["proposal_scores"][key].to(boxes.device)))
                boxes[b, key, lowest] = gt[b]
                substituted[b] = True
                iou = pairwise_iou(Boxes(boxes[b, key]), Boxes(gt[b : b + 1]))[:, 0]
            matched[b] = torch.argmax(iou)
        return matched, substituted

    def forward(self, outputs: Dict, targets: Dict) -> Dict[str, torch.Tensor]:
        """Eq. (10)-(12): ``{"loss_match", "loss_mask"}`` (the mask loss already weighted).

        Args:
            outputs: ``scores`` ``(B, B, K)`` (clip i's tubes with query j), ``mask_logits``
                ``(N, M, M)`` and ``mask_rois`` ``(N, 4)`` (the RoIs they were predicted in, in
                the order of ``targets["mask_boxes"]``).
            targets: ``targets()``'s.
        """
        scores, matched = outputs["scores"], targets["matched"]
        self.log_training(scores, matched, targets["substituted"])
        negatives = query_negative_mask(
            targets["video_ids"],
            self.query_negatives,
            instance_ids=targets["instance_ids"],
            query_tokens=targets["query_tokens"],
            device=scores.device,
        )
        loss_match = triplet_matching_loss(
            scores, matched, negatives, self.match_margin, self.match_loss_reduction
        )
        mask_logits = outputs["mask_logits"]
        size = mask_logits.shape[-1]
        rois = torch.split(outputs["mask_rois"], [len(m) for m in targets["mask_actors"]])
        mask_gt = torch.cat(
            [mask_targets(m, r, size) for m, r in zip(targets["mask_actors"], rois)]
        ).to(mask_logits.device)
        losses = joint_loss(loss_match, mask_bce_loss(mask_logits, mask_gt), self.mask_loss_weight)
        resting = self.resting_loss()
        if resting is not None:  # Table VII's separate phases: logged, not trained
            losses[resting] = losses[resting].detach()
        return losses

    def resting_loss(self, iteration: Optional[int] = None) -> Optional[str]:
        """The loss that does not train at ``iteration`` (default: the training's current one,
        from detectron2's event storage), or None (joint training, or no training running).

        ``"M+S"``: ``loss_mask`` before ``phase_split_iter``, ``loss_match`` from it on;
        ``"S+M"`` the other way round (Table VII)."""
        if self.training_strategy == "joint":
            return None
        if iteration is None:
            storage = _event_storage()
            if storage is None:  # called outside a training loop
                return None
            iteration = storage.iter
        first = iteration < self.phase_split_iter
        matching_first = self.training_strategy == "M+S"
        return "loss_mask" if first == matching_first else "loss_match"

    @staticmethod
    def log_training(
        scores: torch.Tensor, matched: torch.Tensor, substituted: torch.Tensor
    ) -> None:
        """Matching accuracy of the batch and the share of substituted GT boxes (event storage)."""
        storage = _event_storage()
        if storage is None:
            return
        ar = torch.arange(scores.shape[0], device=scores.device)
        storage.put_scalar(
            "aamn/match_accuracy", float((scores[ar, ar].argmax(dim=1) == matched).float().mean())
        )
        storage.put_scalar("aamn/gt_substituted", float(substituted.float().mean()))
