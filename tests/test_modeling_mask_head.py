"""The FCN mask head (Sec. III-D), its targets and the pasting into the frames."""

import pytest
import torch

from detectron2.structures import BitMasks

from aamn.modeling import AAMNMaskHead, mask_targets, paste_masks, positive_mask_rois

from modeling_helpers import single_thread  # noqa: F401  (autouse fixture)


def test_shapes_and_flow_switch():
    torch.manual_seed(0)
    two = AAMNMaskHead(in_channels=6, conv_dim=8, num_conv=3, use_flow=True)
    rgb, flow = torch.randn(5, 6, 14, 14), torch.randn(5, 6, 14, 14)
    assert two(rgb, flow).shape == (5, 28, 28)
    assert two.fuse.in_channels == 12 and len(two.convs) == 3
    assert not torch.allclose(two(rgb, flow), two(rgb, flow + 1.0))
    one = AAMNMaskHead(in_channels=6, conv_dim=8, num_conv=2, use_flow=False)
    assert one.fuse.in_channels == 6 and one(rgb).shape == (5, 28, 28)
    with pytest.raises(ValueError, match="Flow"):
        two(rgb)
    # Table IV "w/o RGB Stream": the Flow maps alone.
    flow_only = AAMNMaskHead(in_channels=6, conv_dim=8, num_conv=1, use_flow=True, use_rgb=False)
    assert flow_only.fuse.in_channels == 6 and flow_only(None, flow).shape == (5, 28, 28)
    assert not torch.allclose(flow_only(None, flow), flow_only(None, flow + 1.0))
    with pytest.raises(ValueError, match="RGB"):
        one(None)
    with pytest.raises(ValueError, match="USE_RGB"):
        AAMNMaskHead(in_channels=6, use_flow=False, use_rgb=False)


def test_targets_are_cropped_by_the_box():
    mask = torch.zeros(1, 40, 40, dtype=torch.bool)
    mask[0, 10:30, 10:20] = True  # the left half of the box [10, 10, 30, 30]
    target = mask_targets(BitMasks(mask), torch.tensor([[10.0, 10, 30, 30]]), 28)
    assert target.shape == (1, 28, 28) and target.dtype == torch.float32
    assert target[0, :, :13].min() == 1 and target[0, :, 15:].max() == 0
    with pytest.raises(ValueError):
        mask_targets(BitMasks(mask), torch.zeros(2, 4), 28)


def test_pasted_mask_lands_where_the_box_is():
    probs = torch.ones(2, 28, 28)
    probs[1, :, 14:] = 0  # the second mask covers the left half of its box
    boxes = torch.tensor([[10.0, 4, 30, 20], [0, 0, 16, 16]])
    masks, scaled = paste_masks(
        probs, boxes, image_size=(24, 32), output_size=(48, 64), threshold=0.5
    )
    assert masks.shape == (2, 48, 64) and masks.dtype == torch.bool
    assert torch.allclose(scaled.tensor[0], torch.tensor([20.0, 8, 60, 40]))  # boxes scaled 2x
    ys, xs = torch.nonzero(masks[0], as_tuple=True)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 39, 20, 59)
    ys, xs = torch.nonzero(masks[1], as_tuple=True)
    assert xs.min() == 0 and 14 <= xs.max() <= 17 and ys.max() == 31


def test_head_learns_a_box_shaped_mask():
    torch.manual_seed(0)
    head = AAMNMaskHead(in_channels=2, conv_dim=8, num_conv=1, use_flow=False)
    x = 0.1 * torch.randn(4, 2, 14, 14)
    x[:, 0, 4:10, 4:10] += 1.0  # the RoI features show where the actor is
    target = torch.zeros(4, 28, 28)
    target[:, 7:21, 7:21] = 1
    opt = torch.optim.Adam(head.parameters(), lr=0.03)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), target)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_positive_rois_pair_each_overlapping_proposal_with_its_actor():
    actors = torch.tensor([[10.0, 10.0, 30.0, 40.0], [50.0, 10.0, 70.0, 30.0]])
    proposals = torch.tensor(
        [
            [80.0, 40.0, 90.0, 50.0],  # background
            [51.0, 11.0, 70.0, 31.0],  # actor 1, IoU ~0.9
            [10.0, 12.0, 30.0, 40.0],  # actor 0, IoU 0.93: the matched one
            [14.0, 10.0, 30.0, 40.0],  # actor 0, IoU 0.8
            [10.0, 10.0, 30.0, 20.0],  # actor 0, IoU 0.33: below the threshold
        ]
    )
    idx, actor = positive_mask_rois(proposals, actors, 0.5, matched=2, referred=0)
    assert idx.tolist() == [2, 1, 3]  # the matched proposal first
    assert actor.tolist() == [0, 1, 0]
    # the matched proposal is kept and paired with the referred actor whatever its overlap
    idx, actor = positive_mask_rois(proposals, actors, 0.5, matched=0, referred=1)
    assert idx.tolist() == [0, 1, 2, 3] and actor.tolist() == [1, 1, 0, 0]
    idx, actor = positive_mask_rois(proposals, actors, 0.95, matched=2, referred=0)
    assert idx.tolist() == [2] and actor.tolist() == [0]
    with pytest.raises(ValueError, match="referred actor 2"):
        positive_mask_rois(proposals, actors, 0.5, matched=2, referred=2)
    with pytest.raises(ValueError, match="matched proposal 5"):
        positive_mask_rois(proposals, actors, 0.5, matched=5, referred=0)
