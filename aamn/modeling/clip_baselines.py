"""What the two comparison systems share: the clip encoder standing in for I3D, coordinate
features, the key frame's targets and the post-processing of a response map into the output that
the evaluator scores.

**The video encoder.**  Both papers encode the clip with a Kinetics-pretrained I3D (RGB and Flow),
cut before its last max-pool (Mixed_4f: 832 channels at stride 16 in space, 4 in time).  No I3D
weights can be had here, so the substitute is a detectron2 backbone applied to every frame
(``MODEL.BACKBONE``, feature ``MODEL.CLIP_ENCODER.IN_FEATURE`` at stride 16) followed by a temporal
block from ``CLIP_ENCODER_REGISTRY`` (``MODEL.CLIP_ENCODER.NAME``): by default one residual
``Conv3d(C, C, 3x3x3) + BN + ReLU`` over time (``TEMPORAL "conv3d"``; ``"none"`` keeps the frames
independent).  The backbones are the model's ``backbone`` / ``flow_backbone`` (so a detectron2
checkpoint fills them, ``StreamCheckpointer``); a user with a 3D network registers it as the clip
encoder (it receives the per-frame maps ``(B, T, C, h, w)``; an identity backbone passes frames).

**Coordinates** (Hu et al. 2016, used by both papers): 8 channels per cell ``(i, j)`` of an
``h x w`` map: ``x_min = 2j/w - 1``, ``x_max = 2(j+1)/w - 1``, ``y_min``, ``y_max`` alike, the
centre ``x_c``, ``y_c``, and ``1/w``, ``1/h``.

**Output.**  Both predict the key (middle) frame: the response map at the padded input size is
cropped to the augmented frame, resized bilinearly to the original ``(height, width)`` and
thresholded, ``THRESHOLD_MODE``: ``"fixed"`` (``sigmoid > THRESHOLD``) or ``"half_max"``
(``sigmoid > 0.5 max sigmoid`` over the frame: never empty).  The output ``Instances`` hold the
mask, the box around it (zeros when empty) and ``scores`` = the mean sigmoid inside the mask (0 when
empty; COCO mAP ranks by it).
"""

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.utils.registry import Registry

from ..utils.masks import mask_to_box
from .streams import TwoStreamModel, prediction_instance
from ..config import check_choice

__all__ = [
    "CLIP_ENCODER_REGISTRY",
    "ClipBaselineModel",
    "SentenceClipHead",
    "STREAM_FUSIONS",
    "THRESHOLD_MODES",
    "fuse_streams",
    "TemporalConv3d",
    "build_clip_encoder",
    "append_coords",
    "coord_features",
    "with_coords",
    "key_frame_targets",
    "downsample_targets",
    "masks_from_logits",
    "key_frame_outputs",
]

THRESHOLD_MODES = ("fixed", "half_max")
STREAM_FUSIONS = ("logits", "probs")


def fuse_streams(maps: Dict[str, torch.Tensor], weights: Dict[str, float], fusion: str):
    """The streams' response maps ``{stream: (B, H, W) logits}`` averaged with ``weights``:
    ``"logits"``, the weighted mean of the logits; ``"probs"``, the weighted mean of the
    probabilities (returned as its logit), where one confident stream cannot outweigh the other's
    probability by more than its weight."""
    total = sum(weights[s] for s in maps)
    if fusion == "logits":
        return sum(weights[s] * m for s, m in maps.items()) / total
    probs = sum(weights[s] * m.sigmoid() for s, m in maps.items()) / total
    return torch.logit(probs, eps=1e-6)


COORD_DIM = 8

CLIP_ENCODER_REGISTRY = Registry("CLIP_ENCODER")
CLIP_ENCODER_REGISTRY.__doc__ = """
Registry for the comparison systems' clip encoders (``MODEL.CLIP_ENCODER.NAME``).  Called with
``(cfg, channels)``; ``forward(x (B, T, C, h, w)) -> (B, T', C, h, w)``.
"""


def build_clip_encoder(cfg, channels: int) -> nn.Module:
    return CLIP_ENCODER_REGISTRY.get(cfg.MODEL.CLIP_ENCODER.NAME)(cfg, channels)


