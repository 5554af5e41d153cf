"""Per-stream RoI heads (Sec. III-A).

One ``StreamRoIHead`` per stream (RGB, Flow).  It pools the backbone features of a set of boxes
with detectron2's ``ROIPooler`` over ``MODEL.AAMN.IN_FEATURES``:

* at ``POOLER_RESOLUTION`` (7x7) for the matching branch, flattened and fed to two FC layers of
  ``ROI_FC_DIM`` (``Cv``) with ReLU: the per-proposal features ``v`` (RGB) or ``f`` (Flow);
* at ``MASK_POOLER_RESOLUTION`` (14x14) for the mask branch (the mask head consumes the maps).

A stream whose per-proposal features no part of the matching uses (the Flow stream of the Table IV
rows "AAMN w/o Action Module" and "(Action Module) w/o Optical Flow", where only the mask head reads
it) is built with ``box_head=False``: no FC layers, so every parameter of the model is trained.
"""

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes

from ..poolers import build_roi_pooler

__all__ = ["StreamRoIHead"]


class StreamRoIHead(nn.Module):
    """RoIAlign (7x7) + 2 FC for the matching branch, RoIAlign (14x14) for the mask branch."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: Dict[str, ShapeSpec],
        in_features: List[str],
        pooler_resolution: int = 7,
        mask_pooler_resolution: int = 14,
        pooler_type: str = "ROIAlignV2",
        separable: bool = True,
        sampling_ratio: int = 0,
        fc_dim: int = 4096,
        box_head: bool = True,
    ):
        """
        Args:
            input_shape: the backbone's ``output_shape()``.
            in_features: the feature maps to pool from (several = FPN level assignment).
            pooler_resolution, mask_pooler_resolution: output sizes of the two poolers.
            pooler_type, sampling_ratio: as detectron2's ``ROIPooler``.
            separable: RoIAlign levels of ``aamn.layers.ROIAlign`` (``build_roi_pooler``).
            fc_dim: ``Cv``, the width of the two FC layers.
            box_head: build the matching branch (7x7 pooler + FCs); False: the mask branch only.
        """
        super().__init__()
        for name in in_features:
            if name not in input_shape:
                raise ValueError(
                    f"MODEL.AAMN.IN_FEATURES names {name!r}, the backbone outputs "
                    f"{sorted(input_shape)}"
                )
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MODEL.AAMN.IN_FEATURES must have one channel count, got {channels}")
        self.in_features = list(in_features)
        self.channels = channels.pop()
        scales = tuple(1.0 / input_shape[f].stride for f in in_features)
        self.mask_pooler = build_roi_pooler(
            mask_pooler_resolution, scales, sampling_ratio, pooler_type, separable
        )
        self.fc_dim = fc_dim
        self.has_box_head = box_head
        if box_head:
            self.box_pooler = build_roi_pooler(
                pooler_resolution, scales, sampling_ratio, pooler_type, separable
            )
            self.fc1 = nn.Linear(self.channels * pooler_resolution**2, fc_dim)
            self.fc2 = nn.Linear(fc_dim, fc_dim)
            for layer in (self.fc1, self.fc2):
                nn.init.kaiming_uniform_(
                    layer.weight, a=1
                )  # c2_xavier_fill, as detectron2's box head
                nn.init.zeros_(layer.bias)

    @classmethod
    def from_config(cls, cfg, input_shape, box_head: bool = True):
        return {
            "box_head": box_head,
            "input_shape": input_shape,
            "in_features": list(cfg.MODEL.AAMN.IN_FEATURES),
            "pooler_resolution": cfg.MODEL.AAMN.POOLER_RESOLUTION,
            "mask_pooler_resolution": cfg.MODEL.AAMN.MASK_POOLER_RESOLUTION,
            "pooler_type": cfg.MODEL.AAMN.POOLER_TYPE,
            "sampling_ratio": cfg.MODEL.AAMN.POOLER_SAMPLING_RATIO,
            "separable": cfg.MODEL.SEPARABLE_ROI_ALIGN,
            "fc_dim": cfg.MODEL.AAMN.ROI_FC_DIM,
        }

    def forward(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        """Box features: ``boxes[i]`` of image ``i`` -> ``(sum_i len(boxes[i]), Cv)``."""
        if not self.has_box_head:
            raise RuntimeError(
                "This RoI head was built without its matching branch (box_head=False)"
            )
        x = self.box_pooler([features[f] for f in self.in_features], boxes)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.relu(self.fc2(x))

    def pool_mask_features(
        self, features: Dict[str, torch.Tensor], boxes: List[Boxes]
    ) -> torch.Tensor:
        """14x14 maps for the mask head: ``(sum_i len(boxes[i]), C, 14, 14)``."""
        return self.mask_pooler([features[f] for f in self.in_features], boxes)
