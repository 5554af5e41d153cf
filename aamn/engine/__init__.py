"""Training and evaluation of any of the project's models (detectron2's ``DefaultTrainer`` way)."""

from .launch import launch, launch_from_args
from .predictor import ProposalDetector, QueryError, VideoPredictor
from .trainer import (
    Trainer,
    build_optimizer,
    resume_vocabulary,
    setup_cfg,
    write_json_atomic,
)

__all__ = [
    "ProposalDetector",
    "QueryError",
    "VideoPredictor",
    "Trainer",
    "build_optimizer",
    "launch",
    "launch_from_args",
    "resume_vocabulary",
    "setup_cfg",
    "write_json_atomic",
]
