"""The actor segmentation network (Sec. III-D) and its training targets (Eq. 11).

A small FCN as Mask R-CNN's mask head: a 1x1 conv fusing the concatenated RGB and Flow 14x14 RoI
maps of a tube box to ``CONV_DIM`` channels, ``NUM_CONV`` 3x3 convs (``CONV_DIM``), a 2x
deconvolution and a 1x1 predictor: one class-agnostic ``28x28`` mask logit per box.  Without flow
(``use_flow=False``, Table IV "(FCN) w/o optical flow"; also when the Flow stream is off) the 1x1
conv sees the RGB maps alone; without the RGB stream (``use_rgb=False``, Table IV "w/o RGB Stream")
it sees the Flow maps alone.

Training: the target is the referred actor's ground-truth mask cropped by the RoI box and resized
to 28x28 (``BitMasks.crop_and_resize``, as Mask R-CNN).  Inference: the sigmoid of the logits is
pasted into the frame with detectron2's ``paste_masks_in_image`` and thresholded.

Training RoIs (``MODEL.AAMN.MASK_HEAD.TRAIN_ROIS``): the paper trains on the matched tube's
key-frame box ("matched"): one RoI per clip-query.  The head is class-agnostic and does not see the
query, so every key-frame proposal that overlaps an annotated actor can train it with that actor's
mask, as Mask R-CNN's positives ("positive", ``positive_mask_rois``): several RoIs per clip, boxes
of varied fit around each actor.  The configs keep the paper's "matched" (BENCHMARKS.md has the
comparison).

Mask RoI (``MODEL.AAMN.MASK_HEAD.BOX_EXPAND``; the paper is silent): the box the mask head sees,
is trained on and pastes into can be the tube box grown about its centre (``expand_boxes``) and
clipped to the frame.  A mask can only cover its box, and a selected proposal often misses part
of the actor (BENCHMARKS.md: the mask IoU follows the box IoU); growing the box lets the mask reach
the parts outside it.  The detection outputs (``pred_boxes``, ``tube_boxes``) stay the tube boxes.
"""

from typing import Optional, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ConvTranspose2d
from detectron2.structures import BitMasks, Boxes, pairwise_iou

from .box_ops import expand_boxes

__all__ = [
    "AAMNMaskHead",
    "MASK_TRAIN_ROIS",
    "positive_mask_rois",
    "mask_targets",
]

MASK_TRAIN_ROIS = ("matched", "positive")


