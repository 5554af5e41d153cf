"""tools/benchmark_detector_ops.py: the detector's per-image loops batched (measured there, not
kept in the model) keep detectron2's boxes, so its timings compare the same work; the tool as a user
runs it."""

import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from test_detector_heads import SIZES
from test_rpn import rpn_inputs

from aamn.cli.benchmark_detector_ops import batched_fast_rcnn_inference, find_top_proposals_batched
from aamn.config import get_aamn_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("training", [True, False])
def test_batched_top_proposals_equal_detectron2s_per_image_loop(training):
    """One ``batched_nms`` over all images (groups image x level) keeps each image's proposals of
    detectron2's loop: frames of several sizes (each clipped to its own), a minimum box size, and
    at inference non-finite candidates dropped."""
    rpn = build_model(get_aamn_cfg("configs/synthetic/detector.yaml")).proposal_generator
    anchors, logits, deltas, _ = rpn_inputs(rpn, 5, collapse=[1], hide=[])
    sizes = [(96, 128), (80, 100), (96, 128), (64, 128), (90, 120)]
    proposals = rpn._decode_proposals(anchors, deltas)
    if not training:
        logits[0][3, :40] = float("inf")
        proposals[1][2, :25, 0] = float("nan")
    for pre, post, min_size in ((300, 100, 0.0), (50, 30, 6.0), (10, 1000, 0.0)):
        args = (proposals, logits, sizes, 0.7, pre, post, min_size, training)
        expected, got = find_top_rpn_proposals(*args), find_top_proposals_batched(*args)
        assert len(got) == len(sizes)
        for e, r, size in zip(expected, got, sizes):
            assert r.image_size == size
            assert 0 < len(e) <= post
            assert torch.equal(e.proposal_boxes.tensor, r.proposal_boxes.tensor)
            assert torch.equal(e.objectness_logits, r.objectness_logits)


def test_batched_top_proposals_refuse_non_finite_in_training():
    rpn = build_model(get_aamn_cfg("configs/synthetic/detector.yaml")).proposal_generator
    anchors, logits, deltas, sizes = rpn_inputs(rpn, 2, collapse=[], hide=[])
    logits[2][1, 0] = float("nan")
    proposals = rpn._decode_proposals(anchors, deltas)
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_proposals_batched(proposals, logits, sizes, 0.7, 300, 100, 0.0, True)


def predictions(num_classes, agnostic, seed=0):
    """Per image random boxes ``(R, C*4)`` (``(R, 4)`` class-agnostic) partly outside the image,
    many overlapping, and softmax scores ``(R, C+1)``; image 2 has no box above any threshold and
    image 3 a non-finite row."""
    g = torch.Generator().manual_seed(seed)
    boxes, scores = [], []
    for i, (h, w) in enumerate(SIZES):
        r = 40 + 10 * i
        c = 1 if agnostic else num_classes
        xy = torch.rand(r, c, 2, generator=g) * torch.tensor([w, h]) - 10
        wh = 5 + torch.rand(r, c, 2, generator=g) * 40
        boxes.append(torch.cat([xy, xy + wh], -1).reshape(r, c * 4))
        s = torch.softmax(torch.randn(r, num_classes + 1, generator=g) * 2, dim=1)
        if i == 2:
            s = torch.full_like(s, 1.0 / (num_classes + 1))
        scores.append(s)
    boxes[3][5, 0] = float("nan")
    return boxes, scores


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("topk", [100, 7, -1])
def test_batched_inference_equals_detectron2s(agnostic, topk):
    boxes, scores = predictions(6, agnostic)
    expected, expected_idx = fast_rcnn_inference(boxes, scores, SIZES, 0.2, 0.5, topk)
    got, got_idx = batched_fast_rcnn_inference(boxes, scores, SIZES, 0.2, 0.5, topk)
    assert [len(e) for e in expected][2] == 0 and sum(len(e) for e in expected) > 20
    if topk == 7:
        assert max(len(e) for e in expected) == 7
    for e, r, ei, ri, size in zip(expected, got, expected_idx, got_idx, SIZES):
        assert r.image_size == size
        assert torch.equal(e.pred_boxes.tensor, r.pred_boxes.tensor)
        assert torch.equal(e.scores, r.scores)
        assert torch.equal(e.pred_classes, r.pred_classes)
        assert torch.equal(ei, ri)


def test_detector_levers_tool_on_the_tiny_benchmark(tmp_path_factory, tmp_path):
    """tools/benchmark_detector_ops.py as a user runs it: every row timed on real frames of the
    tiny benchmark's val split, the batched stages checked against detectron2's."""
    import subprocess
    import sys

    from training_helpers import tiny_synthetic

    datasets = tiny_synthetic(tmp_path_factory)
    weights = tmp_path / "detector.pth"
    torch.manual_seed(0)
    model = build_model(get_aamn_cfg(os.path.join(REPO, "configs", "synthetic", "detector.yaml")))
    torch.save({"model": model.state_dict()}, weights)
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "benchmark_detector_ops.py"),
        *("--config-file", os.path.join(REPO, "configs", "synthetic", "aamn.yaml")),
        *("--frames", "6", "--repeat", "1", "--inner", "1", "--threads", "1"),
        *("MODEL.WEIGHTS", str(weights), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"),
    ]
    env = dict(os.environ, AAMN_DATASETS=datasets, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("6 frames of 48 x 64, 1 threads")
    assert len([line for line in out.splitlines() if line.endswith("% of before)")]) == 9
    assert "the batched RPN and box head keep detectron2's detections: True" in out
    assert "the batched RPN NMS keeps the same proposals: True" in out
    assert "the batched box inference keeps the same detections: True" in out
    assert "frames whose top-6 detections change in bf16:" in out
