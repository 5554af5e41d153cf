"""aamn.modeling.roi_heads.detector_heads: the detector's RoI heads are detectron2's at float32,
and run their box head in bf16 at inference when asked."""

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from aamn.config import get_aamn_cfg
from aamn.modeling.roi_heads import SeparableROIAlignROIHeads

SIZES = [(96, 128), (80, 100), (96, 128), (64, 90)]


def heads_and_inputs(bf16=False):
    cfg = get_aamn_cfg(
        "configs/synthetic/detector.yaml",
        ["MODEL.ROI_BOX_HEAD.INFERENCE_BF16", bf16, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    assert type(heads) is SeparableROIAlignROIHeads
    g = torch.Generator().manual_seed(1)
    features = {
        f: torch.randn(len(SIZES), 32, -(-96 // s), -(-128 // s), generator=g)
        for f, s in zip(("p2", "p3", "p4", "p5", "p6"), (4, 8, 16, 32, 64))
    }
    proposals = []
    for h, w in SIZES:
        xy = torch.rand(30, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        inst = Instances((h, w))
        inst.proposal_boxes = Boxes(
            torch.cat([xy, xy + 8 + torch.rand(30, 2, generator=g) * 30], 1)
        )
        proposals.append(inst)
    return heads, features, proposals


def test_float32_inference_is_standard_roi_heads():
    """Without bf16 the heads' inference is detectron2's ``StandardROIHeads._forward_box``."""
    from detectron2.modeling.roi_heads import StandardROIHeads

    heads, features, proposals = heads_and_inputs()
    with torch.no_grad():
        got = heads._forward_box(features, proposals)
        expected = StandardROIHeads._forward_box(heads, features, proposals)
    assert sum(len(e) for e in expected) > 20
    for e, r in zip(expected, got):
        assert torch.equal(e.pred_boxes.tensor, r.pred_boxes.tensor)
        assert torch.equal(e.scores, r.scores)
        assert torch.equal(e.pred_classes, r.pred_classes)


def test_inference_bf16_runs_the_box_head_in_bf16_only():
    heads, features, proposals = heads_and_inputs(bf16=True)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (output[0] if isinstance(output, tuple) else output).dtype

        return hook

    heads.box_head.register_forward_hook(record("head"))
    heads.box_predictor.register_forward_hook(record("pred"))
    with torch.no_grad():
        low = heads._forward_box(features, proposals)
    assert seen == {"head": torch.bfloat16, "pred": torch.float32}
    heads.inference_bf16 = False
    seen.clear()
    with torch.no_grad():
        full = heads._forward_box(features, proposals)
    assert seen == {"head": torch.float32, "pred": torch.float32}
    # bf16 changes the scores a little, not the detections' boxes beyond a pixel.
    assert [len(a) for a in low] == [len(a) for a in full]
    for a, b in zip(low, full):
        assert (a.scores - b.scores).abs().max() < 0.05
    # Training ignores it: detectron2's loss path, in float32.
    heads.inference_bf16 = True
    heads.train()
    seen.clear()
    for p in proposals:
        p.gt_classes = torch.zeros(len(p), dtype=torch.int64)
        p.gt_boxes = p.proposal_boxes.clone()
    from detectron2.utils.events import EventStorage

    with EventStorage():
        losses = heads._forward_box(features, proposals)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert seen == {"head": torch.float32, "pred": torch.float32}