@CLIP_ENCODER_REGISTRY.register()
class TemporalConv3d(nn.Module):
    """``x + ReLU(BN(Conv3d(x)))`` over ``(T, h, w)`` (``TEMPORAL "conv3d"``) or the identity
    (``"none"``): ``(B, T, C, h, w) -> (B, T, C, h, w)``."""

    @configurable
    def __init__(self, *, channels: int, temporal: str = "conv3d"):
        super().__init__()
        if temporal not in ("conv3d", "none"):
            raise ValueError(
                f"MODEL.CLIP_ENCODER.TEMPORAL must be 'conv3d' or 'none', got {temporal!r}"
            )
        self.temporal = temporal
        if temporal == "conv3d":
            self.conv = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
            self.norm = nn.BatchNorm3d(channels)

    @classmethod
    def from_config(cls, cfg, channels: int):
        return {"channels": channels, "temporal": cfg.MODEL.CLIP_ENCODER.TEMPORAL}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal == "none":
            return x
        y = F.relu(self.norm(self.conv(x.transpose(1, 2)))).transpose(1, 2)
        return x + y


def coord_features(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The 8 coordinate channels of an ``h x w`` map: ``(8, h, w)`` (see the module docstring)."""
    j = torch.arange(w, device=device, dtype=dtype)
    i = torch.arange(h, device=device, dtype=dtype)
    x_min, x_max = 2 * j / w - 1, 2 * (j + 1) / w - 1
    y_min, y_max = 2 * i / h - 1, 2 * (i + 1) / h - 1
    xs = torch.stack([x_min, x_max, (x_min + x_max) / 2])[:, None, :].expand(3, h, w)
    ys = torch.stack([y_min, y_max, (y_min + y_max) / 2])[:, :, None].expand(3, h, w)
    size = torch.tensor([1.0 / w, 1.0 / h], device=device, dtype=dtype)[:, None, None].expand(
        2, h, w
    )
    return torch.cat([xs[:2], ys[:2], xs[2:], ys[2:], size])


def append_coords(x: torch.Tensor) -> torch.Tensor:
    """``[x, coords]``: ``(B, C, h, w) -> (B, C + 8, h, w)``."""
    B, _, h, w = x.shape
    return torch.cat([x, coord_features(h, w, x.device, x.dtype).expand(B, -1, -1, -1)], 1)


def with_coords(x: torch.Tensor) -> torch.Tensor:
    """``[L2(x), coords]``: each position's channel vector L2-normalised, then the 8 coordinate
    channels: ``(B, C, h, w) -> (B, C + 8, h, w)``."""
    return append_coords(F.normalize(x, dim=1))


def key_frame_targets(batched_inputs: Sequence[Dict], size, device) -> torch.Tensor:
    """The referred actor's key-frame masks on the padded canvas ``size (H, W)``: float
    ``(B, H, W)`` in {0, 1} (0 in the padding)."""
    out = torch.zeros((len(batched_inputs), *size), device=device)
    for b, x in enumerate(batched_inputs):
        m = x["instances"].gt_masks.tensor[int(x["referred_idx"])]
        out[b, : m.shape[0], : m.shape[1]] = m.to(device=device, dtype=out.dtype)
    return out


def downsample_targets(targets: torch.Tensor, size) -> torch.Tensor:
    """Targets at a coarser resolution: the share of each cell covered by the mask (area
    averaging) ``>= 0.5``: ``(B, H, W) -> (B, h, w)`` in {0, 1}."""
    if tuple(targets.shape[-2:]) == tuple(size):
        return targets
    return (F.adaptive_avg_pool2d(targets[:, None], size)[:, 0] >= 0.5).to(targets.dtype)


def masks_from_logits(probs: torch.Tensor, mode: str, threshold: float = 0.5) -> torch.Tensor:
    """Binary masks of probability maps ``(N, H, W)``: ``"fixed"`` (``p > threshold``) or
    ``"half_max"`` (``p > 0.5 * max p`` of each map, CMDy's rule)."""
    if mode == "fixed":
        return probs > threshold
    if mode == "half_max":
        return probs > 0.5 * probs.flatten(1).max(dim=1).values[:, None, None]
    raise ValueError(f"Unknown THRESHOLD_MODE {mode!r}; choose from {THRESHOLD_MODES}")


def key_frame_outputs(
    logits: torch.Tensor,
    batched_inputs: Sequence[Dict],
    image_sizes: List,
    mode: str,
    threshold: float,
) -> List[Dict]:
    """One output dict per input from response maps at the padded input size.

    Args:
        logits: ``(B, H, W)`` the key frame's response (logits) on the padded canvas.
        image_sizes: ``(h, w)`` of each augmented frame (before padding).
        mode, threshold: see ``masks_from_logits``.

    Returns:
        ``[{"instances": Instances((height, width))}]`` with ``pred_masks (1, height, width)``,
        ``pred_boxes`` (the box around the mask), ``scores`` (mean probability inside the mask),
        ``pred_classes`` 0; and ``mask_probs`` float ``(height, width)``, the probability map the
        mask thresholds (``aamn.benchmark.margin`` ranks AAMN's tubes with it).
    """
    results = []
    for b, x in enumerate(batched_inputs):
        h, w = image_sizes[b]
        height, width = int(x.get("height", h)), int(x.get("width", w))
        crop = logits[b : b + 1, None, :h, :w]
        probs = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[
            :, 0
        ].sigmoid()
        mask = masks_from_logits(probs, mode, threshold)  # (1, H, W)
        inside = probs[mask]
        score = inside.mean() if inside.numel() else probs.new_zeros(())
        box = mask_to_box(mask[0].cpu().numpy(), empty=[0.0] * 4)
        instance = prediction_instance(mask, torch.tensor([box], device=mask.device), score)
        results.append({"instances": instance, "mask_probs": probs[0]})
    return results


class SentenceClipHead(nn.Module):
    """Base of one stream's head: its own query encoder (``MODEL.LANGUAGE.NAME``) and clip encoder
    (``MODEL.CLIP_ENCODER``); ``encode`` gives the clip maps and the sentence vector."""

    @configurable
    def __init__(self, *, language_encoder: nn.Module, clip_encoder: nn.Module):
        super().__init__()
        self.language = language_encoder
        self.clip_encoder = clip_encoder

    @classmethod
    def from_config(cls, cfg, in_channels: int):
        from .language import build_language_encoder

        return {
            "language_encoder": build_language_encoder(cfg),
            "clip_encoder": build_clip_encoder(cfg, in_channels),
        }

    def encode(self, X: torch.Tensor, query_tokens):
        """``X (B, T, C, h, w)`` -> (the clip encoder's ``(B, T', C, h, w)``,
        ``sentence (B, D_T)``)."""
        return self.clip_encoder(X), self.language(query_tokens)["sentence"]


class ClipBaselineModel(TwoStreamModel):
    """The meta-architecture both comparison systems share: per stream (``STREAMS``), the frames
    go through that stream's backbone (``backbone`` / ``flow_backbone``) and its head (its own
    query encoder, clip encoder and decoder: "each stream a full sub-model", Gavrilyuk et al.
    Sec. 5.1).  Training sums the streams' losses (``loss_seg``, or ``loss_seg_rgb`` /
    ``loss_seg_flow``); inference averages the streams' final response maps with
    ``STREAM_WEIGHTS`` and thresholds the key frame (``key_frame_outputs``).

    A head maps ``(X (B, T, C, h, w), query_tokens, canvas (H, W))`` to a list of response maps
    (logits, coarse to fine; the last at the canvas size) and has ``losses(maps, targets)``.  A
    subclass defines ``from_config`` (``args_with_heads`` with its config node and head class).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        flow_backbone,
        heads: Dict[str, nn.Module],
        stream_weights: Sequence[float],
        in_feature: str,
        threshold_mode: str,
        threshold: float = 0.5,
        stream_fusion: str = "logits",
        **stream_args,
    ):
        super().__init__(**stream_args)
        if set(heads) - {"rgb", "flow"} or not heads:
            raise ValueError(
                f"STREAMS must be a non-empty subset of ['rgb', 'flow'], got {sorted(heads)}"
            )
        check_choice("THRESHOLD_MODE", threshold_mode, THRESHOLD_MODES)
        check_choice("STREAM_FUSION", stream_fusion, STREAM_FUSIONS)
        self.stream_fusion = stream_fusion
        self.backbone, self.flow_backbone = backbone, flow_backbone
        self.streams = list(heads)
        self.heads = nn.ModuleDict(heads)
        self.stream_weights = dict(zip(["rgb", "flow"], stream_weights))
        self.in_feature = in_feature
        self.threshold_mode, self.threshold = threshold_mode, threshold

    @staticmethod
    def base_args_from_config(cfg, node) -> Dict:
        """The constructor arguments shared by both systems, from their config node ``node``
        (``MODEL.DYNAMIC_FILTER`` / ``MODEL.CMDY``); the heads are the caller's."""
        from .streams import build_stream_backbones

        streams = list(node.STREAMS)
        if not streams or set(streams) - {"rgb", "flow"}:
            raise ValueError(
                f"STREAMS must be a non-empty subset of ['rgb', 'flow'], got {streams}"
            )
        if "flow" in streams and not cfg.INPUT.FLOW.ENABLED:
            raise ValueError("The Flow stream (STREAMS has 'flow') needs INPUT.FLOW.ENABLED True")
        if len(node.STREAM_WEIGHTS) != 2:
            raise ValueError(
                "STREAM_WEIGHTS must give the RGB and Flow weights, got "
                f"{list(node.STREAM_WEIGHTS)}"
            )
        backbone, flow_backbone = build_stream_backbones(
            cfg, rgb="rgb" in streams, flow="flow" in streams
        )
        return {
            **TwoStreamModel.stream_args_from_config(cfg),
            "backbone": backbone,
            "flow_backbone": flow_backbone,
            "stream_weights": list(node.STREAM_WEIGHTS),
            "in_feature": cfg.MODEL.CLIP_ENCODER.IN_FEATURE,
            "threshold_mode": node.THRESHOLD_MODE,
            "threshold": node.THRESHOLD,
            "stream_fusion": node.STREAM_FUSION,
        }

    @classmethod
    def args_with_heads(cls, cfg, node, head_class) -> Dict:
        """``base_args_from_config`` plus one ``head_class(cfg, in_channels, in_stride)`` per
        stream."""
        args = cls.base_args_from_config(cfg, node)
        in_feature = args["in_feature"]
        heads = {}
        for stream, backbone in (("rgb", args["backbone"]), ("flow", args["flow_backbone"])):
            if backbone is None:
                continue
            shapes = backbone.output_shape()
            if in_feature not in shapes:
                raise ValueError(
                    f"MODEL.CLIP_ENCODER.IN_FEATURE {in_feature!r}: the backbone outputs "
                    f"{sorted(shapes)}"
                )
            heads[stream] = head_class(cfg, shapes[in_feature].channels, shapes[in_feature].stride)
        return {**args, "heads": heads}

    def _stream_maps(self, batched_inputs, stream: str):
        backbone = self.backbone if stream == "rgb" else self.flow_backbone
        # The canvas is a multiple of the feature stride, so the decoders' upsampling returns
        # to it exactly whatever the frame size.
        stride = backbone.output_shape()[self.in_feature].stride
        features, canvas = self.stream_features(batched_inputs, stream, backbone, stride)
        feats = features[self.in_feature]  # (B*T, C, h, w)
        X = feats.view(len(batched_inputs), -1, *feats.shape[1:])
        return self.heads[stream](X, [x["query_tokens"] for x in batched_inputs], canvas), canvas

    def forward(self, batched_inputs: List[Dict]):
        """Training: the loss dict; inference: one ``{"instances"}`` per input (the key frame)."""
        if not self.training:
            return self.inference(batched_inputs)
        self.check_clips(batched_inputs, use_flow="flow" in self.streams)
        losses = {}
        for s in self.streams:
            maps, canvas = self._stream_maps(batched_inputs, s)
            targets = key_frame_targets(batched_inputs, canvas, self.device)
            name = "loss_seg" if len(self.streams) == 1 else f"loss_seg_{s}"
            losses[name] = self.heads[s].losses(maps, targets)
        return losses

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """The streams' final maps, averaged with ``STREAM_WEIGHTS`` and thresholded."""
        self.check_clips(batched_inputs, use_flow="flow" in self.streams)
        outputs = {s: self._stream_maps(batched_inputs, s)[0][-1] for s in self.streams}
        logits = fuse_streams(outputs, self.stream_weights, self.stream_fusion)
        sizes = [tuple(x["image"].shape[-2:]) for x in batched_inputs]
        return key_frame_outputs(logits, batched_inputs, sizes, self.threshold_mode, self.threshold)
