"""The AAMN meta-architecture (Sec. III): localise the referred actor's tube, then segment it.

It orchestrates registry-built parts, as Mask2Former's ``MaskFormer`` does:

* the two streams' backbones (``aamn.modeling.streams``): all ``B*T`` frames of a stream, normalised
  by ``TwoStreamModel``, go through its backbone once;
* with ``MODEL.AAMN.SHARED_DETECTOR`` the proposal detector's RPN and box head
  (``proposal_generator``, ``roi_heads``, detectron2's names) on the RGB backbone's maps: at
  inference the model finds its own ``K`` proposals per frame (``own_proposals``), one backbone pass
  per frame for proposals and features (``aamn.modeling.shared_detector``);
* the query encoder (``MODEL.LANGUAGE.NAME``, Eq. 3);
* the matching head (``MODEL.AAMN.MATCHING_HEAD``, ``aamn.modeling.matching_head``): RoI features,
  linking (Eq. 1), aggregation (Eq. 2), word attention (Eq. 4-5), actor / action scoring (Eq. 6-9)
  ``s (B, B, K)``;
* the mask head (Sec. III-D, ``AAMNMaskHead``) on the 14x14 RoI maps of the streams;
* the criterion (``AAMNCriterion``): ground-truth substitution before linking, the mask RoIs and
  targets, Eq. (10)-(12).

Per batch of B clips (``T = 2L+1`` frames, ``K`` proposals per frame): training returns
``{"loss_match", "loss_mask"}``; inference selects the tube ``argmax_k s_k`` with the clip's own
query, runs the mask head on its ``T`` boxes (grown by ``MASK_HEAD.BOX_EXPAND``) and pastes the
masks into every frame at the original ``(height, width)``.

Output (inference), one dict per input, as ``docs/interfaces.md``: ``instances`` (key frame) and
``clip_instances`` (T frames) with ``pred_masks (1, H, W)`` bool, ``pred_boxes``, ``scores`` = the
sigmoid of the selected tube's ``s_k`` (a ranking confidence in (0, 1)), ``pred_classes`` = 0 (the
model is class-agnostic); ``tube_boxes (T, 4)`` at the original size, ``tube_index``,
``tube_scores`` = the raw ``s_k`` of the K tubes, ``all_tube_boxes (K, T, 4)`` (every tube, at the
original size), ``word_attention`` ``{"actor", "action"}`` over the query's words.  An input's
optional ``previous_box`` links the selection to the previous clip of a video, an optional
``tube_choice`` (int) imposes the tube to segment (``select_tubes``).

Every ablation of the paper is a config switch of this one class: Table IV's rows are listed, with
their overrides, in ``aamn.modeling.ablations`` (which also checks the switches together).
Parameter names: the RGB backbone is ``backbone.*`` and the Flow backbone ``flow_backbone.*``
(``StreamCheckpointer`` fills the latter from a detectron2 file); files that name the RoI heads,
aggregation and modules at the top level, or the word attention inside the language encoder, load
through ``checkpoint_renames``.
"""

from typing import Dict, List, Optional

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.structures import Boxes, pairwise_iou

from ...config import ConfigError
from ..ablations import check_ablation_config
from ..criterion import AAMNCriterion
from ..language import WordEmbeddingEncoder, build_language_encoder
from ..box_ops import paste_masks, scale_boxes
from ..mask_head import AAMNMaskHead
from ..matching_head import build_matching_head
from ..shared_detector import detect_proposals, sized_images
from ..streams import TwoStreamModel, build_stream_backbones, prediction_instance, shared_clips

__all__ = ["AAMN"]


def input_box(x: Dict, box, device) -> torch.Tensor:
    """A box ``(4,)`` XYXY at an input's original frame size (``height`` x ``width``) as ``(1, 4)``
    at its augmented frame's (``image``) size, on ``device``."""
    h, w = x["image"].shape[-2:]
    sx, sy = w / float(x.get("width", w)), h / float(x.get("height", h))
    box = torch.as_tensor(box, dtype=torch.float32, device=device).reshape(1, 4)
    return box * box.new_tensor([sx, sy, sx, sy])


