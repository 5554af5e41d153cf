"""Matching (Eq. 12), segmentation (Eq. 11) and joint (Eq. 10) losses."""

import pytest
import torch

from aamn.modeling import joint_loss, mask_bce_loss, query_negative_mask, triplet_matching_loss

from modeling_helpers import single_thread  # noqa: F401  (autouse fixture)


def _scores():
    # 2 clips x 2 queries x 3 tubes; matched tubes 0 and 2.
    s = torch.full((2, 2, 3), -1.0)
    s[0, 0, 0] = 1.0
    s[1, 1, 2] = 1.0
    return s, torch.tensor([0, 2])


def test_hinge_is_zero_when_the_margin_holds():
    s, matched = _scores()
    neg = torch.tensor([[False, True], [True, False]])
    assert float(triplet_matching_loss(s, matched, neg, margin=0.1)) == 0.0
    # Exactly at the margin: still zero.
    s[0, 0, 1] = 0.9
    assert float(triplet_matching_loss(s, matched, neg, margin=0.1)) == pytest.approx(0.0, abs=1e-6)


def test_hinge_is_positive_otherwise_and_normalised():
    s, matched = _scores()
    neg = torch.tensor([[False, True], [True, False]])
    s[0, 0, 1] = 1.0  # tube side violation of clip 0: 0.1 - 1 + 1 = 0.1, over K - 1 = 2 tubes
    s[1, 0, 2] = 1.5  # query side violation of clip 1: 0.1 - 1 + 1.5 = 0.6, over 1 query
    loss = triplet_matching_loss(s, matched, neg, margin=0.1)
    assert float(loss) == pytest.approx((0.1 / 2 + 0.6) / 2)
    # Without query negatives only the tube side counts.
    assert float(triplet_matching_loss(s, matched, None, margin=0.1)) == pytest.approx(0.1 / 2 / 2)
    # Eq. (12) as written sums over the negatives.
    assert float(triplet_matching_loss(s, matched, neg, 0.1, reduction="sum")) == pytest.approx(
        (0.1 + 0.6) / 2
    )
    with pytest.raises(ValueError, match="MATCH_LOSS_REDUCTION"):
        triplet_matching_loss(s, matched, neg, 0.1, reduction="max")


def test_gradients_push_the_matched_pair_up():
    s, matched = _scores()
    s[0, 0, 1] = 1.0
    s.requires_grad_(True)
    triplet_matching_loss(s, matched, None, margin=0.1).backward()
    assert s.grad[0, 0, 0] < 0 and s.grad[0, 0, 1] > 0
    assert s.grad[0, 0, 2] == 0 and s.grad[1].abs().sum() == 0


def test_single_tube_and_shape_errors():
    s = torch.zeros(2, 2, 1)
    assert float(triplet_matching_loss(s, torch.zeros(2, dtype=torch.long), None)) == 0.0
    with pytest.raises(ValueError):
        triplet_matching_loss(torch.zeros(3, 2, 4), torch.zeros(3, dtype=torch.long))


def test_query_negative_modes():
    videos = ["a", "a", "b", "a"]
    instances = [1, 2, 1, 1]
    tokens = [["x"], ["y"], ["z"], ["w"]]
    batch = query_negative_mask(videos, "batch", instances, tokens)
    assert batch.tolist() == [
        [False, True, True, False],  # query 3 refers to the same actor of video "a"
        [True, False, True, True],
        [True, True, False, True],
        [False, True, True, False],
    ]
    video = query_negative_mask(videos, "video", instances, tokens)
    assert video.tolist() == [
        [False, True, False, False],
        [True, False, False, True],
        [False, False, False, False],
        [False, True, False, False],
    ]
    assert not query_negative_mask(videos, "none").any()
    same_words = query_negative_mask(["a", "b"], "batch", None, [["a", "man"], ["a", "man"]])
    assert not same_words.any()
    with pytest.raises(ValueError, match="QUERY_NEGATIVES"):
        query_negative_mask(videos, "all")


def test_mask_loss_and_joint_loss():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 3.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p = torch.sigmoid(logits)
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).mean()  # Eq. (11)
    assert float(mask_bce_loss(logits, target)) == pytest.approx(float(manual), rel=1e-6)
    with pytest.raises(ValueError):
        mask_bce_loss(logits, target[:, :1])
    losses = joint_loss(torch.tensor(0.3), torch.tensor(0.2), 5.0)  # Eq. (10)
    assert set(losses) == {"loss_match", "loss_mask"} and float(
        losses["loss_mask"]
    ) == pytest.approx(1.0)
