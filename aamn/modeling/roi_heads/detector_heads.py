"""The proposal detector's RoI heads: detectron2's ``StandardROIHeads`` with the project's box
pooler and, optionally, its box head in bf16 at inference.

- The box pooler is ``aamn.modeling.poolers.build_roi_pooler``'s (``MODEL.SEPARABLE_ROI_ALIGN``).
- ``MODEL.ROI_BOX_HEAD.INFERENCE_BF16``: at inference on CPU, the box head's layers (the fully
  connected ones of ``FastRCNNConvFCHead``) run under bf16 autocast; the class and box predictors
  and the detections' NMS stay float32.  It changes the computation: its val accuracy (three
  seeds) and speed are in BENCHMARKS.md; the synthetic shared model turns it on
  (``configs/synthetic/aamn.yaml``).

``SeparableROIAlignROIHeads`` is registered in detectron2's ``ROI_HEADS_REGISTRY``: the detector
configs name it (``MODEL.ROI_HEADS.NAME``).
"""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances

from ..poolers import build_roi_pooler

__all__ = ["SeparableROIAlignROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SeparableROIAlignROIHeads(StandardROIHeads):
    """detectron2's ``StandardROIHeads``: its box pooler ``build_roi_pooler``'s, its box head
    optionally in bf16 at inference (module docstring)."""

    @configurable
    def __init__(self, *, inference_bf16: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.inference_bf16 = inference_bf16

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["inference_bf16"] = cfg.MODEL.ROI_BOX_HEAD.INFERENCE_BF16
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        if cfg.MODEL.ROI_BOX_HEAD.NAME:
            in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
            ret["box_pooler"] = build_roi_pooler(
                cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
                tuple(1.0 / input_shape[k].stride for k in in_features),
                cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
                separable=cfg.MODEL.SEPARABLE_ROI_ALIGN,
            )
        return ret

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """detectron2's, the box head in bf16 at CPU inference when asked.  ``features``: the FPN
        maps ``(N, C, Hi, Wi)``; ``proposals``: ``N`` Instances with ``proposal_boxes``."""
        if self.training:
            return super()._forward_box(features, proposals)
        maps = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(maps, [x.proposal_boxes for x in proposals])
        if self.inference_bf16 and box_features.device.type == "cpu":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                box_features = self.box_head(box_features)
            box_features = box_features.float()
        else:
            box_features = self.box_head(box_features)
        pred_instances, _ = self.box_predictor.inference(
            self.box_predictor(box_features), proposals
        )
        return pred_instances