@META_ARCH_REGISTRY.register()
class AAMN(TwoStreamModel):
    """Actor and Action Modular Network."""

    segments_whole_clip = True  # every frame of the clip from one pass (Sec. III-D)
    # The stream RoI heads whose two FC layers are Faster R-CNN VGG-16's fc6 / fc7 (Sec. IV-B):
    # a VGG-16 file in MODEL.WEIGHTS fills them (aamn.modeling.backbone.vgg).
    vgg16_box_heads = ("matching_head.rgb_head.", "matching_head.flow_head.")

    # A parameter-name prefix a file may use -> the model's (the RoI heads, aggregation and modules
    # at the top level; aamn.modeling.checkpoint_conversions.rename_prefixes).
    checkpoint_renames = {
        **{
            f"{p}.": f"matching_head.{p}."
            for p in (
                "rgb_head",
                "flow_head",
                "rgb_aggregation",
                "flow_aggregation",
                "actor_module",
                "action_module",
                "baseline_module",
            )
        },
        "language.actor_attention.": "matching_head.word_attention.actor_attention.",
        "language.action_attention.": "matching_head.word_attention.action_attention.",
    }

    @configurable
    def __init__(
        self,
        *,
        backbone: Optional[Backbone],
        flow_backbone: Optional[Backbone],
        language_encoder: torch.nn.Module,
        matching_head: torch.nn.Module,
        mask_head: AAMNMaskHead,
        criterion: AAMNCriterion,
        num_proposals: int = 6,
        mask_threshold: float = 0.5,
        link_weight: float = 0.0,
        tube_union_margin: float = -1.0,
        proposal_generator: Optional[torch.nn.Module] = None,
        roi_heads: Optional[torch.nn.Module] = None,
        train_backbone: bool = True,
        proposal_nms: float = 0.7,
        detector_loss_weight: float = 0.0,
        **stream_args,
    ):
        """
        Args:
            backbone, flow_backbone: the two streams' backbones (None for a stream that is off;
                at least one).
            language_encoder: a ``LANGUAGE_ENCODER_REGISTRY`` module.
            matching_head: a ``MATCHING_HEAD_REGISTRY`` module.
            mask_head: Sec. III-D.
            criterion: targets and losses.
            num_proposals: ``K``; the inputs must carry exactly K proposals per frame.
            mask_threshold: binarisation threshold of the pasted mask probabilities.
            link_weight: ``TEST.VIDEO.LINK_WEIGHT``, the weight of the IoU with an input's
                ``previous_box`` in the tube selection (``select_tubes``).
            tube_union_margin: ``MODEL.AAMN.TUBE_UNION_MARGIN``: when >= 0, the prediction is the
                union of the masks of the tubes scored within it of the selected one
                (``union_members``); negative: the selected tube alone.
            proposal_generator, roi_heads: the proposal detector's RPN and box head on
                ``backbone``'s maps (``MODEL.AAMN.SHARED_DETECTOR``): the model finds its own
                proposals at inference.  None: they come with the inputs.
            train_backbone: with the shared detector, False keeps ``backbone`` the detector's
                (frozen, BatchNorm statistics fixed).
            proposal_nms: the class-agnostic NMS of the shared detector's detections.
            detector_loss_weight: with ``train_backbone``, the weight of the detector's losses on
                the clips' key frames (its RPN and box head then train too); 0 keeps them fixed.
            stream_args: ``TwoStreamModel``'s (pixel statistics, ``init_flow_from_rgb``).
        """
        super().__init__(**stream_args)
        if backbone is None and flow_backbone is None:
            raise ValueError(
                "AAMN needs a stream: MODEL.AAMN.USE_RGB and MODEL.AAMN.USE_FLOW cannot both be "
                "False"
            )
        self.backbone, self.flow_backbone = backbone, flow_backbone
        self.use_rgb, self.use_flow = backbone is not None, flow_backbone is not None
        self.language = language_encoder
        self.matching_head, self.mask_head, self.criterion = matching_head, mask_head, criterion
        self.num_proposals = num_proposals
        self.mask_threshold = mask_threshold
        self.link_weight = link_weight
        self.tube_union_margin = tube_union_margin
        self.shared_detector = proposal_generator is not None
        if self.shared_detector != (roi_heads is not None):
            raise ValueError("The shared detector needs both its proposal_generator and roi_heads")
        if self.shared_detector:
            if backbone is None:
                raise ValueError("The shared detector runs on the RGB stream's backbone")
            self.proposal_generator, self.roi_heads = proposal_generator, roi_heads
            self.proposal_nms = float(proposal_nms)
            # The backbone stays the detector's unless train_backbone; the RPN and box head too,
            # unless they train with it (their own losses, detector_loss_weight).
            self.detector_loss_weight = float(detector_loss_weight) if train_backbone else 0.0
            heads = [] if self.detector_loss_weight > 0 else [proposal_generator, roi_heads]
            frozen = heads + ([] if train_backbone else [backbone])
            for module in frozen:
                module.requires_grad_(False)
            self.frozen_modules = frozen
            # Training starts from the detector's checkpoint (MODEL.WEIGHTS): these parameters
            # must all come from it (StreamCheckpointer).
            self.required_weights = (
                ("backbone.", "proposal_generator.", "roi_heads."),
                "MODEL.AAMN.SHARED_DETECTOR needs the proposal detector's trained checkpoint in "
                "MODEL.WEIGHTS (its backbone, RPN and box head)",
            )
        else:
            self.frozen_modules, self.detector_loss_weight = [], 0.0

    @classmethod
    def from_config(cls, cfg):
        A = cfg.MODEL.AAMN
        if len(A.IN_FEATURES) == 0:
            raise ConfigError("MODEL.AAMN.IN_FEATURES is empty")
        if not cfg.INPUT.CLIP.LOAD_PROPOSALS:
            raise ConfigError(
                "AAMN links proposals into tubes: INPUT.CLIP.LOAD_PROPOSALS must be True"
            )
        check_ablation_config(cfg)  # every combination of the ablation switches, with clear errors
        backbone, flow_backbone = build_stream_backbones(cfg, rgb=A.USE_RGB, flow=A.USE_FLOW)
        # Table IV's "Baseline Model" defines its language side: the word embeddings alone.
        language = (
            WordEmbeddingEncoder(cfg) if A.MATCHING == "baseline" else build_language_encoder(cfg)
        )
        shared = {}
        if A.SHARED_DETECTOR.ENABLED:
            shared = cls.shared_detector_from_config(cfg, backbone)
        matching_head = build_matching_head(
            cfg,
            backbone.output_shape() if backbone is not None else None,
            flow_backbone.output_shape() if flow_backbone is not None else None,
            language.word_dim,
        )
        return {
            **cls.stream_args_from_config(cfg),
            "backbone": backbone,
            "flow_backbone": flow_backbone,
            "language_encoder": language,
            "matching_head": matching_head,
            "mask_head": AAMNMaskHead(cfg, in_channels=matching_head.mask_channels),
            "criterion": AAMNCriterion(cfg),
            "num_proposals": cfg.INPUT.CLIP.NUM_PROPOSALS,
            "mask_threshold": A.MASK_THRESHOLD,
            "link_weight": cfg.TEST.VIDEO.LINK_WEIGHT,
            "tube_union_margin": A.TUBE_UNION_MARGIN,
            **shared,
        }

    @staticmethod
    def shared_detector_from_config(cfg, backbone) -> Dict:
        """The shared detector's constructor arguments: its RPN and box head (detectron2's
        builders, from this config's detector keys) on ``backbone``'s maps."""
        from detectron2.modeling import build_proposal_generator, build_roi_heads

        from ..shared_detector import PROPOSAL_SCORE_THRESH

        if backbone is None:
            raise ConfigError(
                "MODEL.AAMN.SHARED_DETECTOR runs the detector on the RGB stream's backbone: "
                "MODEL.AAMN.USE_RGB must be True"
            )
        if cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON:
            raise ConfigError(
                "MODEL.AAMN.SHARED_DETECTOR: the proposal detector is a box detector "
                "(MODEL.MASK_ON and MODEL.KEYPOINT_ON must be False)"
            )
        shape = backbone.output_shape()
        roi_heads = build_roi_heads(cfg, shape)
        roi_heads.box_predictor.test_score_thresh = PROPOSAL_SCORE_THRESH  # the top-k after NMS
        S = cfg.MODEL.AAMN.SHARED_DETECTOR
        return {
            "proposal_generator": build_proposal_generator(cfg, shape),
            "roi_heads": roi_heads,
            "train_backbone": S.TRAIN_BACKBONE,
            "proposal_nms": S.NMS_THRESH,
            "detector_loss_weight": S.DETECTOR_LOSS_WEIGHT,
        }

    def train(self, mode: bool = True):
        """``nn.Module.train``; the shared detector's frozen parts stay in eval mode (their
        BatchNorm statistics are the detector's)."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    def read_clips(self, batched_inputs: List[Dict]) -> Dict:
        """What the mapper gives, checked, and the streams' features: ``T``, ``boxes``
        ``(B, T, K, 4)`` proposals, ``image_sizes`` ``(B, 2)`` (h, w) of the augmented frames,
        ``rgb_features`` / ``flow_features`` (None for a stream that is off)."""
        T = self.check_clips(batched_inputs, use_flow=self.use_flow)
        own_proposals = self.shared_detector and not self.training
        if not own_proposals:
            self.check_proposals(batched_inputs, T, self.num_proposals)
        device = self.device
        clips = {
            "T": T,
            "boxes": None,
            "image_sizes": torch.tensor(
                [list(x["image"].shape[-2:]) for x in batched_inputs],
                device=device,
                dtype=torch.float32,
            ),
            "rgb_features": None,
            "flow_features": None,
        }
        if self.use_rgb:
            # (a frozen shared backbone's parameters need no gradient: no graph is kept)
            clips["rgb_features"], _ = self.stream_features(batched_inputs, "rgb", self.backbone)
        if own_proposals:
            clips["boxes"] = self.own_proposals(batched_inputs, clips["rgb_features"])
        else:
            clips["boxes"] = torch.stack(
                [x["proposal_boxes"].to(device).float() for x in batched_inputs]
            )
        if self.use_flow:
            clips["flow_features"], _ = self.stream_features(
                batched_inputs, "flow", self.flow_backbone
            )
        return clips

    def own_proposals(self, batched_inputs: List[Dict], features: Dict) -> torch.Tensor:
        """The shared detector's proposals ``(B, T, K, 4)`` of each clip (in its augmented frames'
        pixels), from the RGB stream's maps ``features`` (``B*T`` frames, clip-major).  Inputs
        holding the same clip tensor (several queries on one clip) are detected once."""
        owner, firsts = shared_clips(batched_inputs)
        T = batched_inputs[0]["image"].shape[0]
        rows = torch.tensor([b * T + t for b in firsts for t in range(T)], device=self.device)
        sizes = [tuple(batched_inputs[b]["image"].shape[-2:]) for b in firsts for _ in range(T)]
        boxes = detect_proposals(
            self.proposal_generator,
            self.roi_heads,
            {name: f.index_select(0, rows) for name, f in features.items()},
            sizes,
            self.num_proposals,
            self.proposal_nms,
        ).view(len(firsts), T, self.num_proposals, 4)
        return boxes[torch.tensor(owner, device=boxes.device)]

    def forward(self, batched_inputs: List[Dict]):
        """A straight line (training): the clips and their features, the queries (Eq. 3), the
        targets (the GT box substituted into a copy of the proposals, the mask RoIs), the
        matching head on the substituted proposals (Eq. 1-9, pooling the mask RoIs' maps too),
        the mask head, the criterion (Eq. 10-12).  The inputs are never modified.

        Args:
            batched_inputs: B dicts of ``ClipDatasetMapper`` (``docs/interfaces.md``).

        Returns:
            training: ``{"loss_match", "loss_mask"}`` (Eq. 10, the mask loss already weighted);
            inference: one dict per input (see the module docstring).
        """
        if not self.training:
            return self.inference(batched_inputs)
        clips = self.read_clips(batched_inputs)
        lang = self.language([x["query_tokens"] for x in batched_inputs])  # Eq. (3)
        targets = self.criterion.targets(batched_inputs, clips["boxes"])
        frame_index = targets["mask_frame_index"]
        rois = self.mask_head.rois(
            targets["mask_boxes"], clips["image_sizes"][frame_index // clips["T"]]
        )
        out = self.matching_head(
            clips["rgb_features"],
            clips["flow_features"],
            targets["boxes"],
            clips["image_sizes"],
            lang,
            mask_rois=(frame_index, rois, (self.mask_head.use_rgb, self.mask_head.use_flow)),
        )
        outputs = {
            "scores": out["scores"],
            "mask_logits": self.mask_head(*out["mask_features"]),
            "mask_rois": rois,
        }
        losses = self.criterion(outputs, targets)
        if self.detector_loss_weight > 0:
            losses.update(self.detector_losses(batched_inputs, clips))
        return losses

    def detector_losses(self, batched_inputs: List[Dict], clips: Dict) -> Dict:
        """The shared detector's training losses (detectron2's RPN and box head losses, weighted
        by ``detector_loss_weight``) on each clip's key frame and its annotated actors
        (``instances``: ``gt_boxes``, ``gt_classes``), from the fine-tuned RGB maps."""
        T = clips["T"]
        rows = torch.arange(len(batched_inputs), device=self.device) * T + T // 2
        features = {k: f.index_select(0, rows) for k, f in clips["rgb_features"].items()}
        images = sized_images([tuple(x["image"].shape[-2:]) for x in batched_inputs], features)
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        proposals, rpn_losses = self.proposal_generator(images, features, gt)
        _, box_losses = self.roi_heads(images, features, proposals, gt)
        w = self.detector_loss_weight
        # detectron2's "loss_rpn_cls", ... as "loss_detector_rpn_cls", ...
        return {
            "loss_detector_" + k[len("loss_") :]: w * v
            for k, v in {**rpn_losses, **box_losses}.items()
        }

    def select_tubes(
        self, batched_inputs: List[Dict], own: torch.Tensor, tube_boxes: torch.Tensor
    ) -> torch.Tensor:
        """The selected tube of each clip ``(B,)``: ``argmax_k s_k`` (Sec. III-D).

        An input with ``previous_box`` (float ``(4,)`` XYXY at the original frame size: the box of
        the tube selected in the previous clip of a video, in that clip's last frame) is linked to
        it: ``argmax_k [sigmoid(s_k) + LINK_WEIGHT * IoU(b_k, previous_box)]`` with ``b_k`` tube
        k's box in this clip's first frame (the next frame), as Eq. (1) links boxes of
        neighbouring frames.  An input with ``tube_choice`` (an int) gets that tube, chosen
        outside the model (another system's ranking of AAMN's tubes: ``aamn.benchmark.margin``).

        Args:
            own: ``(B, K)`` scores ``s_k`` with each clip's own query.
            tube_boxes: ``(B, K, T, 4)`` the tubes' boxes in every frame (augmented frame).
        """
        rank = own.clone()
        for b, x in enumerate(batched_inputs):
            previous = x.get("previous_box")
            if previous is None or self.link_weight == 0:
                continue
            iou = pairwise_iou(
                Boxes(tube_boxes[b, :, 0]), Boxes(input_box(x, previous, self.device))
            )[:, 0]
            rank[b] = own[b].sigmoid() + self.link_weight * iou  # (K,)
        selected = rank.argmax(dim=1)
        for b, x in enumerate(batched_inputs):
            if x.get("tube_choice") is not None:  # chosen outside the model
                k = int(x["tube_choice"])
                if not 0 <= k < own.shape[1]:
                    raise ValueError(f"tube_choice {k} of input {b}: the clip has {own.shape[1]}")
                selected[b] = k
        return selected

    def union_members(self, own: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """The tubes whose masks the prediction unites (``TUBE_UNION_MARGIN``): bool ``(B, K)``,
        tube k of clip b when ``s_k >= s_selected - margin``; the selected tube alone when the
        margin is negative.

        Args:
            own: ``(B, K)`` scores ``s_k`` with each clip's own query; selected: ``(B,)``.
        """
        ar = torch.arange(len(own), device=own.device)
        members = torch.zeros_like(own, dtype=torch.bool)
        members[ar, selected] = True
        if self.tube_union_margin >= 0:
            members |= own >= own[ar, selected][:, None] - self.tube_union_margin
        return members

    def match(self, batched_inputs: List[Dict], substitute_ground_truth: bool = False) -> Dict:
        """The clips (``read_clips``), the queries (``lang``) and the matching head's output:
        ``scores`` ``(B, B, K)``, ``tubes`` ``(B, K, T)``, ``attention``, ``context_weights``;
        ``boxes`` the proposals the tubes link, with the referred GT box substituted as in
        training when ``substitute_ground_truth`` (``criterion.targets``)."""
        clips = self.read_clips(batched_inputs)
        lang = self.language([x["query_tokens"] for x in batched_inputs])  # Eq. (3)
        if substitute_ground_truth:
            clips["boxes"] = self.criterion.targets(batched_inputs, clips["boxes"])["boxes"]
        out = self.matching_head(
            clips["rgb_features"],
            clips["flow_features"],
            clips["boxes"],
            clips["image_sizes"],
            lang,
        )
        return {**clips, **out, "lang": lang}

    def mask_logits(
        self, clips: Dict, frame_index: torch.Tensor, rois: torch.Tensor
    ) -> torch.Tensor:
        """Mask logits ``(N, 28, 28)`` of the mask RoIs ``rois (N, 4)``, RoI ``n`` in frame
        ``frame_index[n]`` (non-decreasing) of the stacked ``B*T`` frames of ``clips``
        (``read_clips``' features)."""
        return self.mask_head(
            *self.matching_head.pool_mask_features(
                clips["rgb_features"],
                clips["flow_features"],
                frame_index,
                rois,
                len(clips["boxes"]) * clips["T"],
                (self.mask_head.use_rgb, self.mask_head.use_flow),
            )
        )

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Select the best tube of each clip and segment it in every frame (Sec. III-D)."""
        out = self.match(batched_inputs)
        clips, lang = out, out["lang"]
        B, T = len(batched_inputs), clips["T"]
        ar = torch.arange(B, device=self.device)
        own = out["scores"][ar, ar]  # (B, K): s_k with the clip's own query
        t_ar = torch.arange(T, device=self.device)
        all_boxes = clips["boxes"][ar[:, None, None], t_ar, out["tubes"]]  # (B, K, T, 4)
        selected = self.select_tubes(batched_inputs, own, all_boxes)  # (B,)
        members = self.union_members(own, selected)  # (B, K)
        # the united tubes of each clip, the selected one first, padded with it (a repeat
        # changes no union): (B, U), U the most members of a clip (1 without the union)
        U = int(members.sum(dim=1).max())
        united = []
        for b, k in enumerate(selected.tolist()):
            row = [k] + [j for j in members[b].nonzero()[:, 0].tolist() if j != k]
            united.append(row + [k] * (U - len(row)))
        united = torch.tensor(united, dtype=torch.long, device=own.device)
        # their boxes in frame order (b, t, tube), as mask_logits wants them: (B, T, U, 4)
        tube_boxes = all_boxes[ar[:, None], united].permute(0, 2, 1, 3)  # (B, T, U, 4)
        frame_index = (ar[:, None] * T + t_ar[None, :]).reshape(-1).repeat_interleave(U)
        mask_boxes = self.mask_head.rois(
            tube_boxes.reshape(-1, 4), clips["image_sizes"].repeat_interleave(T * U, dim=0)
        )  # (B*T*U, 4)
        logits = self.mask_logits(clips, frame_index, mask_boxes)
        probs = logits.sigmoid().view(B, T, U, *logits.shape[-2:])
        mask_boxes = mask_boxes.view(B, T, U, 4)

        attention = out["attention"]
        results = []
        for b, x in enumerate(batched_inputs):
            h, w = x["image"].shape[-2:]
            height, width = int(x.get("height", h)), int(x.get("width", w))
            masks, _ = paste_masks(
                probs[b].flatten(0, 1),
                mask_boxes[b].reshape(-1, 4),
                (h, w),
                (height, width),
                threshold=self.mask_threshold,
            )
            masks = masks.view(T, U, height, width).any(dim=1)  # (T, H, W): the union
            scaled = scale_boxes(tube_boxes[b].reshape(-1, 4), (h, w), (height, width))
            corners = scaled.tensor.view(T, U, 4)  # the united tubes' box in each frame
            scaled = Boxes(torch.cat([corners[..., :2].min(dim=1).values,
                                      corners[..., 2:].max(dim=1).values], dim=1))  # fmt: skip
            every = scale_boxes(all_boxes[b].reshape(-1, 4), (h, w), (height, width))
            score = own[b, selected[b]].sigmoid()
            clip_instances = [
                prediction_instance(masks[t : t + 1], scaled.tensor[t : t + 1], score)
                for t in range(T)
            ]
            n = int(lang["lengths"][b])
            results.append(
                {
                    "instances": clip_instances[T // 2],
                    "clip_instances": clip_instances,
                    "tube_boxes": scaled.tensor,
                    "all_tube_boxes": every.tensor.view(*all_boxes.shape[1:]),
                    "tube_index": int(selected[b]),
                    "tube_scores": own[b],
                    "united_tubes": members[b].nonzero()[:, 0].tolist(),
                    "word_attention": {
                        "actor": attention["attn_actor"][b, :n],
                        "action": attention["attn_action"][b, :n],
                    },
                }
            )
        return results
