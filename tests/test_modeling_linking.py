"""Temporal proposal linking (Eq. 1) and aggregation (Eq. 2)."""

import pytest
import torch

from detectron2.structures import Boxes, pairwise_iou

from aamn.modeling import (
    TemporalAggregation,
    TubeLinker,
    gather_tubes,
    link_tubes,
    pairwise_iou_batched,
)

from modeling_helpers import single_thread  # noqa: F401  (autouse fixture)


def test_batched_iou_matches_detectron2():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 5, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(2, 5, 2, generator=g) * 30 + 1], -1)
    xy = torch.rand(2, 3, 2, generator=g) * 50
    b = torch.cat([xy, xy + torch.rand(2, 3, 2, generator=g) * 30 + 1], -1)
    out = pairwise_iou_batched(a, b)
    for i in range(2):
        assert torch.allclose(out[i], pairwise_iou(Boxes(a[i]), Boxes(b[i])), atol=1e-6)


def _moving_boxes():
    """Three frames, K = 3; frame 1 is the key frame.  Frame orders are shuffled so a correct
    linking must follow the geometry."""
    f0 = torch.tensor([[100.0, 0, 120, 20], [0, 0, 20, 20], [50, 50, 70, 70]])
    f1 = torch.tensor([[5.0, 0, 25, 20], [55, 50, 75, 70], [105, 0, 125, 20]])
    f2 = torch.tensor([[60.0, 50, 80, 70], [110, 0, 130, 20], [10, 0, 30, 20]])
    return torch.stack([f0, f1, f2])[None]  # (1, 3, 3, 4)


def test_linking_follows_overlap_towards_both_ends():
    boxes = _moving_boxes()
    feats = torch.zeros(1, 3, 3, 4)  # no semantic preference
    tubes = link_tubes(boxes, feats, key_index=1, rho=1.0)
    assert tubes.shape == (1, 3, 3)
    assert tubes[0].tolist() == [[1, 0, 2], [2, 1, 0], [0, 2, 1]]
    assert (tubes[0, :, 1] == torch.arange(3)).all()


def test_linking_picks_the_similar_proposal_when_overlap_ties():
    # Key frame (index 0) has one box; frame 1 has two equally-overlapping candidates.
    boxes = torch.tensor(
        [[[[10.0, 10, 30, 30], [10, 10, 30, 30]], [[15.0, 10, 35, 30], [5, 10, 25, 30]]]]
    )  # (1, T=2, K=2, 4)
    feats = torch.zeros(1, 2, 2, 3)
    feats[0, 0, 0] = torch.tensor([1.0, 0, 0])
    feats[0, 1, 0] = torch.tensor([0.0, 5, 0])  # far
    feats[0, 1, 1] = torch.tensor([1.0, 0.1, 0])  # near
    assert link_tubes(boxes, feats, 0)[0, 0].tolist() == [0, 1]
    feats[0, 1, 1] = torch.tensor([0.0, 0, 9])  # now the first one is nearer
    assert link_tubes(boxes, feats, 0)[0, 0].tolist() == [0, 0]
    # A large overlap wins over a small semantic advantage.
    boxes[0, 1, 1] = torch.tensor([50.0, 50, 60, 60])
    feats[0, 1, 0] = torch.tensor([1.0, 0.5, 0])  # IoU 0.6 + 1 / 1.5
    feats[0, 1, 1] = feats[0, 0, 0]  # IoU 0 + 1 / 1
    assert link_tubes(boxes, feats, 0, rho=1.0)[0, 0].tolist() == [0, 0]
    assert link_tubes(boxes, feats, 0, rho=10.0)[0, 0].tolist() == [0, 1]  # unless rho is large


