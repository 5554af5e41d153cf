"""The AAMN meta-architecture (Sec. III): localise the referred actor's tube, then segment it.

Per batch of B clips (``T = 2L+1`` frames, ``K`` proposals per frame):

1. RGB frames are normalised with ``MODEL.PIXEL_MEAN/STD`` (channel order ``INPUT.FORMAT``), flow
   frames with ``MODEL.AAMN.FLOW_PIXEL_MEAN/STD``; all ``B*T`` frames of a stream form one
   ``ImageList`` and go through that stream's backbone once.
2. Training only (Sec. III-E): when no key-frame proposal reaches ``MATCH_IOU_THRESHOLD`` IoU with
   the referred ground-truth box, the box replaces the lowest-scored key-frame proposal, before
   linking.  The matched tube is the one whose key-frame box overlaps the ground truth most.
3. One ``ROIPooler`` call per stream pools the ``B*T*K`` proposals (plus, for RGB -- for Flow
   without the RGB stream -- the ``B*T`` full-frame boxes of the whole-clip feature ``v_0``) and
   two FC layers give ``v`` / ``f`` ``(B, T, K, Cv)``.
4. Eq. (1) links the proposals into K tubes anchored at the key frame ``(B, K, T)``; Eq. (2)
   aggregates each tube (and ``v_0``) and FC + ReLU gives ``(B, K, Cv')``.
5. The language encoder (Eq. 3-5) gives ``q_actor``, ``q_action``; the actor module (Eq. 6) and
   the action module (Eq. 7-9) score every tube of every clip with every query of the batch:
   ``s = s_actor + s_action`` ``(B, B, K)`` (a disabled module contributes 0; the "Baseline
   Model" replaces both by one score, see the table below).
6. Training: ``loss_match`` (Eq. 12) and ``loss_mask`` = ``MASK_LOSS_WEIGHT`` x Eq. (11) on the
   matched tube's key-frame RoI (Eq. 10; ``MASK_HEAD.TRAIN_ROIS``).  Inference: the tube
   ``argmax_k s_k`` is selected, the mask head runs on its ``T`` boxes, and the masks are pasted
   into every frame at the original ``(height, width)``.

Choices where the paper is silent (config key where there is one):

* ``v_0`` pools the full augmented frame (one box per frame) with the RGB RoI head and goes through
  the same Eq. (2) aggregation and FC as the tubes (the paper: "aggregated in the same way").
* Linking with ``LINK_FEATURE = "both"`` measures the distance between the concatenated ``[v, f]``.
* The actor module's ``[v_k, l_k]`` concatenates the parts as they are, or with ``v_k`` (and
  ``f_k``) L2-normalised first (``ACTOR_FEATURE_NORM``), so that the 5-d location feature is not
  swamped by the tube feature (``aamn.modeling.actor_module``).
* The contextual LSTM orders the other tubes by ``(y1, x1)`` of their key-frame boxes; without its
  attention (``CONTEXT_ATTENTION``) ``v_c`` is the mean of the hidden states.
* The action module's fused width is ``FUSION_DIM``; without the Flow stream its motion input is
  the RGB tube feature or nothing (``NO_FLOW_MOTION_FEATURE``).
* Eq. (12): query negatives ``QUERY_NEGATIVES`` (never a query of the same actor or with the same
  words), reduction over the negatives ``MATCH_LOSS_REDUCTION``.
* The mask head is class-agnostic (one 28x28 logit map per box); its RoI can be the tube box grown
  by ``MASK_HEAD.BOX_EXPAND``, and it can train on every key-frame proposal that overlaps an
  annotated actor instead of the matched one alone (``MASK_HEAD.TRAIN_ROIS``,
  ``aamn.modeling.mask_head``).
* ``scores`` is ``sigmoid(s_k)`` of the selected tube.
* The Flow backbone starts from the RGB weights of a pretrained file (``INIT_FLOW_FROM_RGB``).
* When no part of the matching uses the Flow features ``f`` (Table IV "w/o Action Module",
  "(Action Module) w/o Optical Flow") the Flow stream only feeds the mask head: its RoI FC layers
  and its Eq. (2) FC are neither built nor run (``AAMN.flow_matching``), so that every parameter of
  such a model is trained.

Ablations (Table IV, "Ablation study on A2D Sentences").  Every row of the table is a config switch
of this one class; ``aamn.modeling.ablations.ABLATIONS`` holds each row's overrides (a
``[KEY, VALUE, ...]`` list for ``merge_from_list``), and ``check_ablation_config`` rejects
combinations that cannot be built or where a switch would do nothing, naming the keys.  Keys are
under ``MODEL.AAMN`` unless written in full:

====================================== ============================================ ===========================
Table IV row                           Overrides                                    What changes
====================================== ============================================ ===========================
Baseline Model                         ``MATCHING baseline``                        one Eq. (6) score of
                                                                                    ``[v_k, f_k]`` and the mean
                                                                                    word embedding (no modules)
AAMN w/o Actor Module                  ``USE_ACTOR_MODULE False``                   ``s = s_action``
AAMN w/o Action Module                 ``USE_ACTION_MODULE False``                  ``s = s_actor``
AAMN w/o Location Feature              ``USE_LOCATION False``                       ``v_actor = v_k``
AAMN w/o Contextual LSTM               ``CONTEXT_LSTM False``                       ``v~_k = v_k``
AAMN w/o Attention                     ``CONTEXT_ATTENTION False``                  ``v_c`` = mean of the states
AAMN w/o Gated Fusion                  ``GATED_FUSION False``                       Eq. (8) by concatenation
AAMN w/o Flow Stream                   ``USE_FLOW False``,                          RGB only; ``v_k`` stands in
                                       ``NO_FLOW_MOTION_FEATURE rgb``,              for ``f_k``
                                       ``INPUT.FLOW.ENABLED False``
AAMN w/o RGB Stream                    ``USE_RGB False``, ``LINK_FEATURE flow``     Flow only; ``f_k`` stands in
                                                                                    for ``v_k`` everywhere
AAMN (FCN) w/o Optical Flow            ``MASK_HEAD.USE_FLOW False``                 mask head on RGB maps only
AAMN (Action Module) w/o Optical Flow  ``ACTION_FEATURES rgb``                      ``v_action = W6 [v_k, v_c]``
AAMN (Action Module) w/o RGB           ``ACTION_FEATURES flow``                     ``v_action = W7 f_k``
AAMN (Actor Module) w/ Optical Flow    ``ACTOR_USES_FLOW True``                     ``v_actor = [v_k, f_k, l_k]``
AAMN (Full Model)                      (none)                                       the model above
====================================== ============================================ ===========================

Without the RGB stream (``USE_RGB False``) the Flow stream takes over every use of the RGB one: its
RoI head also pools the full frames for ``v_0`` (aggregated with the Flow Eq. (2) FC), its tube
features are ``v_k`` for the actor and action modules (and ``f_k`` for the action module's motion
side), linking uses ``f`` and the mask head the Flow 14x14 maps alone; there are no ``backbone.*``
parameters (``AAMNCheckpointer`` still fills ``flow_backbone.*`` from a detector's ``backbone.*``).
The "Baseline Model" keeps linking, the mask head and the losses, and replaces the language
encoder by ``MeanPoolingEncoder`` (its word attention outputs are the uniform weights ``1/N``).

Output (inference), one dict per input, as ``docs/interfaces.md``: ``instances`` (key frame) and
``clip_instances`` (T frames) with ``pred_masks (1, H, W)`` bool, ``pred_boxes``, ``scores`` = the
sigmoid of the selected tube's ``s_k`` (a ranking confidence in (0, 1)), ``pred_classes`` = 0 (the
model is class-agnostic); ``tube_boxes (T, 4)`` at the original size, ``tube_index``,
``tube_scores`` = the raw ``s_k`` of the K tubes, ``word_attention`` ``{"actor", "action"}`` over
the query's words.
"""
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou

from ..ablations import check_ablation_config
from ..action_module import ActionModule
from ..actor_module import ActorModule
from ..baseline_module import BaselineModule
from ..language import MeanPoolingEncoder, build_language_encoder
from ..losses import (
    MATCH_LOSS_REDUCTIONS,
    QUERY_NEGATIVE_MODES,
    joint_loss,
    mask_bce_loss,
    query_negative_mask,
    triplet_matching_loss,
)
from ..mask_head import (
    MASK_TRAIN_ROIS,
    AAMNMaskHead,
    expand_boxes,
    mask_targets,
    paste_masks,
    positive_mask_rois,
    scale_boxes,
)
from ..roi_heads import StreamRoIHead
from ..tube_linking import TemporalAggregation, TubeLinker, gather_tubes

__all__ = ["AAMN"]


@META_ARCH_REGISTRY.register()
class AAMN(nn.Module):
    """Actor and Action Modular Network.

    Parameter names: the RGB backbone is ``backbone.*`` (as in detectron2's ``GeneralizedRCNN``, so
    a detector checkpoint loads into it directly) and the Flow backbone ``flow_backbone.*``;
    ``aamn.modeling.AAMNCheckpointer`` initialises the latter from the same file.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Optional[Backbone],
        flow_backbone: Optional[Backbone],
        rgb_head: Optional[StreamRoIHead],
        flow_head: Optional[StreamRoIHead],
        language_encoder: nn.Module,
        linker: TubeLinker,
        rgb_aggregation: Optional[TemporalAggregation],
        flow_aggregation: Optional[TemporalAggregation],
        actor_module: Optional[ActorModule],
        action_module: Optional[ActionModule],
        mask_head: AAMNMaskHead,
        baseline_module: Optional[BaselineModule] = None,
        pixel_mean: List[float],
        pixel_std: List[float],
        flow_pixel_mean: List[float] = (0.0, 0.0, 0.0),
        flow_pixel_std: List[float] = (1.0, 1.0, 1.0),
        num_proposals: int = 6,
        match_iou_threshold: float = 0.5,
        match_margin: float = 0.1,
        query_negatives: str = "batch",
        match_loss_reduction: str = "mean",
        mask_loss_weight: float = 5.0,
        mask_threshold: float = 0.5,
        mask_box_expand: float = 1.0,
        mask_train_rois: str = "matched",
        motion_from_rgb: bool = False,
        init_flow_from_rgb: bool = True,
    ):
        """
        Args:
            backbone, flow_backbone: the two streams' backbones (``flow_backbone=None``: the
                RGB-only model, then ``flow_head`` and ``flow_aggregation`` are None too;
                ``backbone=None``: the Flow-only model, then ``rgb_head`` and ``rgb_aggregation``
                are None too).  At least one stream.
            rgb_head, flow_head: the per-stream RoI heads.
            language_encoder: e.g. ``BiLSTMAttentionEncoder`` (``MeanPoolingEncoder`` for the
                baseline).
            linker: Eq. (1).
            rgb_aggregation, flow_aggregation: Eq. (2) + FC + ReLU per stream (``v_0`` uses the
                RGB one, the Flow one without the RGB stream).
            actor_module, action_module: Eq. (6) / Eq. (7-9); None disables one (not both, unless
                ``baseline_module`` is given, which replaces both).
            mask_head: Sec. III-D.
            baseline_module: Table IV's "Baseline Model" scoring (then both modules are None).
            pixel_mean, pixel_std: RGB normalisation (``INPUT.FORMAT`` order).
            flow_pixel_mean, flow_pixel_std: flow normalisation (x, y, magnitude).
            num_proposals: ``K``; the inputs must carry exactly K proposals per frame.
            match_iou_threshold: GT substitution threshold (training).
            match_margin: Eq. (12) margin.
            query_negatives: ``"batch"``, ``"video"`` or ``"none"``.
            match_loss_reduction: ``"mean"`` or ``"sum"`` over the negatives (``losses``).
            mask_loss_weight: Eq. (10) lambda.
            mask_threshold: binarisation threshold of the pasted mask probabilities.
            mask_box_expand: the mask RoI is the tube box grown by this factor (``expand_boxes``).
            mask_train_rois: the RoIs of Eq. (11), "matched" (the matched tube's key-frame box)
                or "positive" (``positive_mask_rois``).
            motion_from_rgb: without the Flow stream, the action module fuses the RGB tube feature
                in place of ``f`` (the paper's "w/o Flow Stream" row).
            init_flow_from_rgb: read by ``AAMNCheckpointer``: initialise the Flow backbone from the
                RGB backbone weights of a checkpoint that has no Flow weights.
        """
        super().__init__()
        if baseline_module is not None:
            if actor_module is not None or action_module is not None:
                raise ValueError(
                    "The baseline scoring (MODEL.AAMN.MATCHING='baseline') replaces the actor and action modules"
                )
        elif actor_module is None and action_module is None:
            raise ValueError("At least one of the actor and action modules must be enabled")
        if query_negatives not in QUERY_NEGATIVE_MODES:
            raise ValueError(
                f"Unknown MODEL.AAMN.QUERY_NEGATIVES {query_negatives!r}; choose from {QUERY_NEGATIVE_MODES}"
            )
        self.use_rgb = backbone is not None
        self.use_flow = flow_backbone is not None
        if not (self.use_rgb or self.use_flow):
            raise ValueError("AAMN needs a stream: MODEL.AAMN.USE_RGB and MODEL.AAMN.USE_FLOW cannot both be False")
        if self.use_rgb and (rgb_head is None or rgb_aggregation is None):
            raise ValueError("The RGB stream needs rgb_head and rgb_aggregation")
        if self.use_flow and flow_head is None:
            raise ValueError("The Flow stream needs flow_head")
        # Whether the matching uses the Flow per-proposal / tube features f (otherwise the Flow
        # stream only feeds the mask head, and f is neither computed nor parameterised).
        self.flow_matching = self.use_flow and (
            not self.use_rgb
            or linker.needs_flow
            or baseline_module is not None
            or (action_module is not None and action_module.use_motion)
            or (actor_module is not None and actor_module.uses_motion)
        )
        if self.flow_matching and (flow_aggregation is None or not flow_head.has_box_head):
            raise ValueError(
                "The matching uses the Flow features f: the Flow stream needs flow_aggregation and a flow_head "
                "with its box head"
            )
        if not self.use_flow:
            if linker.needs_flow:
                raise ValueError(
                    f"MODEL.AAMN.LINK_FEATURE={linker.link_feature!r} needs the Flow stream, but "
                    "MODEL.AAMN.USE_FLOW is False"
                )
            if mask_head.use_flow:
                raise ValueError("The mask head fuses Flow features, but the Flow stream is off")
            if actor_module is not None and actor_module.uses_motion:
                raise ValueError(
                    "The actor module uses the motion feature (MODEL.AAMN.ACTOR_USES_FLOW) but the Flow stream is off"
                )
        if not self.use_rgb:
            if linker.needs_rgb:
                raise ValueError(
                    f"MODEL.AAMN.LINK_FEATURE={linker.link_feature!r} needs the RGB stream, but "
                    "MODEL.AAMN.USE_RGB is False"
                )
            if mask_head.use_rgb:
                raise ValueError("The mask head uses RGB features, but the RGB stream is off")
        if action_module is not None and action_module.use_motion and not (self.use_flow or motion_from_rgb):
            raise ValueError("The action module fuses a motion feature but there is no Flow stream")
        self.backbone = backbone
        self.flow_backbone = flow_backbone
        self.rgb_head = rgb_head
        self.flow_head = flow_head
        self.language = language_encoder
        self.linker = linker
        self.rgb_aggregation = rgb_aggregation
        self.flow_aggregation = flow_aggregation
        self.actor_module = actor_module
        self.action_module = action_module
        self.baseline_module = baseline_module
        self.mask_head = mask_head
        self.num_proposals = num_proposals
        self.match_iou_threshold = match_iou_threshold
        self.match_margin = match_margin
        self.query_negatives = query_negatives
        if match_loss_reduction not in MATCH_LOSS_REDUCTIONS:
            raise ValueError(
                f"Unknown MODEL.AAMN.MATCH_LOSS_REDUCTION {match_loss_reduction!r}; choose from {MATCH_LOSS_REDUCTIONS}"
            )
        self.match_loss_reduction = match_loss_reduction
        self.mask_loss_weight = mask_loss_weight
        self.mask_threshold = mask_threshold
        if mask_box_expand < 1.0:
            raise ValueError(f"MODEL.AAMN.MASK_HEAD.BOX_EXPAND must be >= 1, got {mask_box_expand}")
        self.mask_box_expand = mask_box_expand
        if mask_train_rois not in MASK_TRAIN_ROIS:
            raise ValueError(
                f"MODEL.AAMN.MASK_HEAD.TRAIN_ROIS must be one of {MASK_TRAIN_ROIS}, got {mask_train_rois!r}"
            )
        self.mask_train_rois = mask_train_rois
        self.motion_from_rgb = motion_from_rgb and not self.use_flow
        self.init_flow_from_rgb = init_flow_from_rgb
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_buffer("flow_pixel_mean", torch.tensor(flow_pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("flow_pixel_std", torch.tensor(flow_pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        A = cfg.MODEL.AAMN
        if len(A.IN_FEATURES) == 0:
            raise ValueError("MODEL.AAMN.IN_FEATURES is empty")
        check_ablation_config(cfg)  # every combination of the Table IV switches, with clear errors
        baseline = A.MATCHING == "baseline"
        modular = not baseline
        backbone = rgb_head = None
        if A.USE_RGB:
            backbone = build_backbone(cfg)
            rgb_head = StreamRoIHead(cfg, backbone.output_shape())
        flow_backbone = flow_head = flow_aggregation = None
        if A.USE_FLOW:
            flow_backbone = build_backbone(cfg, ShapeSpec(channels=len(A.FLOW_PIXEL_MEAN)))
            # The same rule as AAMN.flow_matching, from the config (the modules are built below).
            flow_matching = (
                not A.USE_RGB
                or A.LINK_FEATURE in ("flow", "both")
                or baseline
                or (A.USE_ACTION_MODULE and A.ACTION_FEATURES != "rgb")
                or (A.USE_ACTOR_MODULE and A.ACTOR_USES_FLOW)
            )
            flow_head = StreamRoIHead(cfg, flow_backbone.output_shape(), box_head=flow_matching)
            flow_aggregation = TemporalAggregation(cfg) if flow_matching else None
        return {
            "backbone": backbone,
            "flow_backbone": flow_backbone,
            "rgb_head": rgb_head,
            "flow_head": flow_head,
            "language_encoder": MeanPoolingEncoder(cfg) if baseline else build_language_encoder(cfg),
            "linker": TubeLinker(cfg),
            "rgb_aggregation": TemporalAggregation(cfg) if A.USE_RGB else None,
            "flow_aggregation": flow_aggregation,
            "actor_module": ActorModule(cfg) if modular and A.USE_ACTOR_MODULE else None,
            "action_module": ActionModule(cfg) if modular and A.USE_ACTION_MODULE else None,
            "baseline_module": BaselineModule(cfg) if baseline else None,
            "mask_head": AAMNMaskHead(cfg, in_channels=(rgb_head or flow_head).channels),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "flow_pixel_mean": list(A.FLOW_PIXEL_MEAN),
            "flow_pixel_std": list(A.FLOW_PIXEL_STD),
            "num_proposals": A.NUM_PROPOSALS,
            "match_iou_threshold": A.MATCH_IOU_THRESHOLD,
            "match_margin": A.MATCH_MARGIN,
            "query_negatives": A.QUERY_NEGATIVES,
            "match_loss_reduction": A.MATCH_LOSS_REDUCTION,
            "mask_loss_weight": A.MASK_LOSS_WEIGHT,
            "mask_threshold": A.MASK_THRESHOLD,
            "mask_box_expand": A.MASK_HEAD.BOX_EXPAND,
            "mask_train_rois": A.MASK_HEAD.TRAIN_ROIS,
            "motion_from_rgb": A.NO_FLOW_MOTION_FEATURE == "rgb",
            "init_flow_from_rgb": A.INIT_FLOW_FROM_RGB,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ input handling
    def _check_inputs(self, batched_inputs: List[Dict]):
        if len(batched_inputs) == 0:
            raise ValueError("AAMN got an empty batch")
        T = None
        for i, x in enumerate(batched_inputs):
            image = x["image"]
            if image.dim() != 4 or image.shape[1] != 3:
                raise ValueError(f"input {i}: 'image' must be (T, 3, h, w), got {tuple(image.shape)}")
            if T is None:
                T = image.shape[0]
            elif image.shape[0] != T:
                raise ValueError(f"input {i}: clips of one batch must have the same length ({image.shape[0]} != {T})")
            boxes = x["proposal_boxes"]
            if boxes.dim() != 3 or boxes.shape[0] != T or boxes.shape[2] != 4:
                raise ValueError(f"input {i}: 'proposal_boxes' must be (T={T}, K, 4), got {tuple(boxes.shape)}")
            if boxes.shape[1] != self.num_proposals:
                raise ValueError(
                    f"input {i}: {boxes.shape[1]} proposals per frame, but MODEL.AAMN.NUM_PROPOSALS = "
                    f"{self.num_proposals}"
                )
            if self.use_flow:
                if "flow" not in x:
                    raise ValueError(f"input {i} has no 'flow' but the Flow stream is on (MODEL.AAMN.USE_FLOW)")
                if tuple(x["flow"].shape) != tuple(image.shape):
                    raise ValueError(f"input {i}: 'flow' {tuple(x['flow'].shape)} != 'image' {tuple(image.shape)}")
        if T % 2 != 1:
            raise ValueError(f"A clip must have 2L+1 frames (odd), got {T}")
        return T

    def preprocess(self, batched_inputs: List[Dict]):
        """Normalised frames of all clips: ``ImageList`` of ``B*T`` RGB frames and of flow frames
        (None for a stream that is off)."""
        rgb = flow = None
        if self.use_rgb:
            rgb = [
                (frame.to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                for x in batched_inputs
                for frame in x["image"]
            ]
            rgb = ImageList.from_tensors(rgb, self.backbone.size_divisibility)
        if self.use_flow:
            flow = [
                (frame.to(self.device, non_blocking=True).float() - self.flow_pixel_mean) / self.flow_pixel_std
                for x in batched_inputs
                for frame in x["flow"]
            ]
            flow = ImageList.from_tensors(flow, self.flow_backbone.size_divisibility)
        return rgb, flow

    def substitute_ground_truth(self, batched_inputs: List[Dict], boxes: torch.Tensor, key: int):
        """Training: put the referred GT box into the key frame when no proposal overlaps it.

        Args:
            boxes: ``(B, T, K, 4)`` proposals (modified in place).
            key: the key-frame index ``L``.

        Returns:
            matched ``(B,)`` tube indices, substituted ``(B,)`` bool, the GT boxes ``(B, 4)``.
        """
        B = boxes.shape[0]
        gt = torch.stack([self._referred(x).gt_boxes.tensor[0].to(boxes) for x in batched_inputs])  # (B, 4)
        matched = torch.zeros(B, dtype=torch.long, device=boxes.device)
        substituted = torch.zeros(B, dtype=torch.bool, device=boxes.device)
        for b, x in enumerate(batched_inputs):
            iou = pairwise_iou(Boxes(boxes[b, key]), Boxes(gt[b : b + 1]))[:, 0]  # (K,)
            if iou.max() < self.match_iou_threshold:
                scores = x["proposal_scores"][key].to(boxes.device)
                lowest = int(torch.argmin(scores))
                boxes[b, key, lowest] = gt[b]
                substituted[b] = True
                iou = pairwise_iou(Boxes(boxes[b, key]), Boxes(gt[b : b + 1]))[:, 0]
            matched[b] = torch.argmax(iou)
        return matched, substituted, gt

    @staticmethod
    def _referred(x: Dict) -> Instances:
        instances = x["instances"]
        idx = int(x["referred_idx"])
        if not 0 <= idx < len(instances):
            raise ValueError(f"referred_idx {idx} outside the {len(instances)} key-frame instances")
        return instances[idx : idx + 1]

    # ------------------------------------------------------------------ shared forward
    def _match(self, batched_inputs: List[Dict], training: bool):
        T = self._check_inputs(batched_inputs)
        B, K, key = len(batched_inputs), self.num_proposals, T // 2
        boxes = torch.stack([x["proposal_boxes"].to(self.device).float() for x in batched_inputs])  # (B, T, K, 4)
        lang = self.language([x["query_tokens"] for x in batched_inputs])  # Eq. (3)-(5)
        matched = substituted = None
        if training:
            matched, substituted, _ = self.substitute_ground_truth(batched_inputs, boxes, key)

        rgb_images, flow_images = self.preprocess(batched_inputs)
        image_sizes = torch.tensor(
            [list(x["image"].shape[-2:]) for x in batched_inputs], device=self.device, dtype=torch.float32
        )  # (B, 2) (h, w) of the augmented frames
        rgb_features = self.backbone(rgb_images.tensor) if self.use_rgb else None
        flow_features = self.flow_backbone(flow_images.tensor) if self.use_flow else None

        # One pooling call per stream: K proposals per frame, plus the full frame for v_0 in the
        # appearance stream (RGB; Flow without the RGB stream).
        full = torch.zeros((B, T, 1, 4), device=self.device)
        full[..., 2] = image_sizes[:, None, None, 1]
        full[..., 3] = image_sizes[:, None, None, 0]
        with_full = [Boxes(b) for b in torch.cat([boxes, full], dim=2).view(B * T, K + 1, 4)]
        v = f = None
        if self.use_rgb:
            v_all = self.rgb_head(rgb_features, with_full).view(B, T, K + 1, -1)
            v, v0_frames = v_all[:, :, :K], v_all[:, :, K]  # (B, T, K, Cv), (B, T, Cv)
        if self.flow_matching:
            if self.use_rgb:
                f = self.flow_head(flow_features, [Boxes(b) for b in boxes.view(B * T, K, 4)]).view(B, T, K, -1)
            else:
                f_all = self.flow_head(flow_features, with_full).view(B, T, K + 1, -1)
                f, v0_frames = f_all[:, :, :K], f_all[:, :, K]

        tubes = self.linker(boxes, v, f, key)  # Eq. (1): (B, K, T)
        # Eq. (2): (B, K, Cv') per stream, v_0 (B, Cv') in the appearance stream.
        f_tubes = self.flow_aggregation(gather_tubes(f, tubes), key) if self.flow_matching else None
        if self.use_rgb:
            rgb_tubes = self.rgb_aggregation(gather_tubes(v, tubes), key)
            v0 = self.rgb_aggregation(v0_frames, key)
        else:
            rgb_tubes = None
            v0 = self.flow_aggregation(v0_frames, key)
        # The appearance feature of the modules: v_k, or f_k without the RGB stream ("w/o RGB Stream").
        v_tubes = rgb_tubes if self.use_rgb else f_tubes
        key_boxes = boxes[:, key]  # (B, K, 4)

        scores = 0.0
        context_weights = None
        if self.baseline_module is not None:
            # Table IV "Baseline Model": [v_k, f_k] against the mean word embedding, Eq. (6) form.
            streams = [t for t in (rgb_tubes, f_tubes) if t is not None]
            scores = self.baseline_module(streams, lang["q_actor"])
        if self.actor_module is not None:
            scores = scores + self.actor_module(v_tubes, key_boxes, image_sizes, lang["q_actor"], f_tubes)  # Eq. (6)
        if self.action_module is not None:
            motion = f_tubes if self.use_flow else (v_tubes if self.motion_from_rgb else None)
            v_action, context_weights = self.action_module.visual_features(v_tubes, v0, motion, key_boxes)
            scores = scores + self.action_module.head(v_action, lang["q_action"])  # Eq. (7)-(9)
        return {
            "T": T,
            "key": key,
            "boxes": boxes,
            "tubes": tubes,
            "scores": scores,  # (B, B, K)
            "lang": lang,
            "matched": matched,
            "substituted": substituted,
            "rgb_features": rgb_features,
            "flow_features": flow_features,
            "image_sizes": image_sizes,
            "context_weights": context_weights,
        }

    def _mask_training_rois(self, batched_inputs: List[Dict], out: Dict):
        """The RoIs of Eq. (11), per ``TRAIN_ROIS``: ``frame_index (N,)`` (non-decreasing, in the
        stacked ``B*T`` frames), ``boxes (N, 4)`` (grown by ``BOX_EXPAND``) and, per clip, the
        ``(BitMasks of its n_b target actors, their boxes (n_b, 4))``."""
        T, key, matched = out["T"], out["key"], out["matched"]
        frame_index, roi_boxes, clip_masks = [], [], []
        for b, x in enumerate(batched_inputs):
            instances = x["instances"]
            referred = int(x["referred_idx"])
            self._referred(x)  # checks referred_idx
            if self.mask_train_rois == "matched":
                proposals = matched[b : b + 1]
                actors = torch.tensor([referred])
            else:
                proposals, actors = positive_mask_rois(
                    out["boxes"][b, key],
                    instances.gt_boxes.tensor,
                    self.match_iou_threshold,
                    int(matched[b]),
                    referred,
                )
            boxes = expand_boxes(
                out["boxes"][b, key, proposals], self.mask_box_expand, out["image_sizes"][b].expand(len(proposals), 2)
            )
            frame_index.append(torch.full((len(proposals),), b * T + key, dtype=torch.long, device=boxes.device))
            roi_boxes.append(boxes)
            clip_masks.append((instances.gt_masks[actors.cpu()], boxes))
        return torch.cat(frame_index), torch.cat(roi_boxes), clip_masks

    def _mask_logits(self, rgb_features, flow_features, frame_index: torch.Tensor, boxes: torch.Tensor):
        """Mask logits ``(N, 28, 28)`` of ``boxes (N, 4)``, box ``n`` in frame ``frame_index[n]``
        (non-decreasing) of the stacked ``B*T`` frames."""
        num_frames = next(iter((rgb_features if self.use_rgb else flow_features).values())).shape[0]
        if len(frame_index) > 1 and bool((frame_index[1:] < frame_index[:-1]).any()):
            raise ValueError("mask RoIs must come in frame order")
        counts = torch.bincount(frame_index, minlength=num_frames).tolist()
        per_frame = torch.split(boxes, counts)
        box_list = [Boxes(b) for b in per_frame]
        rgb = self.rgb_head.pool_mask_features(rgb_features, box_list) if self.mask_head.use_rgb else None
        flow = self.flow_head.pool_mask_features(flow_features, box_list) if self.mask_head.use_flow else None
        return self.mask_head(rgb, flow)

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: B dicts of ``ClipDatasetMapper`` (``docs/interfaces.md``).

        Returns:
            training: ``{"loss_match", "loss_mask"}`` (Eq. 10, the mask loss already weighted);
            inference: one dict per input (see the module docstring).
        """
        if not self.training:
            return self.inference(batched_inputs)
        out = self._match(batched_inputs, training=True)
        scores, matched = out["scores"], out["matched"]

        # Eq. (12).
        negatives = query_negative_mask(
            [x.get("video_id") for x in batched_inputs],
            self.query_negatives,
            instance_ids=[x.get("instance_id") for x in batched_inputs],
            query_tokens=[x["query_tokens"] for x in batched_inputs],
            device=scores.device,
        )
        loss_match = triplet_matching_loss(scores, matched, negatives, self.match_margin, self.match_loss_reduction)

        # Eq. (11) on the matched tube's key-frame RoI (or every positive key-frame proposal).
        frame_index, roi_boxes, clip_masks = self._mask_training_rois(batched_inputs, out)
        logits = self._mask_logits(out["rgb_features"], out["flow_features"], frame_index, roi_boxes)
        targets = torch.cat([mask_targets(m, boxes, logits.shape[-1]) for m, boxes in clip_masks]).to(self.device)
        loss_seg = mask_bce_loss(logits, targets)

        self._log_training(scores, matched, out["substituted"])
        return joint_loss(loss_match, loss_seg, self.mask_loss_weight)  # Eq. (10)

    @staticmethod
    def _log_training(scores, matched, substituted):
        try:
            from detectron2.utils.events import get_event_storage

            storage = get_event_storage()
        except AssertionError:
            return
        ar = torch.arange(scores.shape[0], device=scores.device)
        accuracy = (scores[ar, ar].argmax(dim=1) == matched).float().mean()
        storage.put_scalar("aamn/match_accuracy", float(accuracy))
        storage.put_scalar("aamn/gt_substituted", float(substituted.float().mean()))

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Select the best tube of each clip and segment it in every frame (Sec. III-D)."""
        out = self._match(batched_inputs, training=False)
        B, T, key = len(batched_inputs), out["T"], out["key"]
        ar = torch.arange(B, device=self.device)
        own = out["scores"][ar, ar]  # (B, K): s_k with the clip's own query
        selected = own.argmax(dim=1)  # (B,)
        tube = out["tubes"][ar, selected]  # (B, T) proposal index per frame
        t_ar = torch.arange(T, device=self.device)
        tube_boxes = out["boxes"][ar[:, None], t_ar[None, :], tube]  # (B, T, 4)
        frame_index = (ar[:, None] * T + t_ar[None, :]).reshape(-1)
        mask_boxes = expand_boxes(
            tube_boxes.reshape(-1, 4), self.mask_box_expand, out["image_sizes"].repeat_interleave(T, dim=0)
        )  # (B*T, 4)
        logits = self._mask_logits(out["rgb_features"], out["flow_features"], frame_index, mask_boxes)
        mask_boxes = mask_boxes.view(B, T, 4)
        probs = logits.sigmoid().view(B, T, *logits.shape[-2:])

        results = []
        lang = out["lang"]
        for b, x in enumerate(batched_inputs):
            h, w = x["image"].shape[-2:]
            height, width = int(x.get("height", h)), int(x.get("width", w))
            masks, _ = paste_masks(probs[b], mask_boxes[b], (h, w), (height, width), threshold=self.mask_threshold)
            scaled = scale_boxes(tube_boxes[b], (h, w), (height, width))
            score = own[b, selected[b]].sigmoid()
            clip_instances = []
            for t in range(T):
                inst = Instances((height, width))
                inst.pred_masks = masks[t : t + 1]
                inst.pred_boxes = Boxes(scaled.tensor[t : t + 1])
                inst.scores = score.view(1)
                inst.pred_classes = torch.zeros(1, dtype=torch.long, device=self.device)
                clip_instances.append(inst)
            n = int(lang["lengths"][b])
            results.append(
                {
                    "instances": clip_instances[key],
                    "clip_instances": clip_instances,
                    "tube_boxes": scaled.tensor,
                    "tube_index": int(selected[b]),
                    "tube_scores": own[b],
                    "word_attention": {
                        "actor": lang["attn_actor"][b, :n],
                        "action": lang["attn_action"][b, :n],
                    },
                }
            )
        return results
