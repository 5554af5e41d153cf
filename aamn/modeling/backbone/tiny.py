"""A small ResNet-style backbone for CPU runs, and an FPN on top of it.

``build_tiny_backbone`` and ``build_tiny_fpn_backbone`` are registered in detectron2's
``BACKBONE_REGISTRY`` (``MODEL.BACKBONE.NAME``).  The network mirrors detectron2's ResNet naming
(``stem``, ``res2`` .. ``res5``) at strides 2 (stem), 4, 8, 16, 32, with BasicBlock-like residual
blocks, so it can stand in for a ResNet in any detectron2 model (the AAMN streams, the Faster R-CNN
detector stage).

Normalisation (``MODEL.TINY.NORM``): the network is trained from scratch, so the default is
``"BN"`` (plain ``BatchNorm2d``): an AAMN batch stacks all B*T frames of the batch (~40 frames of
8 clips x 5 frames) into one backbone call, which gives stable batch statistics, and in eval mode
BN costs nothing on the CPU.  ``"GN"`` (GroupNorm, ``MODEL.TINY.NUM_GROUPS`` groups, reduced to a
divisor of the channel count) avoids the train / eval discrepancy when the batch is small;
``"FrozenBN"`` only makes sense with pretrained weights.
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

__all__ = ["TinyResNet", "build_tiny_backbone", "build_tiny_fpn_backbone"]

_STAGE_NAMES = ["res2", "res3", "res4", "res5"]


def _make_norm(norm: str, channels: int, num_groups: int) -> Optional[nn.Module]:
    """A normalisation layer; ``"GN"`` uses ``gcd(num_groups, channels)`` groups."""
    if norm == "GN":
        return nn.GroupNorm(math.gcd(num_groups, channels), channels)
    return get_norm(norm, channels)


class TinyBasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut (1x1 conv when the shape changes).

    ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, num_groups: int
    ):
        super().__init__()
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            3,
            stride=stride,
            padding=1,
            bias=not norm,
            norm=_make_norm(norm, out_channels, num_groups),
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            3,
            stride=1,
            padding=1,
            bias=not norm,
            norm=_make_norm(norm, out_channels, num_groups),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                1,
                stride=stride,
                bias=not norm,
                norm=_make_norm(norm, out_channels, num_groups),
            )
        else:
            self.shortcut = None
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + shortcut)


class TinyResNet(Backbone):
    """Stem (3x3 conv, stride 2) + stages ``res2`` .. ``res5`` (strides 4, 8, 16, 32).

    Each stage starts with a stride-2 block followed by ``blocks_per_stage - 1`` stride-1 blocks.
    Stages after the last requested output are not built (as detectron2's ResNet does).

    Input ``(N, in_channels, H, W)``; output ``{name: (N, C_name, H / stride, W / stride)}`` for
    ``name`` in ``out_features``.  With ``channels_last`` the weights and the input are kept in
    PyTorch's channels-last memory format (``MODEL.TINY.CHANNELS_LAST``): the same values, the
    convolutions of oneDNN on CPU without a layout reorder per call.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        stem_channels: int = 16,
        stage_channels: List[int] = (16, 32, 64, 128),
        blocks_per_stage: int = 1,
        out_features: List[str] = ("res4",),
        norm: str = "BN",
        num_groups: int = 8,
        channels_last: bool = False,
    ):
        super().__init__()
        self.channels_last = bool(channels_last)
        if len(stage_channels) != 4:
            raise ValueError(
                f"MODEL.TINY.STAGE_CHANNELS needs 4 values (res2..res5), got {stage_channels}"
            )
        valid = ["stem"] + _STAGE_NAMES
        if len(out_features) == 0:
            raise ValueError(
                "The tiny backbone needs at least one output feature (MODEL.TINY.OUT_FEATURES)"
            )
        for name in out_features:
            if name not in valid:
                raise ValueError(f"Unknown tiny backbone output {name!r}; choose from {valid}")
        if blocks_per_stage < 1:
            raise ValueError("MODEL.TINY.BLOCKS_PER_STAGE must be >= 1")
        self._out_features = list(out_features)
        self.stem = Conv2d(
            in_channels,
            stem_channels,
            3,
            stride=2,
            padding=1,
            bias=not norm,
            norm=_make_norm(norm, stem_channels, num_groups),
        )
        nn.init.kaiming_normal_(self.stem.weight, mode="fan_out", nonlinearity="relu")
        if self.stem.bias is not None:
            nn.init.zeros_(self.stem.bias)
        self._out_feature_strides = {"stem": 2}
        self._out_feature_channels = {"stem": stem_channels}
        last = max(valid.index(n) for n in self._out_features)
        self.stage_names = []
        prev, stride = stem_channels, 2
        for i, (name, channels) in enumerate(zip(_STAGE_NAMES, stage_channels)):
            if i + 1 > last:
                break
            blocks = [TinyBasicBlock(prev, channels, 2, norm, num_groups)]
            blocks += [
                TinyBasicBlock(channels, channels, 1, norm, num_groups)
                for _ in range(blocks_per_stage - 1)
            ]
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            stride *= 2
            prev = channels
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = {}
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu_(self.stem(x))
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def _tiny_from_cfg(cfg, input_shape: ShapeSpec, out_features) -> TinyResNet:
    return _memory_format(
        cfg,
        TinyResNet(
            in_channels=input_shape.channels,
            stem_channels=cfg.MODEL.TINY.STEM_CHANNELS,
            stage_channels=list(cfg.MODEL.TINY.STAGE_CHANNELS),
            blocks_per_stage=cfg.MODEL.TINY.BLOCKS_PER_STAGE,
            out_features=list(out_features),
            norm=cfg.MODEL.TINY.NORM,
            num_groups=cfg.MODEL.TINY.NUM_GROUPS,
            channels_last=cfg.MODEL.TINY.CHANNELS_LAST,
        ),
    )


def _memory_format(cfg, module):
    """``module`` with its weights in the channels-last format when ``MODEL.TINY.CHANNELS_LAST``."""
    return module.to(memory_format=torch.channels_last) if cfg.MODEL.TINY.CHANNELS_LAST else module


@BACKBONE_REGISTRY.register()
def build_tiny_backbone(cfg, input_shape: ShapeSpec):
    """The tiny ResNet with ``MODEL.TINY.*`` (outputs ``MODEL.TINY.OUT_FEATURES``)."""
    return _tiny_from_cfg(cfg, input_shape, cfg.MODEL.TINY.OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_tiny_fpn_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ``FPN`` (``MODEL.FPN.*``, with a ``LastLevelMaxPool`` p6) on the tiny ResNet.

    The bottom-up network outputs ``MODEL.FPN.IN_FEATURES`` (``MODEL.TINY.OUT_FEATURES`` is not
    used here); an empty ``IN_FEATURES`` (detectron2's default) means ``[res2, res3, res4, res5]``,
    which gives ``p2`` .. ``p6``.
    """
    in_features = list(cfg.MODEL.FPN.IN_FEATURES) or list(_STAGE_NAMES)
    bottom_up = _tiny_from_cfg(cfg, input_shape, in_features)
    return _memory_format(
        cfg,
        FPN(
            bottom_up=bottom_up,
            in_features=in_features,
            out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
            norm=cfg.MODEL.FPN.NORM,
            top_block=LastLevelMaxPool(),
            fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        ),
    )