def test_chaining_compares_with_the_previous_link():
    # The box moves 12 px per frame: frame 2's box does not overlap the anchor but does overlap
    # frame 1's link; a distractor at frame 2 overlaps the anchor a little.
    boxes = torch.tensor(
        [
            [
                [[0.0, 0, 20, 20], [200, 200, 210, 210]],
                [[12.0, 0, 32, 20], [200, 200, 210, 210]],
                [[16.0, 0, 18, 20], [24, 0, 44, 20]],
            ]
        ]
    )
    feats = torch.zeros(1, 3, 2, 2)
    assert link_tubes(boxes, feats, 0)[0, 0].tolist() == [0, 0, 1]


def test_link_feature_choice():
    boxes = torch.tensor(
        [[[[0.0, 0, 10, 10], [0, 0, 10, 10]], [[50.0, 50, 60, 60], [80, 80, 90, 90]]]]
    )  # no overlap at frame 1
    rgb = torch.zeros(1, 2, 2, 2)
    flow = torch.zeros(1, 2, 2, 2)
    rgb[0, 1, 0] = 3.0  # RGB prefers proposal 1 of frame 1
    flow[0, 1, 1] = 3.0  # Flow prefers proposal 0
    assert TubeLinker(link_feature="rgb")(boxes, rgb, flow, 0)[0, 0].tolist() == [0, 1]
    assert TubeLinker(link_feature="flow")(boxes, rgb, flow, 0)[0, 0].tolist() == [0, 0]
    rgb[0, 1, 0] = 1.0  # both: distances sqrt(1*2 + 0) vs sqrt(0 + 9*2)
    assert TubeLinker(link_feature="both")(boxes, rgb, flow, 0)[0, 0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="LINK_FEATURE"):
        TubeLinker(link_feature="depth")
    with pytest.raises(ValueError, match="Flow stream"):
        TubeLinker(link_feature="both")(boxes, rgb, None, 0)
    # The Flow-only model (Table IV "w/o RGB Stream") has no RGB features to link with.
    assert TubeLinker(link_feature="flow")(boxes, None, flow, 0)[0, 0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="RGB stream"):
        TubeLinker(link_feature="rgb")(boxes, None, flow, 0)


def test_gather_tubes():
    per_frame = torch.arange(2 * 3 * 4).view(2, 3, 4, 1).float()  # value = b*12 + t*4 + k
    tubes = torch.tensor([[[0, 1, 2], [3, 3, 3]], [[1, 1, 1], [2, 0, 3]]])
    out = gather_tubes(per_frame, tubes)
    assert out.shape == (2, 2, 3, 1)
    assert out[0, 0, :, 0].tolist() == [0, 5, 10] and out[1, 1, :, 0].tolist() == [14, 16, 23]


def test_eq2_weights_the_key_frame():
    agg = TemporalAggregation(in_dim=2, out_dim=3, mode="eq2")
    x = torch.zeros(1, 5, 2)
    x[0, 2] = torch.tensor([1.0, 0])  # key frame (L = 2)
    x[0, [0, 1, 3, 4], 1] = torch.tensor([1.0, 2, 3, 4])
    assert torch.allclose(
        agg.aggregate(x, 2), torch.tensor([[1.0, 2.5]])
    )  # v_L + mean of the other 2L
    # The key frame counts 2L times as much as any other frame.
    x.requires_grad_(True)
    agg.aggregate(x, 2).sum().backward()
    assert torch.allclose(x.grad[0, :, 0], torch.tensor([0.25, 0.25, 1.0, 0.25, 0.25]))
    mean = TemporalAggregation(in_dim=2, out_dim=3, mode="mean")
    assert torch.allclose(mean.aggregate(x.detach(), 2), x.detach().mean(1))
    out = agg(x.detach(), 2)
    assert out.shape == (1, 3) and (out >= 0).all()  # FC + ReLU
    assert torch.allclose(agg.aggregate(x.detach()[:, 2:3], 0), x.detach()[:, 2])  # T = 1
    with pytest.raises(ValueError, match="TEMPORAL_AGGREGATION"):
        TemporalAggregation(in_dim=2, out_dim=3, mode="max")
