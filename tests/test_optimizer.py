"""aamn.engine.build_optimizer: AdamW's fused kernel, the same steps as its loop."""

import torch

from aamn.config import get_aamn_cfg
from aamn.engine import build_optimizer


def test_fused_adamw_takes_the_loops_steps():
    cfg = get_aamn_cfg("configs/synthetic/aamn.yaml")
    assert cfg.SOLVER.OPTIMIZER == "AdamW"
    weights = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5))
        optimizer = build_optimizer(cfg, model, fused=fused)
        assert optimizer.defaults["fused"] is fused
        data = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
        for _ in range(5):
            optimizer.zero_grad()
            model(data).pow(2).sum().backward()
            optimizer.step()
        weights[fused] = [p.detach().clone() for p in model.parameters()]
    assert build_optimizer(cfg, model).defaults["fused"] is True  # what training uses
    for a, b in zip(weights[True], weights[False]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # float rounding
    assert not torch.equal(weights[True][0], torch.nn.Linear(6, 5).weight)  # it did train
