"""Training and evaluation of any of the project's models (detectron2's ``DefaultTrainer`` way)."""

from .trainer import Trainer, build_optimizer, resume_vocabulary, setup_cfg, write_json_atomic

__all__ = ["Trainer", "build_optimizer", "resume_vocabulary", "setup_cfg", "write_json_atomic"]
