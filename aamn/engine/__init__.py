"""Training and evaluation of any of the project's models (detectron2's ``DefaultTrainer`` way), the
predictor (its ``DefaultPredictor``), the proposal detector, the launcher and the main job."""

from .launch import launch, launch_from_args
from .predictor import QueryError, VideoPredictor
from .proposal_detector import ProposalDetector
from .trainer import (
    Trainer,
    build_optimizer,
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
    "setup_cfg",
    "write_json_atomic",
]
