"""Meta-architectures registered in detectron2's ``META_ARCH_REGISTRY`` on import."""

from .aamn import AAMN

__all__ = ["AAMN"]
