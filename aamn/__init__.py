"""AAMN: actor and action modular network for text-based video segmentation, on detectron2.

Importing the package registers its components with detectron2 (the ``AAMN`` meta-architecture,
the tiny backbone, the data sets under ``$AAMN_DATASETS``).  Registration is idempotent, so
importing twice (or reloading) is harmless.
"""

from .modeling.meta_arch.aamn_config import add_aamn_config
from . import data  # noqa: F401  (registers the data sets)
from . import modeling  # noqa: F401  (registers models)
from . import evaluation  # noqa: F401

__all__ = ["add_aamn_config"]
__version__ = "0.1.0"
