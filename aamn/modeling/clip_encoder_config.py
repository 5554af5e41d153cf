"""The comparison systems' clip encoder keys (``MODEL.CLIP_ENCODER``), beside the encoder
(``aamn.modeling.clip_baselines``)."""

from detectron2.config import CfgNode as CN

from aamn.config import add_rvos_config, adds_keys

__all__ = ["add_clip_encoder_config"]


@adds_keys("CLIP_ENCODER", after=add_rvos_config)
def add_clip_encoder_config(_C):
    """``add_rvos_config`` + ``MODEL.CLIP_ENCODER``: the I3D substitute of the comparison systems
    (a backbone per frame, then a temporal block; aamn/modeling/clip_baselines.py)."""
    _C.MODEL.CLIP_ENCODER = CN()
    # Registry entry (aamn.modeling.clip_baselines.CLIP_ENCODER_REGISTRY) run on the per-frame maps.
    _C.MODEL.CLIP_ENCODER.NAME = "TemporalConv3d"
    # The backbone output used (stride 16, as I3D's Mixed_4f).
    _C.MODEL.CLIP_ENCODER.IN_FEATURE = "res4"
    # "conv3d": one residual Conv3d(3x3x3) + BN + ReLU over time; "none": frames independent.
    _C.MODEL.CLIP_ENCODER.TEMPORAL = "conv3d"
