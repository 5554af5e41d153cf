"""VGG-16 as a detectron2 backbone: the feature extractor of Faster R-CNN VGG-16, the AAMN paper's
two streams (Sec. IV-B: "Faster R-CNN with VGG-16", Cv = 4096 is fc7's width).

``build_vgg16_backbone`` (``MODEL.BACKBONE.NAME``, ``BACKBONE_REGISTRY``): conv1_1 .. conv5_3 with
ReLU, max-pooling after blocks 1-4 and none after block 5, so ``conv5_3`` has stride 16 (as in
Faster R-CNN, which pools its RoIs from conv5_3).  Outputs, by ``MODEL.VGG.OUT_FEATURES``:
``conv1_2`` (stride 1), ``conv2_2`` (2), ``conv3_3`` (4), ``conv4_3`` (8), ``conv5_3`` (16).

``MODEL.VGG.WIDTH_SCALE`` scales every width (1.0: VGG-16's 64 .. 512; the synthetic configs'
small variant uses 1/8); ``MODEL.VGG.NORM`` adds a norm after each convolution (``""``: none, the
original; ``"BN"`` for the small variant trained from scratch); ``MODEL.BACKBONE.FREEZE_AT = k``
freezes blocks 1..k (2: conv1 and conv2, as Faster R-CNN VGG-16 trains it).

The fc6 / fc7 layers of VGG-16 are the two FC layers of AAMN's stream RoI heads
(``StreamRoIHead.fc1`` / ``fc2``, ``MODEL.AAMN.ROI_FC_DIM = 4096`` on 7 x 7 x 512 RoIs).
``vgg16_weights(state, ...)`` maps a VGG-16 weight file to the parameter names of a model:
torchvision's ``vgg16`` state dict (``features.N.*``, ``classifier.0/3.*``), a Caffe / Detectron
conversion (``conv1_1_w`` .. ``fc7_b``) or a detectron2 Faster R-CNN VGG-16 checkpoint
(``backbone.conv1_1.weight`` .., ``roi_heads.box_head.fc1/fc2.*``); ``StreamCheckpointer`` applies
it to every such file given as ``MODEL.WEIGHTS``, filling both streams and their fc6 / fc7.
"""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["VGG16", "build_vgg16_backbone", "vgg16_weights", "is_vgg16_file", "VGG16_BLOCKS"]

# (block, convolutions, width) of VGG-16; the block's last convolution names its output.
VGG16_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
# torchvision's vgg16().features index of each convolution, in order.
_TORCHVISION_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _conv_names() -> List[str]:
    return [f"conv{b}_{i}" for b, n, _ in VGG16_BLOCKS for i in range(1, n + 1)]


