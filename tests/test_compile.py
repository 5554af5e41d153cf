"""MODEL.COMPILE_BACKBONES: the backbones through torch.compile give the eager results, a backbone
that cannot be compiled runs eagerly with a warning, and the model builders apply it."""

import logging
import os
import shutil

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

from aamn.modeling.compile import CompiledForward, compile_backbones
from modeling_helpers import tiny_cfg, vocab_file  # noqa: F401  (a fixture)


class _TinyBackbone(Backbone):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return {"res2": torch.relu(self.conv(x))}

    def output_shape(self):
        return {"res2": ShapeSpec(channels=4, stride=1)}


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _TinyBackbone()
        self.flow_backbone = _TinyBackbone()
        self.head = torch.nn.Linear(4, 2)


def test_compiled_backbones_give_the_eager_results():
    torch.manual_seed(0)
    model = _Model().eval()
    x = torch.randn(2, 3, 8, 10)
    with torch.no_grad():
        eager = model.backbone(x)["res2"]
    assert compile_backbones(model) == ["backbone", "flow_backbone"]
    assert compile_backbones(model) == []  # once
    assert isinstance(model.backbone.forward, CompiledForward)
    assert not isinstance(model.head.forward, CompiledForward)
    with torch.no_grad():
        compiled = model.backbone(x)["res2"]
    # inductor builds C++ (the machine's compiler); without one it falls back (the next test)
    assert model.backbone.forward.failed == (shutil.which(os.environ.get("CXX", "c++")) is None)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    assert "backbone.conv.weight" in model.state_dict()  # the checkpoint's names are unchanged


def test_a_backbone_that_cannot_compile_runs_eagerly_with_a_warning(monkeypatch, caplog):
    from torch._dynamo.exc import TorchDynamoException

    def no_compiler(fn, *args, **kwargs):
        def compiled(*a, **k):
            raise TorchDynamoException("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    model = _Model().eval()
    x = torch.randn(1, 3, 8, 10)
    compile_backbones(model)
    with caplog.at_level(logging.WARNING, logger="aamn.modeling.compile"):
        out = model.backbone(x)["res2"]
    assert model.backbone.forward.failed
    assert "torch.compile of the model's backbone failed" in caplog.text
    assert "runs eagerly" in caplog.text
    torch.testing.assert_close(out, torch.relu(model.backbone.conv(x)))
    # an error of the computation itself is not taken for a compiler's
    model.flow_backbone.forward.compiled = lambda *a: (_ for _ in ()).throw(ValueError("shape"))
    with pytest.raises(ValueError, match="shape"):
        model.flow_backbone(x)
    assert not model.flow_backbone.forward.failed


def test_the_builders_compile_when_the_config_asks(vocab_file, tmp_path, monkeypatch):
    """Training (Trainer.build_model) and inference (build_trained_model: the predictors, the
    page, the tools) compile exactly when MODEL.COMPILE_BACKBONES is set."""
    from aamn.engine import Trainer
    from aamn.modeling.checkpoint import build_trained_model

    calls = []
    monkeypatch.setattr(
        "aamn.modeling.compile.compile_backbones", lambda m: calls.append(type(m).__name__) or []
    )
    cfg = tiny_cfg(vocab_file)
    model = Trainer.build_model(cfg)
    weights = str(tmp_path / "model.pth")
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = weights
    build_trained_model(cfg.clone())
    assert calls == []
    cfg.MODEL.COMPILE_BACKBONES = True
    Trainer.build_model(cfg.clone())
    build_trained_model(cfg.clone())
    assert calls == ["AAMN", "AAMN"]
