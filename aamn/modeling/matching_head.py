"""AAMN's matching head (Sec. III-A to III-C): every tube of every clip scored with every query.

``MATCHING_HEAD_REGISTRY`` (``MODEL.AAMN.MATCHING_HEAD``) builds it; ``AAMNMatchingHead`` holds:

1. the per-stream RoI heads (``StreamRoIHead``): one pooling call per stream for the ``B*T*K``
   proposals plus, in the appearance stream (RGB; Flow without the RGB stream), the ``B*T`` full
   frames of the whole-clip feature ``v_0``; two FC layers give ``v`` / ``f`` ``(B, T, K, Cv)``;
2. Eq. (1) linking (``TubeLinker``) into K tubes anchored at the key frame ``(B, K, T)``;
3. Eq. (2) aggregation + FC + ReLU per stream: ``(B, K, Cv')``, and ``v_0`` ``(B, Cv')``
   aggregated the same way (the paper: "aggregated in the same way");
4. the word attention (Eq. 4-5, ``ActorActionAttention``);
5. the actor module (Eq. 6) and the action module (Eq. 7-9):
   ``s = s_actor + s_action`` ``(B, Q, K)``; a disabled module contributes 0; Table IV's
   "Baseline Model" replaces both by one Eq. (6)-form score of ``[v_k, f_k]`` (``BaselineModule``).

Choices where the paper is silent (config key where there is one): linking with
``LINK_FEATURE = "both"`` measures the distance between the concatenated ``[v, f]``; without the
Flow stream the action module's motion input is the RGB tube feature or nothing
(``NO_FLOW_MOTION_FEATURE``); without the RGB stream the Flow stream takes over every use of the
RGB one (``v_0``, ``v_k``, linking).  When no part of the matching uses the Flow features ``f``
(``aamn.modeling.ablations.flow_features_used``) the Flow stream's box head and Eq. (2) FC are
neither built nor run, so every parameter of such a model is trained.  Which switches combine is
checked once, by ``aamn.modeling.ablations.check_ablation_config``.
"""

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.structures import Boxes
from detectron2.utils.registry import Registry

from .ablations import flow_features_used
from .action_module import ActionModule
from .actor_module import ActorModule
from .baseline_module import BaselineModule
from .roi_heads import StreamRoIHead
from .tube_linking import TemporalAggregation, TubeLinker, gather_tubes
from .word_attention import ActorActionAttention

__all__ = ["MATCHING_HEAD_REGISTRY", "AAMNMatchingHead", "build_matching_head"]

MATCHING_HEAD_REGISTRY = Registry("MATCHING_HEAD")
MATCHING_HEAD_REGISTRY.__doc__ = """
Registry for AAMN's matching heads (``MODEL.AAMN.MATCHING_HEAD``).  Called with
``(cfg, rgb_shape, flow_shape, word_dim)`` (a stream's ``Dict[str, ShapeSpec]``, None when the
stream is off; ``word_dim`` = the query encoder's ``Ch``); the module's ``forward`` follows
``AAMNMatchingHead.forward``.
"""


def build_matching_head(cfg, rgb_shape, flow_shape, word_dim: int) -> nn.Module:
    return MATCHING_HEAD_REGISTRY.get(cfg.MODEL.AAMN.MATCHING_HEAD)(
        cfg, rgb_shape, flow_shape, word_dim
    )


