"""Evaluation of referring video segmentation: the papers' metrics, detectron2 evaluators (the
papers' metrics; J&F, the DAVIS protocol) and inference with speed measurement."""

from .inference import inference_on_rvos_dataset
from .jf import JFEvaluator
from .metrics import compute_rvos_metrics
from .rvos_evaluation import ReferringVideoEvaluator

__all__ = [
    "compute_rvos_metrics",
    "JFEvaluator",
    "ReferringVideoEvaluator",
    "inference_on_rvos_dataset",
]