class VGG16(Backbone):
    """VGG-16 conv1_1 .. conv5_3 (see the module docstring)."""

    def __init__(
        self,
        in_channels: int = 3,
        width_scale: float = 1.0,
        norm: str = "",
        freeze_at: int = 0,
        out_features: Sequence[str] = ("conv5_3",),
    ):
        super().__init__()
        self._out_features = list(out_features)
        self._out_feature_strides, self._out_feature_channels = {}, {}
        self.blocks: List[List[str]] = []
        c, stride = in_channels, 1
        for block, n, width in VGG16_BLOCKS:
            width = max(1, int(round(width * width_scale)))
            names = []
            for i in range(1, n + 1):
                name = f"conv{block}_{i}"
                conv = Conv2d(
                    c,
                    width,
                    kernel_size=3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, width) if norm else None,
                )
                self.add_module(name, conv)
                names.append(name)
                c = width
            self.blocks.append(names)
            self._out_feature_strides[names[-1]] = stride
            self._out_feature_channels[names[-1]] = c
            if block < 5:
                stride *= 2
        unknown = set(self._out_features) - set(self._out_feature_strides)
        if unknown:
            raise ValueError(
                f"MODEL.VGG.OUT_FEATURES {sorted(unknown)}: VGG-16 outputs "
                f"{list(self._out_feature_strides)}"
            )
        for block in self.blocks[: max(0, int(freeze_at))]:
            for name in block:
                for p in getattr(self, name).parameters():
                    p.requires_grad = False

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(N, C, H, W)`` -> ``{name: (N, C_name, H / stride, W / stride)}``."""
        out = {}
        last = self._out_features and max(
            self._out_features, key=lambda n: self._out_feature_strides[n]
        )
        for b, names in enumerate(self.blocks):
            for name in names:
                x = F.relu(getattr(self, name)(x))
            if names[-1] in self._out_features:
                out[names[-1]] = x
            if names[-1] == last:
                break
            if b < 4:
                x = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        return out

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """VGG-16 of ``MODEL.VGG`` (``input_shape.channels``: 3 for RGB and for the Flow stream's x,
    y, magnitude)."""
    return VGG16(
        in_channels=input_shape.channels,
        width_scale=cfg.MODEL.VGG.WIDTH_SCALE,
        norm=cfg.MODEL.VGG.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        out_features=cfg.MODEL.VGG.OUT_FEATURES,
    )


def is_vgg16_file(weights: Dict) -> Optional[str]:
    """The kind of a VGG-16 weight dict: ``"torchvision"``, ``"caffe"`` or ``"detectron2"``
    (None for anything else)."""
    if "features.0.weight" in weights and "features.28.weight" in weights:
        return "torchvision"
    if "conv1_1_w" in weights and "conv5_3_w" in weights:
        return "caffe"
    # A Faster R-CNN's (a model of this project with a VGG-16 stream has no roi_heads)
    if "backbone.conv5_3.weight" in weights and "roi_heads.box_head.fc1.weight" in weights:
        return "detectron2"
    return None


def vgg16_weights(
    weights: Dict, backbone_prefix: str = "backbone.", box_heads: Sequence[str] = ()
) -> Dict:
    """A VGG-16 weight file's tensors under a model's parameter names.

    Args:
        weights: the file's dict (``is_vgg16_file`` kinds).
        backbone_prefix: where the model holds its VGG16 (``"backbone."``).
        box_heads: prefixes of the model's two-FC heads that take fc6 / fc7 as ``fc1`` / ``fc2``
            (AAMN: ``matching_head.rgb_head.``, ``matching_head.flow_head.``).

    Returns:
        ``{model name: tensor}`` (numpy arrays converted).

    Raises:
        ValueError: not a VGG-16 file.
    """
    kind = is_vgg16_file(weights)
    if kind is None:
        raise ValueError("Not a VGG-16 weight file (torchvision, Caffe or detectron2 names)")
    convs = _conv_names()
    if kind == "torchvision":
        src = {c: f"features.{i}" for c, i in zip(convs, _TORCHVISION_CONV_INDEX)}
        src.update(fc6="classifier.0", fc7="classifier.3")

        def get(layer, kind_):
            return weights.get(f"{src[layer]}.{kind_}")

    elif kind == "caffe":

        def get(layer, kind_):
            return weights.get(f"{layer}_{'w' if kind_ == 'weight' else 'b'}")

    else:
        src = {c: f"backbone.{c}" for c in convs}
        src.update(fc6="roi_heads.box_head.fc1", fc7="roi_heads.box_head.fc2")

        def get(layer, kind_):
            return weights.get(f"{src[layer]}.{kind_}")

    out = {}
    for c in convs:
        for kind_ in ("weight", "bias"):
            v = get(c, kind_)
            if v is not None:
                out[f"{backbone_prefix}{c}.{kind_}"] = torch.as_tensor(v)
    for head in box_heads:
        for layer, fc in (("fc6", "fc1"), ("fc7", "fc2")):
            for kind_ in ("weight", "bias"):
                v = get(layer, kind_)
                if v is not None:
                    out[f"{head}{fc}.{kind_}"] = torch.as_tensor(v)
    return out