@MATCHING_HEAD_REGISTRY.register()
class AAMNMatchingHead(nn.Module):
    """Stream RoI heads, linking, aggregation, word attention and the actor / action scoring."""

    @configurable
    def __init__(
        self,
        *,
        rgb_head: Optional[StreamRoIHead],
        flow_head: Optional[StreamRoIHead],
        linker: TubeLinker,
        rgb_aggregation: Optional[TemporalAggregation],
        flow_aggregation: Optional[TemporalAggregation],
        word_attention: ActorActionAttention,
        actor_module: Optional[ActorModule] = None,
        action_module: Optional[ActionModule] = None,
        baseline_module: Optional[BaselineModule] = None,
        flow_matching: bool = True,
        motion_from_rgb: bool = False,
    ):
        """
        Args:
            rgb_head, flow_head: the per-stream RoI heads (None for a stream that is off).
            linker: Eq. (1).
            rgb_aggregation, flow_aggregation: Eq. (2) + FC + ReLU per stream (``v_0`` uses the
                appearance stream's).
            word_attention: Eq. (4-5).
            actor_module, action_module: Eq. (6) / Eq. (7-9); None disables one.
            baseline_module: Table IV's "Baseline Model" scoring (then both modules are None).
            flow_matching: the matching uses the Flow features ``f`` (else the Flow stream only
                feeds the mask head).
            motion_from_rgb: without the Flow stream, the action module fuses the RGB tube feature
                in place of ``f`` (the paper's "w/o Flow Stream" row).
        """
        super().__init__()
        # Visual side (Sec. III-A): per stream, RoI head and Eq. (2); Eq. (1) across streams.
        self.rgb_head, self.rgb_aggregation = rgb_head, rgb_aggregation
        self.flow_head, self.flow_aggregation = flow_head, flow_aggregation
        self.linker = linker
        # Language side (Eq. 4-5) and scoring (Eq. 6-9, or the baseline's single score).
        self.word_attention = word_attention
        self.actor_module, self.action_module, self.baseline_module = (
            actor_module,
            action_module,
            baseline_module,
        )
        self.use_rgb, self.use_flow = rgb_head is not None, flow_head is not None
        self.flow_matching = flow_matching and self.use_flow
        self.motion_from_rgb = motion_from_rgb and not self.use_flow

    @classmethod
    def from_config(cls, cfg, rgb_shape, flow_shape, word_dim: int):
        A = cfg.MODEL.AAMN
        baseline = A.MATCHING == "baseline"
        flow_matching = flow_shape is not None and flow_features_used(cfg)
        rgb_head = StreamRoIHead(cfg, rgb_shape) if rgb_shape is not None else None
        flow_head = (
            StreamRoIHead(cfg, flow_shape, box_head=flow_matching)
            if flow_shape is not None
            else None
        )
        return {
            "rgb_head": rgb_head,
            "flow_head": flow_head,
            "flow_aggregation": TemporalAggregation(cfg) if flow_matching else None,
            "word_attention": ActorActionAttention(cfg, word_dim),
            "linker": TubeLinker(cfg),
            "rgb_aggregation": TemporalAggregation(cfg) if rgb_head is not None else None,
            "actor_module": ActorModule(cfg) if not baseline and A.USE_ACTOR_MODULE else None,
            "action_module": ActionModule(cfg) if not baseline and A.USE_ACTION_MODULE else None,
            "baseline_module": BaselineModule(cfg) if baseline else None,
            "flow_matching": flow_matching,
            "motion_from_rgb": A.NO_FLOW_MOTION_FEATURE == "rgb",
        }

    @property
    def mask_channels(self) -> int:
        """Channels of one stream's 14x14 RoI maps (the mask head's input per stream)."""
        return (self.rgb_head or self.flow_head).channels

    def pool_mask_features(
        self,
        rgb_features,
        flow_features,
        frame_index: torch.Tensor,
        rois: torch.Tensor,
        num_frames: int,
        streams: Tuple[bool, bool],
    ):
        """The 14x14 maps ``(N, C, 14, 14)`` of each stream the mask head uses (``streams``:
        ``(rgb, flow)``; None for the other): RoI ``n`` (``rois (N, 4)``) in frame
        ``frame_index[n]`` (non-decreasing) of the ``num_frames`` stacked ``B*T`` frames."""
        if len(frame_index) > 1 and bool((frame_index[1:] < frame_index[:-1]).any()):
            raise ValueError("mask RoIs must come in frame order")
        counts = torch.bincount(frame_index, minlength=num_frames).tolist()
        boxes = [Boxes(b) for b in torch.split(rois, counts)]
        rgb = self.rgb_head.pool_mask_features(rgb_features, boxes) if streams[0] else None
        flow = self.flow_head.pool_mask_features(flow_features, boxes) if streams[1] else None
        return rgb, flow

    def forward(
        self,
        rgb_features: Optional[Dict[str, torch.Tensor]],
        flow_features: Optional[Dict[str, torch.Tensor]],
        boxes: torch.Tensor,
        image_sizes: torch.Tensor,
        lang: Dict[str, torch.Tensor],
        mask_rois: Optional[Tuple[torch.Tensor, torch.Tensor, Tuple[bool, bool]]] = None,
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            rgb_features, flow_features: the streams' backbone outputs for the ``B*T`` frames
                (None for a stream that is off).
            boxes: ``(B, T, K, 4)`` proposals (after the training substitution of the GT box).
            image_sizes: ``(B, 2)`` (h, w) of the augmented frames.
            lang: the query encoder's dict (``aamn.modeling.language``) for the ``B`` queries.
            mask_rois: ``(frame_index (N,), rois (N, 4), streams)`` of RoIs known before the
                scores (training: the targets'): their maps are pooled too
                (``pool_mask_features``).

        Returns:
            dict with ``scores`` ``(B, B, K)`` (``[b, q, k]``: tube ``k`` of clip ``b`` with query
            ``q``), ``tubes`` ``(B, K, T)``, ``attention`` (``q_actor``, ``q_action``,
            ``attn_actor``, ``attn_action``), ``context_weights`` ``(B, K, K)`` or None, and with
            ``mask_rois`` the pair ``mask_features`` (RGB, Flow maps).
        """
        B, T, K, _ = boxes.shape
        key = T // 2
        attention = self.word_attention(lang)  # Eq. (4)-(5)
        full = torch.zeros((B, T, 1, 4), device=boxes.device)
        full[..., 2] = image_sizes[:, None, None, 1]
        full[..., 3] = image_sizes[:, None, None, 0]
        with_full = [Boxes(b) for b in torch.cat([boxes, full], dim=2).view(B * T, K + 1, 4)]
        v = f = None
        if self.use_rgb:
            v_all = self.rgb_head(rgb_features, with_full).view(B, T, K + 1, -1)
            v, v0_frames = v_all[:, :, :K], v_all[:, :, K]  # (B, T, K, Cv), (B, T, Cv)
        if self.flow_matching:
            if self.use_rgb:
                f = self.flow_head(flow_features, [Boxes(b) for b in boxes.view(B * T, K, 4)]).view(
                    B, T, K, -1
                )
            else:
                f_all = self.flow_head(flow_features, with_full).view(B, T, K + 1, -1)
                f, v0_frames = f_all[:, :, :K], f_all[:, :, K]

        tubes = self.linker(boxes, v, f, key)  # Eq. (1): (B, K, T)
        f_tubes = (
            self.flow_aggregation(gather_tubes(f, tubes), key) if self.flow_matching else None
        )  # Eq. (2)
        if self.use_rgb:
            v_tubes = self.rgb_aggregation(gather_tubes(v, tubes), key)
            v0 = self.rgb_aggregation(v0_frames, key)
        else:  # "w/o RGB Stream": f_k stands in for v_k
            v_tubes = f_tubes
            v0 = self.flow_aggregation(v0_frames, key)
        key_boxes = boxes[:, key]  # (B, K, 4)

        scores = 0.0
        context_weights = None
        if self.baseline_module is not None:
            streams = [t for t in ((v_tubes if self.use_rgb else None), f_tubes) if t is not None]
            scores = self.baseline_module(streams, attention["q_actor"])
        if self.actor_module is not None:
            scores = scores + self.actor_module(
                v_tubes, key_boxes, image_sizes, attention["q_actor"], f_tubes
            )
        if self.action_module is not None:
            motion = f_tubes if self.use_flow else (v_tubes if self.motion_from_rgb else None)
            v_action, context_weights = self.action_module.visual_features(
                v_tubes, v0, motion, key_boxes
            )
            scores = scores + self.action_module.head(v_action, attention["q_action"])
        out = {
            "scores": scores,
            "tubes": tubes,
            "attention": attention,
            "context_weights": context_weights,
        }
        if mask_rois is not None:
            frame_index, rois, streams = mask_rois
            out["mask_features"] = self.pool_mask_features(
                rgb_features, flow_features, frame_index, rois, B * T, streams
            )
        return out
