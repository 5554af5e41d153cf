"""RoI poolers with the project's RoIAlign, chosen where the pooler is built.

``build_roi_pooler`` is detectron2's ``ROIPooler`` whose RoIAlign levels are
``aamn.layers.ROIAlign`` when ``separable`` (``MODEL.SEPARABLE_ROI_ALIGN``): the same values and
gradients as torchvision's kernel, its CPU backward pass as matrix products.  AAMN's stream heads
build their poolers with it, and ``SeparableROIAlignROIHeads`` (detectron2's ``StandardROIHeads``,
registered in ``ROI_HEADS_REGISTRY``, named by the detector configs) its box pooler.
"""

from torch import nn

from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads

from ..layers import ROIAlign

__all__ = ["SeparableROIAlignROIHeads", "build_roi_pooler"]

# detectron2's RoIAlign pooler types and their ``aligned`` flag.
_ALIGNED = {"ROIAlign": False, "ROIAlignV2": True}


def build_roi_pooler(output_size, scales, sampling_ratio, pooler_type, separable: bool = True):
    """detectron2's ``ROIPooler(output_size, scales, sampling_ratio, pooler_type)``; with
    ``separable`` and a RoIAlign type, its levels are ``aamn.layers.ROIAlign``."""
    pooler = ROIPooler(output_size, scales, sampling_ratio, pooler_type)
    if separable and pooler_type in _ALIGNED:
        pooler.level_poolers = nn.ModuleList(
            ROIAlign(
                pooler.output_size,
                spatial_scale=scale,
                sampling_ratio=sampling_ratio,
                aligned=_ALIGNED[pooler_type],
            )
            for scale in scales
        )
    return pooler


@ROI_HEADS_REGISTRY.register()
class SeparableROIAlignROIHeads(StandardROIHeads):
    """detectron2's ``StandardROIHeads`` whose box pooler is ``build_roi_pooler``'s
    (``MODEL.SEPARABLE_ROI_ALIGN``)."""

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
