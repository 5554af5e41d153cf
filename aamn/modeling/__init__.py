"""AAMN modelling: importing this package registers the ``AAMN`` meta-architecture, the tiny
backbones and the language encoders."""
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

from .ablations import ABLATIONS, ablation_overrides, check_ablation_config
from .action_module import ActionModule, ContextualLSTM, GatedFusion, context_order, context_sequences
from .actor_module import ActorModule, MatchingHead, location_features
from .backbone import TinyResNet, build_tiny_backbone, build_tiny_fpn_backbone
from .baseline_module import BaselineModule
from .checkpoint import AAMNCheckpointer, load_pretrained_streams
from .language import (
    LANGUAGE_ENCODER_REGISTRY,
    BiLSTMAttentionEncoder,
    MeanPoolingEncoder,
    WordEmbeddingEncoder,
    build_language_encoder,
    masked_softmax,
    vocabulary_from_config,
)
from .losses import joint_loss, mask_bce_loss, query_negative_mask, triplet_matching_loss
from .mask_head import AAMNMaskHead, mask_targets, paste_masks, positive_mask_rois
from .meta_arch import AAMN
from .roi_heads import StreamRoIHead
from .tube_linking import TemporalAggregation, TubeLinker, gather_tubes, link_tubes, pairwise_iou_batched

__all__ = [
    "AAMN",
    "ABLATIONS",
    "AAMNCheckpointer",
    "AAMNMaskHead",
    "ActionModule",
    "ActorModule",
    "BACKBONE_REGISTRY",
    "BaselineModule",
    "BiLSTMAttentionEncoder",
    "ContextualLSTM",
    "GatedFusion",
    "LANGUAGE_ENCODER_REGISTRY",
    "META_ARCH_REGISTRY",
    "MatchingHead",
    "MeanPoolingEncoder",
    "StreamRoIHead",
    "TemporalAggregation",
    "TinyResNet",
    "TubeLinker",
    "WordEmbeddingEncoder",
    "ablation_overrides",
    "build_language_encoder",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "check_ablation_config",
    "context_order",
    "context_sequences",
    "gather_tubes",
    "joint_loss",
    "link_tubes",
    "load_pretrained_streams",
    "location_features",
    "mask_bce_loss",
    "mask_targets",
    "masked_softmax",
    "pairwise_iou_batched",
    "paste_masks",
    "positive_mask_rois",
    "query_negative_mask",
    "triplet_matching_loss",
    "vocabulary_from_config",
]
