"""RoI heads: the proposal detector's box head (``SeparableROIAlignROIHeads``) and AAMN's two
streams' (``StreamRoIHead``)."""

from .detector_heads import SeparableROIAlignROIHeads
from .stream_head import StreamRoIHead

__all__ = ["SeparableROIAlignROIHeads", "StreamRoIHead"]
