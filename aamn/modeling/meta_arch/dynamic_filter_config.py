"""DynamicFilterSeg's config keys (``MODEL.DYNAMIC_FILTER``), beside the model
(``aamn.modeling.meta_arch.dynamic_filter``)."""

from detectron2.config import CfgNode as CN

from aamn.config import adds_keys

from ..clip_encoder_config import add_clip_encoder_config

__all__ = ["add_dynamic_filter_config"]


@adds_keys("DYNAMIC_FILTER", after=add_clip_encoder_config)
def add_dynamic_filter_config(_C):
    """``add_clip_encoder_config`` + ``MODEL.DYNAMIC_FILTER`` (Gavrilyuk et al. 2018,
    aamn/modeling/meta_arch/dynamic_filter.py)."""
    _C.MODEL.DYNAMIC_FILTER = CN()
    # Streams, each a full sub-model: ["rgb"], ["flow"] or ["rgb", "flow"] (two-stream).
    _C.MODEL.DYNAMIC_FILTER.STREAMS = ["rgb", "flow"]
    # Weights of the RGB and Flow response maps in the two-stream average (Sec. 5.1: 2:1).
    _C.MODEL.DYNAMIC_FILTER.STREAM_WEIGHTS = [2.0, 1.0]
    # How the two streams' maps are averaged: "logits" (their logits) or "probs" (their
    # probabilities; aamn.modeling.clip_baselines.fuse_streams).
    _C.MODEL.DYNAMIC_FILTER.STREAM_FUSION = "logits"
    # Widths D1, D2 of the two deconvolution blocks (strides 16 -> 4 -> 1).
    _C.MODEL.DYNAMIC_FILTER.DECODER_DIMS = [256, 64]
    # alpha_r of Eq. (5) for the responses at strides 16, 4, 1.
    _C.MODEL.DYNAMIC_FILTER.LOSS_WEIGHTS = [1.0, 1.0, 1.0]
    # "fixed": sigmoid > THRESHOLD (the paper gives none; 0.5 = logit > 0); or "half_max".
    _C.MODEL.DYNAMIC_FILTER.THRESHOLD_MODE = "fixed"
    _C.MODEL.DYNAMIC_FILTER.THRESHOLD = 0.5
