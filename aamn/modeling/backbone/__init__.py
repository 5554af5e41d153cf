"""Backbones registered in detectron2's ``BACKBONE_REGISTRY`` on import."""

from .tiny import TinyResNet, build_tiny_backbone, build_tiny_fpn_backbone
from .vgg import VGG16, build_vgg16_backbone, is_vgg16_file, vgg16_weights

__all__ = [
    "TinyResNet",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "VGG16",
    "build_vgg16_backbone",
    "is_vgg16_file",
    "vgg16_weights",
]
