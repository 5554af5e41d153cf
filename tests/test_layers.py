"""aamn.layers.roi_align: the separable RoIAlign against torchvision's kernel, and its wiring."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.poolers import ROIPooler
from torchvision.ops import roi_align

from aamn.config import get_aamn_cfg
from aamn.engine import Trainer
from aamn.layers import ROIAlign, roi_align_separable

from modeling_helpers import tiny_cfg, vocab_file  # noqa: F401


def random_rois(num, num_images, size, seed, skip_image=None):
    """``(num, 5)`` float64 boxes: inside, across and outside the image, some empty or inverted."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, num_images, (num, 1), generator=g)
    if skip_image is not None:
        images[images == skip_image] = (skip_image + 1) % num_images
    xy = torch.rand(num, 2, generator=g) * (size * 1.4) - size * 0.2
    wh = torch.rand(num, 2, generator=g) * size * 0.8 - 3.0  # a few negative widths / heights
    return torch.cat([images.double(), xy.double(), (xy + wh).double()], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_values_and_gradients_equal_torchvision(aligned, sampling_ratio):
    features = torch.randn(4, 3, 11, 13, dtype=torch.float64, requires_grad=True)
    rois = random_rois(50, 4, 60, seed=sampling_ratio + 10 * aligned, skip_image=2)
    ours = roi_align_separable(features, rois, (7, 5), 0.2, sampling_ratio, aligned)
    theirs = roi_align(features, rois, (7, 5), 0.2, sampling_ratio, aligned)
    assert ours.shape == (50, 3, 7, 5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    upstream = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad(ours, features, upstream)
    (g_theirs,) = torch.autograd.grad(theirs, features, upstream)
    assert g_theirs.abs().sum() > 0 and g_ours[2].abs().sum() == 0  # image 2 has no box
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=1e-12)


def test_float32_and_no_boxes():
    features = torch.randn(2, 8, 24, 32, requires_grad=True)
    rois = random_rois(30, 2, 100, seed=3).float()
    upstream = torch.randn(30, 8, 7, 7)
    (g_ours,) = torch.autograd.grad(
        roi_align_separable(features, rois, 7, 0.25, 0), features, upstream
    )
    (g_theirs,) = torch.autograd.grad(
        roi_align(features, rois, 7, 0.25, 0, True), features, upstream
    )
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
    empty = roi_align_separable(features, torch.zeros(0, 5), 7, 0.25, 0)
    assert empty.shape == (0, 8, 7, 7)
    (grad,) = torch.autograd.grad(empty.sum(), features, allow_unused=True)
    assert grad is None or grad.abs().sum() == 0


def test_module_trains_through_the_separable_kernel_and_infers_with_torchvision():
    layer = ROIAlign((7, 7), 0.25, 0, aligned=True)
    features = torch.randn(2, 4, 24, 32, requires_grad=True)
    rois = random_rois(6, 2, 100, seed=5).float()
    out = layer(features, rois)
    assert "SeparableROIAlign" in type(out.grad_fn).__name__
    with torch.no_grad():
        plain = layer(features, rois)
    torch.testing.assert_close(plain, out.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_config_key_chooses_the_poolers_roialign(enabled, vocab_file):  # noqa: F811
    cfg = get_aamn_cfg(
        "configs/synthetic/detector.yaml", ["MODEL.SEPARABLE_ROI_ALIGN", str(enabled)]
    )
    model = Trainer.build_model(cfg)
    poolers = list(model.roi_heads.box_pooler.level_poolers)
    assert len(poolers) == 4
    assert all((type(p) is ROIAlign) == enabled for p in poolers)
    # AAMN's stream heads: the same key where their poolers are built
    aamn = build_model(tiny_cfg(vocab_file, **{"MODEL.SEPARABLE_ROI_ALIGN": enabled}))
    stream = [m for m in aamn.modules() if isinstance(m, ROIPooler)]
    assert stream and all((type(p) is ROIAlign) == enabled for m in stream for p in m.level_poolers)
