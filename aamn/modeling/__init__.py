"""The project's modelling: importing this package registers the meta-architectures, the tiny
backbones, the query encoders and AAMN's matching head."""

from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

from .ablations import (
    ABLATION_TABLES,
    ABLATIONS,
    ablation_overrides,
    check_ablation_config,
    flow_features_used,
)
from .action_module import (
    ActionModule,
    ContextualLSTM,
    GatedFusion,
    context_order,
    context_sequences,
)
from .actor_module import ActorModule, ScoreHead, location_features
from .backbone import TinyResNet, build_tiny_backbone, build_tiny_fpn_backbone
from .baseline_module import BaselineModule
from .clip_baselines import (
    CLIP_ENCODER_REGISTRY,
    ClipBaselineModel,
    TemporalConv3d,
    build_clip_encoder,
)
from .checkpoint import (
    StreamCheckpointer,
    VocabularyMismatchError,
    load_pretrained_streams,
)
from .criterion import AAMNCriterion
from .language import (
    LANGUAGE_ENCODER_REGISTRY,
    BiGRUMaxEncoder,
    BiLSTMEncoder,
    Conv1dMaxEncoder,
    WordEmbeddingEncoder,
    build_language_encoder,
    masked_softmax,
)
from .vocabulary import (
    checkpoint_vocabulary,
    load_vocabulary,
    model_vocabulary,
    resolve_vocabulary,
    vocabulary_from_config,
)
from .losses import joint_loss, mask_bce_loss, query_negative_mask, triplet_matching_loss
from .box_ops import expand_boxes, paste_masks, scale_boxes
from .mask_head import AAMNMaskHead, mask_targets, positive_mask_rois
from .matching_head import MATCHING_HEAD_REGISTRY, AAMNMatchingHead, build_matching_head
from .meta_arch import AAMN, CMDy, DynamicFilterSeg
from .poolers import build_roi_pooler
from .roi_heads import SeparableROIAlignROIHeads, StreamRoIHead
from .rpn import PrefixNMSRPN
from .streams import TwoStreamModel, build_stream_backbones
from .word_attention import ActorActionAttention
from .tube_linking import (
    TemporalAggregation,
    TubeLinker,
    gather_tubes,
    link_tubes,
    pairwise_iou_batched,
)

__all__ = [
    "PrefixNMSRPN",
    "SeparableROIAlignROIHeads",
    "build_roi_pooler",
    "BiGRUMaxEncoder",
    "CLIP_ENCODER_REGISTRY",
    "CMDy",
    "ClipBaselineModel",
    "Conv1dMaxEncoder",
    "DynamicFilterSeg",
    "TemporalConv3d",
    "build_clip_encoder",
    "AAMN",
    "ABLATIONS",
    "ABLATION_TABLES",
    "BACKBONE_REGISTRY",
    "LANGUAGE_ENCODER_REGISTRY",
    "MATCHING_HEAD_REGISTRY",
    "META_ARCH_REGISTRY",
    "ablation_overrides",
    "build_language_encoder",
    "build_matching_head",
    "build_stream_backbones",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "check_ablation_config",
    "checkpoint_vocabulary",
    "context_order",
    "context_sequences",
    "flow_features_used",
    "gather_tubes",
    "joint_loss",
    "link_tubes",
    "load_pretrained_streams",
    "load_vocabulary",
    "location_features",
    "mask_bce_loss",
    "mask_targets",
    "masked_softmax",
    "model_vocabulary",
    "pairwise_iou_batched",
    "paste_masks",
    "expand_boxes",
    "scale_boxes",
    "positive_mask_rois",
    "query_negative_mask",
    "triplet_matching_loss",
    "resolve_vocabulary",
    "vocabulary_from_config",
    "AAMNCriterion",
    "AAMNMaskHead",
    "AAMNMatchingHead",
    "ActionModule",
    "ActorActionAttention",
    "ActorModule",
    "BaselineModule",
    "BiLSTMEncoder",
    "ContextualLSTM",
    "GatedFusion",
    "ScoreHead",
    "StreamCheckpointer",
    "StreamRoIHead",
    "TemporalAggregation",
    "TinyResNet",
    "TubeLinker",
    "TwoStreamModel",
    "VocabularyMismatchError",
    "WordEmbeddingEncoder",
]
