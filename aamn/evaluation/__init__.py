"""Evaluation of referring video segmentation: the papers' metrics, a detectron2 evaluator and
inference with speed measurement."""

from .inference import inference_on_rvos_dataset
from .metrics import compute_rvos_metrics
from .rvos_evaluation import ReferringVideoEvaluator

__all__ = ["compute_rvos_metrics", "ReferringVideoEvaluator", "inference_on_rvos_dataset"]
