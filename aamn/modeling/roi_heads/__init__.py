"""RoI heads of the two streams."""

from .stream_head import StreamRoIHead

__all__ = ["StreamRoIHead"]
