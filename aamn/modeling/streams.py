"""The two-stream parts every referring-video model of the project shares.

* ``build_stream_backbones(cfg, rgb, flow)``: the RGB backbone (``MODEL.BACKBONE``, 3 channels)
  and the Flow backbone (the same type, separate weights, ``len(MODEL.FLOW_PIXEL_MEAN)`` input
  channels: x, y, magnitude).
* ``TwoStreamModel``: the base class of the meta-architectures.  It holds the pixel statistics
  (``MODEL.PIXEL_MEAN/STD`` for RGB in ``INPUT.FORMAT`` order, ``MODEL.FLOW_PIXEL_MEAN/STD`` for
  flow), checks the clip inputs of ``ClipDatasetMapper`` and normalises them in the two layouts the
  models need:

  - ``frames``: one ``ImageList`` of the ``B*T`` frames of a batch (frame ``t`` of clip ``b`` at
    ``b*T + t``), padded to the backbone's ``size_divisibility`` (per-frame backbones, RoI heads);
  - ``clips``: ``(B, T, C, H, W)`` (the same padding), for encoders that see time.

Parameter names: a subclass stores its backbones as ``backbone`` and ``flow_backbone``, as
detectron2's ``GeneralizedRCNN`` does, so that a detectron2 checkpoint loads into the RGB stream and
``StreamCheckpointer`` fills the Flow stream from the same file.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances

__all__ = [
    "STREAM_INPUT_KEYS",
    "TwoStreamModel",
    "build_stream_backbones",
    "prediction_instance",
    "shared_clips",
]

# The input key of each stream in a ClipDatasetMapper dict.
STREAM_INPUT_KEYS = {"rgb": "image", "flow": "flow"}


def build_stream_backbones(
    cfg, rgb: bool = True, flow: bool = True
) -> Tuple[Optional[Backbone], Optional[Backbone]]:
    """``(backbone, flow_backbone)`` of ``MODEL.BACKBONE.NAME``; None for a stream that is off."""
    backbone = build_backbone(cfg) if rgb else None
    flow_backbone = (
        build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.FLOW_PIXEL_MEAN))) if flow else None
    )
    return backbone, flow_backbone


def shared_clips(batched_inputs: List[Dict], key: str = "image") -> Tuple[List[int], List[int]]:
    """Inputs that hold the same clip tensor object under ``key`` (several queries on one clip, as
    ``aamn.engine.VideoPredictor`` batches them): ``owner[b]``, the number of input ``b``'s clip
    among the distinct ones, and ``firsts``, the input holding each distinct clip first."""
    first: Dict[int, int] = {}
    owner = [first.setdefault(id(x[key]), len(first)) for x in batched_inputs]
    firsts = [owner.index(u) for u in range(len(first))]
    return owner, firsts


def prediction_instance(mask: torch.Tensor, box: torch.Tensor, score: torch.Tensor) -> Instances:
    """The output ``Instances`` of one frame, as every model of the project returns it (and the
    evaluator scores it): ``pred_masks (1, H, W)`` bool, ``pred_boxes`` ``(1, 4)``, ``scores``
    ``(1,)``, ``pred_classes`` 0 (the models are class-agnostic).

    Args:
        mask: bool ``(1, H, W)`` at the original frame size; box: ``(1, 4)``; score: a scalar.
    """
    inst = Instances(tuple(mask.shape[-2:]))
    inst.pred_masks = mask
    inst.pred_boxes = Boxes(box)
    inst.scores = score.reshape(1)
    inst.pred_classes = torch.zeros(1, dtype=torch.long, device=mask.device)
    return inst


class TwoStreamModel(nn.Module):
    """Base class: pixel statistics, input checks and clip normalisation of the two streams."""

    # The model reads queries: its vocabulary is resolved before it is built
    # (aamn.modeling.vocabulary.resolve_vocabulary).
    reads_queries = True

    # True for a model whose output segments every frame of its clip (``clip_instances``), so
    # whole-video inference steps clip by clip; False: it predicts the key frame alone.
    segments_whole_clip = False

    def __init__(
        self,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        flow_pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        flow_pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        init_flow_from_rgb: bool = True,
        fixed_size: int = 0,
    ):
        """
        Args:
            pixel_mean, pixel_std: RGB normalisation (``INPUT.FORMAT`` channel order).
            flow_pixel_mean, flow_pixel_std: flow normalisation (x, y, magnitude, in pixels).
            init_flow_from_rgb: read by ``StreamCheckpointer``: initialise the Flow backbone from
                the RGB backbone weights of a checkpoint that has no Flow weights.
            fixed_size: ``INPUT.FIXED_SIZE``: pad every frame to this square (0: to the batch's
                largest frame).
        """
        super().__init__()
        self.init_flow_from_rgb = init_flow_from_rgb
        self.fixed_size = int(fixed_size)
        self.register_buffer("pixel_mean", torch.tensor(list(pixel_mean)).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(list(pixel_std)).view(-1, 1, 1), False)
        self.register_buffer(
            "flow_pixel_mean", torch.tensor(list(flow_pixel_mean)).view(-1, 1, 1), False
        )
        self.register_buffer(
            "flow_pixel_std", torch.tensor(list(flow_pixel_std)).view(-1, 1, 1), False
        )

    @staticmethod
    def stream_args_from_config(cfg) -> Dict:
        """The constructor arguments of this class, from the config."""
        return {
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "flow_pixel_mean": list(cfg.MODEL.FLOW_PIXEL_MEAN),
            "flow_pixel_std": list(cfg.MODEL.FLOW_PIXEL_STD),
            "init_flow_from_rgb": cfg.MODEL.INIT_FLOW_FROM_RGB,
            "fixed_size": cfg.INPUT.FIXED_SIZE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def check_clips(self, batched_inputs: List[Dict], use_flow: bool) -> int:
        """Check the clips of a batch and return their length ``T`` (odd: ``2L+1``).

        Every ``image`` must be ``(T, 3, h, w)`` with one ``T`` per batch; with ``use_flow`` every
        input needs a ``flow`` of the same shape.
        """
        if len(batched_inputs) == 0:
            raise ValueError(f"{type(self).__name__} got an empty batch")
        T = None
        for i, x in enumerate(batched_inputs):
            image = x["image"]
            if image.dim() != 4 or image.shape[1] != 3:
                raise ValueError(
                    f"input {i}: 'image' must be (T, 3, h, w), got {tuple(image.shape)}"
                )
            if T is None:
                T = image.shape[0]
            elif image.shape[0] != T:
                raise ValueError(
                    f"input {i}: clips of one batch must have the same length ({image.shape[0]} != "
                    f"{T})"
                )
            if use_flow:
                if "flow" not in x:
                    raise ValueError(
                        f"input {i} has no 'flow' but the model uses the Flow stream "
                        "(INPUT.FLOW.ENABLED must be True)"
                    )
                if tuple(x["flow"].shape) != tuple(image.shape):
                    raise ValueError(
                        f"input {i}: 'flow' {tuple(x['flow'].shape)} != 'image' "
                        f"{tuple(image.shape)}"
                    )
        if T % 2 != 1:
            raise ValueError(f"A clip must have 2L+1 frames (odd), got {T}")
        return T

    @staticmethod
    def check_proposals(batched_inputs: List[Dict], T: int, num_proposals: int) -> None:
        """Every input must carry ``proposal_boxes`` ``(T, num_proposals, 4)``."""
        for i, x in enumerate(batched_inputs):
            boxes = x.get("proposal_boxes")
            if boxes is None:
                raise ValueError(
                    f"input {i} has no 'proposal_boxes' (INPUT.CLIP.LOAD_PROPOSALS must be True)"
                )
            if boxes.dim() != 3 or boxes.shape[0] != T or boxes.shape[2] != 4:
                raise ValueError(
                    f"input {i}: 'proposal_boxes' must be (T={T}, K, 4), got {tuple(boxes.shape)}"
                )
            if boxes.shape[1] != num_proposals:
                raise ValueError(
                    f"input {i}: {boxes.shape[1]} proposals per frame, but "
                    f"INPUT.CLIP.NUM_PROPOSALS = {num_proposals}"
                )

    def _statistics(self, stream: str):
        if stream == "rgb":
            return self.pixel_mean, self.pixel_std
        if stream == "flow":
            return self.flow_pixel_mean, self.flow_pixel_std
        raise ValueError(f"Unknown stream {stream!r}; choose 'rgb' or 'flow'")

    def normalize_frames(
        self, batched_inputs: List[Dict], stream: str, size_divisibility: int = 0
    ) -> ImageList:
        """The normalised ``B*T`` frames of one stream as an ``ImageList`` (clip-major order)."""
        mean, std = self._statistics(stream)
        key = STREAM_INPUT_KEYS[stream]
        frames = [
            (frame.to(self.device, non_blocking=True).float() - mean) / std
            for x in batched_inputs
            for frame in x[key]
        ]
        if self.fixed_size:  # INPUT.FIXED_SIZE: every frame padded to the square
            s = self.fixed_size
            large = [tuple(f.shape[-2:]) for f in frames if f.shape[-2] > s or f.shape[-1] > s]
            if large:
                raise ValueError(f"A frame of {large[0]} exceeds INPUT.FIXED_SIZE {s}")
            frames = [F.pad(f, (0, s - f.shape[-1], 0, s - f.shape[-2])) for f in frames]
        return ImageList.from_tensors(frames, size_divisibility)

    def stream_features(
        self,
        batched_inputs: List[Dict],
        stream: str,
        backbone: Backbone,
        size_divisibility: int = 0,
    ) -> Tuple[Dict[str, torch.Tensor], Tuple[int, int]]:
        """A stream's backbone features of the ``B*T`` frames (clip-major) and the padded
        ``(H, W)`` the backbone saw (padded to ``backbone.size_divisibility`` or, when larger,
        ``size_divisibility``).

        Inputs that hold the same clip tensor object (several queries on one clip, as
        ``aamn.engine.VideoPredictor`` batches them) go through the backbone once; their features
        are repeated, so the cost of a clip's queries beyond the first is the heads' alone.
        """
        key = STREAM_INPUT_KEYS[stream]
        owner, firsts = shared_clips(batched_inputs, key)
        unique = [batched_inputs[i] for i in firsts]
        divisibility = max(backbone.size_divisibility, size_divisibility)
        images = self.normalize_frames(unique, stream, divisibility)
        features = backbone(images.tensor)
        if len(unique) < len(batched_inputs):
            T = len(batched_inputs[0][key])
            rows = torch.tensor(
                [u * T + t for u in owner for t in range(T)], device=images.tensor.device
            )
            features = {name: f.index_select(0, rows) for name, f in features.items()}
        return features, tuple(images.tensor.shape[-2:])

    def normalize_clips(self, batched_inputs: List[Dict], stream: str, size_divisibility: int = 0):
        """The normalised clips of one stream as ``(B, T, C, H, W)`` (padded as
        ``normalize_frames``)
        and the ``(h, w)`` of each clip's frames before padding."""
        images = self.normalize_frames(batched_inputs, stream, size_divisibility)
        B = len(batched_inputs)
        clips = images.tensor.view(B, -1, *images.tensor.shape[1:])
        return clips, [tuple(x[STREAM_INPUT_KEYS[stream]].shape[-2:]) for x in batched_inputs]
