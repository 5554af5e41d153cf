"""Backbones registered in detectron2's ``BACKBONE_REGISTRY`` on import."""

from .tiny import TinyResNet, build_tiny_backbone, build_tiny_fpn_backbone

__all__ = ["TinyResNet", "build_tiny_backbone", "build_tiny_fpn_backbone"]
