"""Meta-architectures registered in detectron2's ``META_ARCH_REGISTRY`` on import: ``AAMN`` and the
two comparison systems, ``DynamicFilterSeg`` (Gavrilyuk et al. 2018) and ``CMDy``; each with its
config keys beside it (``*_config.py``)."""

from .aamn import AAMN
from .aamn_config import add_aamn_config
from .cmdy import CMDy
from .cmdy_config import add_cmdy_config
from .dynamic_filter import DynamicFilterSeg
from .dynamic_filter_config import add_dynamic_filter_config

# The config function of every meta-architecture of the project (each calls add_rvos_config);
# ``aamn.config.get_aamn_cfg`` adds them all.
MODEL_CONFIGS = [add_aamn_config, add_dynamic_filter_config, add_cmdy_config]

__all__ = [
    "AAMN",
    "CMDy",
    "DynamicFilterSeg",
    "MODEL_CONFIGS",
    "add_aamn_config",
    "add_cmdy_config",
    "add_dynamic_filter_config",
]
