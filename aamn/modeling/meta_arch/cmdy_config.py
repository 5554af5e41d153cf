"""CMDy's config keys (``MODEL.CMDY``), beside the model (``aamn.modeling.meta_arch.cmdy``)."""

from detectron2.config import CfgNode as CN

from aamn.config import adds_keys

from ..clip_encoder_config import add_clip_encoder_config

__all__ = ["add_cmdy_config"]


@adds_keys("CMDY", after=add_clip_encoder_config)
def add_cmdy_config(_C):
    """``add_clip_encoder_config`` + ``MODEL.CMDY`` (CMDy, aamn/modeling/meta_arch/cmdy.py)."""
    _C.MODEL.CMDY = CN()
    # ["rgb"] (the paper), or ["rgb", "flow"]: the two-stream variant of AAMN's Tables X-XI.
    _C.MODEL.CMDY.STREAMS = ["rgb"]
    _C.MODEL.CMDY.STREAM_WEIGHTS = [2.0, 1.0]
    # How the two streams' maps are averaged: "logits" (their logits) or "probs" (their
    # probabilities; aamn.modeling.clip_baselines.fuse_streams).
    _C.MODEL.CMDY.STREAM_FUSION = "logits"
    # Width of Decon_a / Decon_b (the paper: 256; D = 2 x this with the temporal branch).
    _C.MODEL.CMDY.DECON_DIM = 256
    # G, the groups of the group-wise dynamic convolution (N = D / G channels each).
    _C.MODEL.CMDY.GROUPS = 64
    # Stacked context modulated dynamic modules ("context" / "deformable").
    _C.MODEL.CMDY.NUM_MODULES = 3
    # Groups of the 3x3 convolution that gives the per-position kernels k^V (Eq. 10): 1 is the
    # dense convolution (9 D^2 weights per tap); GROUPS computes each group's kernels from its
    # own channels, GROUPS times fewer operations, which lets wider heads fit a CPU budget.
    _C.MODEL.CMDY.VISUAL_KERNEL_GROUPS = 1
    # CMDy Table 3: "dyconv", "group", "context", "deformable".
    _C.MODEL.CMDY.CONV = "deformable"
    # The temporal branch (ConvLSTM + Decon_b, Eq. 14-15).
    _C.MODEL.CMDY.TEMPORAL = True
    # lambda of Eq. (16), the weight of the foreground pixels.
    _C.MODEL.CMDY.FG_WEIGHT = 1.5
    # "half_max" (the paper's rule) or "fixed" (sigmoid > THRESHOLD).
    _C.MODEL.CMDY.THRESHOLD_MODE = "half_max"
    _C.MODEL.CMDY.THRESHOLD = 0.5