class AAMNMaskHead(nn.Module):
    """[``rgb (N, C, S, S)``] [+ ``flow (N, C, S, S)``] -> mask logits ``(N, 2S, 2S)``."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        conv_dim: int = 256,
        num_conv: int = 3,
        use_flow: bool = True,
        use_rgb: bool = True,
        box_expand: float = 1.0,
    ):
        """
        Args:
            in_channels: channels of one stream's RoI maps.
            conv_dim: width of the convs (paper: 256).
            num_conv: number of 3x3 convs after the 1x1 fusion conv (paper: 3).
            use_flow: concatenate the Flow maps to the RGB maps.
            use_rgb: use the RGB maps (False: the Flow maps alone, ``use_flow`` must be True).
            box_expand: the mask RoI is a box grown by this factor about its centre and clipped to
                the frame (``rois``), in training and inference.
        """
        super().__init__()
        if not (use_rgb or use_flow):
            raise ValueError(
                "The mask head needs the RGB or the Flow RoI maps: MODEL.AAMN.USE_RGB=False needs "
                "MODEL.AAMN.USE_FLOW=True and MODEL.AAMN.MASK_HEAD.USE_FLOW=True"
            )
        if box_expand < 1.0:
            raise ValueError(f"MODEL.AAMN.MASK_HEAD.BOX_EXPAND must be >= 1, got {box_expand}")
        self.use_flow = use_flow
        self.use_rgb = use_rgb
        self.box_expand = float(box_expand)
        self.fuse = Conv2d(
            in_channels * (int(use_rgb) + int(use_flow)), conv_dim, 1, activation=F.relu
        )
        self.convs = nn.ModuleList(
            Conv2d(conv_dim, conv_dim, 3, padding=1, activation=F.relu) for _ in range(num_conv)
        )
        self.deconv = ConvTranspose2d(conv_dim, conv_dim, 2, stride=2)
        self.predictor = Conv2d(conv_dim, 1, 1)
        for layer in [self.fuse, *self.convs, self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg, in_channels: int):
        return {
            "in_channels": in_channels,
            "conv_dim": cfg.MODEL.AAMN.MASK_HEAD.CONV_DIM,
            "num_conv": cfg.MODEL.AAMN.MASK_HEAD.NUM_CONV,
            "use_flow": cfg.MODEL.AAMN.USE_FLOW and cfg.MODEL.AAMN.MASK_HEAD.USE_FLOW,
            "use_rgb": cfg.MODEL.AAMN.USE_RGB,
            "box_expand": cfg.MODEL.AAMN.MASK_HEAD.BOX_EXPAND,
        }

    def rois(self, boxes: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        """The mask RoIs of XYXY ``boxes (N, 4)``: grown by ``box_expand`` and clipped to their
        frames, ``image_sizes (N, 2)`` (height, width) (``box_ops.expand_boxes``)."""
        return expand_boxes(boxes, self.box_expand, image_sizes)

    def forward(
        self, rgb: Optional[torch.Tensor], flow: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``rgb`` / ``flow`` ``(N, C, S, S)`` (each only when the head uses it) ->
        ``(N, 2S, 2S)``."""
        if self.use_flow and flow is None:
            raise ValueError("The mask head fuses Flow features but none were given")
        if self.use_rgb and rgb is None:
            raise ValueError("The mask head uses RGB features but none were given")
        if self.use_rgb and self.use_flow:
            x = torch.cat([rgb, flow], dim=1)
        else:
            x = rgb if self.use_rgb else flow
        x = self.fuse(x)  # 1x1 fusion of the two streams
        for conv in self.convs:
            x = conv(x)
        x = F.relu(self.deconv(x))  # 2x up-sampling
        return self.predictor(x).squeeze(1)


def mask_targets(gt_masks: BitMasks, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
    """Mask R-CNN targets: ``gt_masks`` (N masks of the frame) cropped by ``boxes (N, 4)`` and
    resized to ``mask_size`` -> float ``(N, mask_size, mask_size)`` in {0, 1}."""
    if len(gt_masks) != len(boxes):
        raise ValueError(f"{len(gt_masks)} masks for {len(boxes)} boxes")
    return gt_masks.crop_and_resize(boxes.detach().to(gt_masks.device), mask_size).to(torch.float32)


def positive_mask_rois(
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    iou_threshold: float,
    matched: int,
    referred: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The mask head's training RoIs of one key frame under ``TRAIN_ROIS = "positive"``.

    Args:
        proposal_boxes: ``(K, 4)`` XYXY key-frame proposals (after the training substitution of
            the ground-truth box, if any).
        gt_boxes: ``(M, 4)`` boxes of the frame's annotated actors.
        iou_threshold: a proposal is positive when its best IoU with an actor reaches this.
        matched: index of the matched proposal; always kept, assigned to ``referred``.
        referred: index of the referred actor among the ``M``.

    Returns:
        ``(proposal_index (P,), actor_index (P,))`` long tensors: each positive proposal and the
        actor it best overlaps (its mask is the target), the matched proposal first.
    """
    K, M = len(proposal_boxes), len(gt_boxes)
    if not 0 <= matched < K:
        raise ValueError(f"matched proposal {matched} outside the {K} proposals")
    if not 0 <= referred < M:
        raise ValueError(f"referred actor {referred} outside the {M} annotated actors")
    iou = pairwise_iou(Boxes(proposal_boxes), Boxes(gt_boxes.to(proposal_boxes)))  # (K, M)
    best_iou, best_actor = iou.max(dim=1)
    keep = best_iou >= iou_threshold
    keep[matched] = False
    others = torch.nonzero(keep).flatten()
    device = proposal_boxes.device
    proposals = torch.cat([torch.tensor([matched], device=device), others])
    actors = torch.cat([torch.tensor([referred], device=device), best_actor[others]])
    return proposals.long(), actors.long()
