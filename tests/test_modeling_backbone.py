"""The tiny ResNet-style backbone and its FPN (CPU-sized detectron2 backbones)."""

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

import aamn.modeling  # noqa: F401  (registers the backbones)
from aamn.modeling.meta_arch.aamn_config import add_aamn_config
from aamn.modeling import TinyResNet

from modeling_helpers import single_thread  # noqa: F401  (autouse fixture)


def _cfg():
    cfg = get_cfg()
    add_aamn_config(cfg)
    cfg.MODEL.TINY.STEM_CHANNELS = 8
    cfg.MODEL.TINY.STAGE_CHANNELS = [8, 16, 16, 32]
    return cfg


def test_strides_channels_and_shapes():
    net = TinyResNet(
        stem_channels=8,
        stage_channels=[8, 16, 24, 32],
        out_features=["stem", "res2", "res3", "res4", "res5"],
    )
    shapes = net.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {
        "stem": 2,
        "res2": 4,
        "res3": 8,
        "res4": 16,
        "res5": 32,
    }
    assert {k: v.channels for k, v in shapes.items()} == {
        "stem": 8,
        "res2": 8,
        "res3": 16,
        "res4": 24,
        "res5": 32,
    }
    out = net(torch.randn(2, 3, 64, 96))
    for name, spec in shapes.items():
        assert out[name].shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)


def test_unneeded_stages_are_not_built():
    net = TinyResNet(out_features=["res3"])
    assert hasattr(net, "res3") and not hasattr(net, "res4") and not hasattr(net, "res5")
    with pytest.raises(ValueError, match="Unknown tiny backbone output"):
        TinyResNet(out_features=["res6"])


@pytest.mark.parametrize("norm,kind", [("BN", torch.nn.BatchNorm2d), ("GN", torch.nn.GroupNorm)])
def test_norm_choice_from_config(norm, kind):
    cfg = _cfg()
    cfg.MODEL.BACKBONE.NAME = "build_tiny_backbone"
    cfg.MODEL.TINY.NORM = norm
    net = build_backbone(cfg)
    assert any(isinstance(m, kind) for m in net.modules())
    assert list(net.output_shape()) == ["res4"]
    net.train()
    out = net(torch.randn(2, 3, 32, 32))["res4"]
    out.mean().backward()
    assert net.stem.weight.grad is not None


def test_flow_input_channels():
    cfg = _cfg()
    cfg.MODEL.BACKBONE.NAME = "build_tiny_backbone"
    net = build_backbone(cfg, ShapeSpec(channels=2))
    assert net(torch.randn(1, 2, 32, 32))["res4"].shape == (1, 16, 2, 2)


def test_tiny_fpn():
    cfg = _cfg()
    cfg.MODEL.BACKBONE.NAME = "build_tiny_fpn_backbone"
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    net = build_backbone(cfg)
    shapes = net.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {
        "p2": 4,
        "p3": 8,
        "p4": 16,
        "p5": 32,
        "p6": 64,
    }
    out = net(torch.randn(1, 3, 64, 64))
    assert out["p2"].shape == (1, 16, 16, 16)


def test_channels_last_computes_the_same():
    """MODEL.TINY.CHANNELS_LAST: weights and input in the channels-last format, the same
    features and gradients as the default layout (a speed lever only)."""
    nets = {}
    for last in (False, True):
        cfg = _cfg()
        cfg.MODEL.BACKBONE.NAME = "build_tiny_fpn_backbone"
        cfg.MODEL.FPN.OUT_CHANNELS = 16
        cfg.MODEL.TINY.CHANNELS_LAST = last
        torch.manual_seed(0)
        nets[last] = build_backbone(cfg)
    assert nets[True].fpn_output2.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nets[False].fpn_output2.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 64, 96)
    outs = {last: net(x) for last, net in nets.items()}
    assert outs[True]["p2"].is_contiguous(memory_format=torch.channels_last)
    for name in outs[False]:
        torch.testing.assert_close(outs[True][name], outs[False][name], rtol=1e-4, atol=1e-5)
    for last in (False, True):
        sum(v.square().sum() for v in outs[last].values()).backward()
    for (name, a), (_, b) in zip(nets[False].named_parameters(), nets[True].named_parameters()):
        assert (b.grad - a.grad).abs().max() <= 1e-4 * a.grad.abs().max(), name
