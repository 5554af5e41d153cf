"""RoI poolers with the project's RoIAlign, chosen where the pooler is built.

``build_roi_pooler`` is detectron2's ``ROIPooler`` whose RoIAlign levels are
``aamn.layers.ROIAlign`` when ``separable`` (``MODEL.SEPARABLE_ROI_ALIGN``): the same values and
gradients as torchvision's kernel, its CPU backward pass as matrix products.  AAMN's stream heads
build their poolers with it, and the detector's RoI heads
(``aamn.modeling.roi_heads.SeparableROIAlignROIHeads``) its box pooler.
"""

from torch import nn

from detectron2.modeling.poolers import ROIPooler

from ..layers import ROIAlign

__all__ = ["build_roi_pooler"]

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
