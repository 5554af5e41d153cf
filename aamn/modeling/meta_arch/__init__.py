"""Meta-architectures registered in detectron2's ``META_ARCH_REGISTRY`` on import: ``AAMN`` and the
two comparison systems, ``DynamicFilterSeg`` (Gavrilyuk et al. 2018) and ``CMDy``."""

from .aamn import AAMN
from .cmdy import CMDy
from .dynamic_filter import DynamicFilterSeg

__all__ = ["AAMN", "CMDy", "DynamicFilterSeg"]
