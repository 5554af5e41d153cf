"""aamn.modeling.rpn: the RPN whose NMS runs on a prefix first gives detectron2's proposals."""

import pytest
import torch
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes

from aamn.config import get_aamn_cfg
from detectron2.modeling import build_model
from aamn.modeling.rpn import PrefixNMSRPN


def rpn_inputs(rpn, num_images, collapse, hide, seed=0):
    """Anchors of a 96 x 128 image's five FPN levels, random logits and deltas.  The images in
    ``collapse`` get huge boxes (all clipped to the whole image: NMS keeps one per level); in the
    images in ``hide`` the finest level's 300 best boxes collapse into one and its next ones score
    above every other level's, so its best survivors lie beyond a 300-box prefix."""
    g = torch.Generator().manual_seed(seed)
    anchors, logits, deltas = [], [], []
    for stride in (4, 8, 16, 32, 64):
        h, w = -(-96 // stride), -(-128 // stride)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = torch.stack([xs, ys], -1).reshape(-1, 1, 2).float() * stride + stride / 2
        sizes = torch.tensor([[3.0 * stride, 3.0 * stride], [4.0 * stride, 2.0 * stride],
                              [2.0 * stride, 4.0 * stride]])  # fmt: skip
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], -1).reshape(-1, 4)
        anchors.append(Boxes(boxes))
        logits.append(torch.randn(num_images, len(boxes), generator=g))
        d = torch.randn(num_images, len(boxes), 4, generator=g) * 0.3
        d[collapse, :, 2:] = 5.0
        if stride == 4:
            d[hide, :300, 2:] = 5.0
            logits[-1][hide, :300] += 20.0
            logits[-1][hide, 300:] += 10.0
        deltas.append(d)
    return anchors, logits, deltas, [(96, 128)] * num_images


@pytest.mark.parametrize("training", [True, False])
def test_the_same_proposals_as_detectron2s_rpn(training):
    cfg = get_aamn_cfg("configs/synthetic/detector.yaml", ["MODEL.PROPOSAL_GENERATOR.NAME", "RPN"])
    rpn = build_model(cfg).proposal_generator
    assert type(rpn) is RPN
    rpn.train(training)
    inputs = rpn_inputs(rpn, 4, collapse=[2], hide=[3] if training else [])
    expected = rpn.predict_proposals(*inputs)
    rpn = build_model(get_aamn_cfg("configs/synthetic/detector.yaml")).proposal_generator
    assert type(rpn) is PrefixNMSRPN
    rpn.train(training)
    calls = []
    original = PrefixNMSRPN.predict_proposals.__globals__["find_top_rpn_proposals"]

    def counted(proposals, logits, sizes, nms, per_level, *rest):
        calls.append((len(sizes), per_level))
        return original(proposals, logits, sizes, nms, per_level, *rest)

    PrefixNMSRPN.predict_proposals.__globals__["find_top_rpn_proposals"] = counted
    try:
        got = rpn.predict_proposals(*inputs)
    finally:
        PrefixNMSRPN.predict_proposals.__globals__["find_top_rpn_proposals"] = original
    pre, post = rpn.pre_nms_topk[training], rpn.post_nms_topk[training]
    # All four images on the prefix, then again in full image 2 (a few survivors only) and, in
    # training (600 per level, a 300 prefix), image 3 (its best boxes beyond the prefix).
    assert calls == [(4, int(1.5 * post)), (2 if training else 1, pre)]
    assert len(expected[2]) < post and all(len(e) == post for i, e in enumerate(expected) if i != 2)
    for e, r in zip(expected, got):
        assert torch.equal(e.proposal_boxes.tensor, r.proposal_boxes.tensor)
        assert torch.equal(e.objectness_logits, r.objectness_logits)


def test_named_by_the_detector_configs():
    model = build_model(get_aamn_cfg("configs/synthetic/detector.yaml"))
    assert type(model.proposal_generator) is PrefixNMSRPN


def test_the_proposal_detector_uses_it(tmp_path):
    from aamn.engine import ProposalDetector

    cfg = get_aamn_cfg("configs/synthetic/detector.yaml")
    weights = tmp_path / "detector.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(weights)
    detector = ProposalDetector(cfg)
    assert type(detector.model.proposal_generator) is PrefixNMSRPN
    boxes, logits = detector(torch.randint(0, 255, (1, 96, 128, 3), dtype=torch.uint8).numpy())[0]
    assert boxes.shape[1] == 4 and len(boxes) == len(logits) <= 20
