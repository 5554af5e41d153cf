"""The AAMN meta-architecture end to end on tiny synthetic clips (tiny backbone, CPU)."""

import pickle

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, pairwise_iou

from aamn.modeling import AAMN, StreamCheckpointer, load_pretrained_streams

from modeling_helpers import (  # noqa: F401  (fixtures)
    loss_curve,
    make_clip,
    make_vocab,
    seed_all,
    single_thread,
    tiny_cfg,
    tiny_model,
    vocab_file,
)


_model = tiny_model


def _batch(n=4, **kw):
    return [make_clip(seed=i, video_id=f"v{i % 2}", instance_id=i, **kw) for i in range(n)]


def _param_shapes(model):
    return {k: tuple(v.shape) for k, v in model.named_parameters()}


def test_training_returns_two_finite_losses(vocab_file):
    model = _model(vocab_file)
    assert isinstance(model, AAMN)
    model.train()
    losses = model(_batch())
    assert set(losses) == {"loss_match", "loss_mask"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.stem.weight.grad.abs().sum() > 0
    assert model.flow_backbone.stem.weight.grad.abs().sum() > 0
    assert model.language.embedding.weight.grad.abs().sum() > 0


def test_sgd_steps_reduce_the_loss(vocab_file):
    model = _model(vocab_file)
    totals = loss_curve(
        model, _batch(), torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), 8
    )
    assert totals[-1] < 0.8 * totals[0], totals


def test_inference_output_contract(vocab_file):
    model = _model(vocab_file).eval()
    batch = _batch(2, height=96, width=128)  # frames 48x64, original size 96x128
    before = batch[0]["proposal_boxes"].clone()
    outputs = model(batch)
    assert len(outputs) == 2
    assert torch.equal(batch[0]["proposal_boxes"], before)  # inputs untouched
    for x, out in zip(batch, outputs):
        T, K = 3, 4
        assert set(out) == {
            "instances",
            "clip_instances",
            "tube_boxes",
            "tube_index",
            "tube_scores",
            "all_tube_boxes",
            "united_tubes",
            "word_attention",
        }
        assert len(out["clip_instances"]) == T and out["instances"] is out["clip_instances"][1]
        for inst in out["clip_instances"]:
            assert isinstance(inst, Instances) and inst.image_size == (96, 128)
            assert inst.pred_masks.shape == (1, 96, 128) and inst.pred_masks.dtype == torch.bool
            assert inst.pred_boxes.tensor.shape == (1, 4)
            assert inst.scores.shape == (1,) and 0 < float(inst.scores) < 1
            assert inst.pred_classes.tolist() == [0]
            x1, y1, x2, y2 = inst.pred_boxes.tensor[0].tolist()
            outside = inst.pred_masks[0].clone()
            outside[int(y1) : int(y2) + 2, int(x1) : int(x2) + 2] = False
            assert not outside.any()  # the mask lies in the tube's box
        assert out["tube_boxes"].shape == (T, 4)
        k = out["tube_index"]
        assert 0 <= k < K and out["tube_scores"].shape == (K,)
        assert int(out["tube_scores"].argmax()) == k
        assert float(out["instances"].scores) == pytest.approx(
            float(torch.sigmoid(out["tube_scores"][k]))
        )
        # Tube boxes are scaled from the 48x64 frame to the original 96x128.
        tube = model.match([x])["tubes"][0, k]
        expected = x["proposal_boxes"][torch.arange(T), tube] * 2
        assert torch.allclose(out["tube_boxes"], expected.clamp(max=128), atol=1e-4)
        every = model.match([x])["tubes"][0]  # (K, T)
        assert out["all_tube_boxes"].shape == (K, T, 4)
        for j in range(K):
            expected = x["proposal_boxes"][torch.arange(T), every[j]] * 2
            assert torch.allclose(out["all_tube_boxes"][j], expected.clamp(max=128), atol=1e-4)
        assert torch.equal(out["all_tube_boxes"][k], out["tube_boxes"])
        n = len(x["query_tokens"])
        for key in ("actor", "action"):
            w = out["word_attention"][key]
            assert w.shape == (n,) and float(w.sum()) == pytest.approx(1.0, abs=1e-5)


def test_rgb_only_model_runs_without_flow(vocab_file):
    model = _model(vocab_file, **{"MODEL.AAMN.USE_FLOW": False})
    assert model.flow_backbone is None and not any(
        k.startswith("flow_") for k in _param_shapes(model)
    )
    batch = _batch(2, flow=False)
    model.train()
    assert all(torch.isfinite(v) for v in model(batch).values())
    model.eval()
    assert model(batch)[0]["instances"].pred_masks.shape == (1, 48, 64)


SHAPE_ABLATIONS = [
    {"MODEL.AAMN.USE_ACTOR_MODULE": False},
    {"MODEL.AAMN.USE_ACTION_MODULE": False},
    {"MODEL.AAMN.USE_LOCATION": False},
    {"MODEL.AAMN.CONTEXT_LSTM": False},
    {"MODEL.AAMN.CONTEXT_ATTENTION": False},
    {"MODEL.AAMN.GATED_FUSION": False},
    {"MODEL.AAMN.USE_FLOW": False},
    {"MODEL.AAMN.USE_FLOW": False, "MODEL.AAMN.NO_FLOW_MOTION_FEATURE": "none"},
    {"MODEL.AAMN.MASK_HEAD.USE_FLOW": False},
]


def test_ablations_with_their_own_parameters(vocab_file):
    base = _param_shapes(_model(vocab_file))
    seen = [base]
    for overrides in SHAPE_ABLATIONS:
        model = _model(vocab_file, **overrides)
        shapes = _param_shapes(model)
        assert all(shapes != other for other in seen), overrides
        seen.append(shapes)
        model.train()
        batch = _batch(2, flow=model.use_flow)
        assert all(torch.isfinite(v) for v in model(batch).values()), overrides


def _same_weights(vocab_file, base, **overrides):
    model = _model(vocab_file, seed=1, **overrides)
    model.load_state_dict(base.state_dict())
    return model.eval()


def test_ablations_that_change_the_computation_only(vocab_file):
    base = _model(vocab_file).eval()
    batch = _batch(4)
    ref = base.match(batch)
    ref_scores = torch.stack([o["tube_scores"] for o in base(batch)])

    # Linking features: the semantic term of Eq. (1) sees v, f or [v, f].
    import aamn.modeling.tube_linking as tl

    seen = {}
    original = tl.link_tubes

    def spy(boxes, features, key_index, rho):
        seen[feature] = features
        return original(boxes, features, key_index, rho)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(tl, "link_tubes", spy)
    try:
        for feature in ("rgb", "flow", "both"):
            model = _same_weights(vocab_file, base, **{"MODEL.AAMN.LINK_FEATURE": feature})
            tubes = model.match(batch)["tubes"]
            if feature == "flow":
                assert not torch.equal(tubes, ref["tubes"])
    finally:
        monkeypatch.undo()
    assert seen["rgb"].shape[-1] == seen["flow"].shape[-1] == 32 and seen["both"].shape[-1] == 64
    assert not torch.allclose(seen["rgb"], seen["flow"])
    assert torch.equal(seen["both"], torch.cat([seen["rgb"], seen["flow"]], dim=-1))

    model = _same_weights(vocab_file, base, **{"MODEL.AAMN.TEMPORAL_AGGREGATION": "mean"})
    scores = torch.stack([o["tube_scores"] for o in model(batch)])
    assert not torch.allclose(scores, ref_scores)

    model = _same_weights(vocab_file, base, **{"MODEL.AAMN.RANDOM_WORD_ATTENTION": True})
    out = model(batch)
    assert not torch.allclose(
        out[0]["word_attention"]["actor"], base(batch)[0]["word_attention"]["actor"]
    )
    model.train()  # training keeps the learned attention
    base.train()
    ref_loss = base(batch)["loss_match"]
    assert torch.allclose(model(batch)["loss_match"], ref_loss)

    # Loss options: the query negatives and the reduction of Eq. (12).
    for overrides in (
        {"MODEL.AAMN.QUERY_NEGATIVES": "none"},
        {"MODEL.AAMN.QUERY_NEGATIVES": "video"},
        {"MODEL.AAMN.MATCH_LOSS_REDUCTION": "sum"},
    ):
        model = _same_weights(vocab_file, base, **overrides).train()
        assert not torch.allclose(model(batch)["loss_match"], ref_loss), overrides


def test_gt_box_replaces_the_lowest_scored_proposal(vocab_file):
    model = _model(vocab_file).train()
    far = make_clip(seed=3, gt_in_proposals=False)
    near = make_clip(seed=4)
    gt_far = far["instances"].gt_boxes.tensor[1]
    boxes = torch.stack([far["proposal_boxes"], near["proposal_boxes"]]).clone()
    targets = model.criterion.targets([far, near], boxes)
    boxes = targets["boxes"]  # the proposals with the GT box substituted (a copy)
    matched, substituted = targets["matched"], targets["substituted"]
    assert substituted.tolist() == [True, False]
    assert matched.tolist() == [3, 0]  # the lowest-scored proposal of the far clip is the last
    assert torch.equal(boxes[0, 1, 3], gt_far) and torch.equal(
        boxes[0, 1, :3], far["proposal_boxes"][1, :3]
    )
    assert torch.equal(boxes[0, [0, 2]], far["proposal_boxes"][[0, 2]])  # other frames unchanged
    assert torch.equal(boxes[1], near["proposal_boxes"])
    # In the training forward the GT box is linked (the matched tube is anchored at it).
    out = model.match([far, near], substitute_ground_truth=True)
    assert torch.equal(out["boxes"][0, 1, 3], gt_far) and out["tubes"][0, 3, 1] == 3
    assert all(torch.isfinite(v) for v in model([far, near]).values())
    # Inference never substitutes.
    model.eval()
    assert not torch.equal(model.match([far])["boxes"][0, 1, 3], gt_far)


def test_clear_errors(vocab_file):
    model = _model(vocab_file).train()
    clip = make_clip(K=5)
    with pytest.raises(ValueError, match="NUM_PROPOSALS"):
        model([clip])
    clip = make_clip()
    del clip["flow"]
    with pytest.raises(ValueError, match="flow"):
        model([clip])
    with pytest.raises(ValueError, match="empty"):
        model([dict(make_clip(), query_tokens=[])])
    with pytest.raises(ValueError, match="LINK_FEATURE"):
        _model(vocab_file, **{"MODEL.AAMN.LINK_FEATURE": "optical"})
    with pytest.raises(ValueError, match="USE_FLOW"):
        _model(vocab_file, **{"MODEL.AAMN.USE_FLOW": False, "MODEL.AAMN.LINK_FEATURE": "flow"})
    with pytest.raises(ValueError, match="both be False"):
        _model(
            vocab_file,
            **{"MODEL.AAMN.USE_ACTOR_MODULE": False, "MODEL.AAMN.USE_ACTION_MODULE": False},
        )


def test_checkpoint_round_trip(vocab_file, tmp_path):
    model = _model(vocab_file).eval()
    StreamCheckpointer(model, str(tmp_path)).save("aamn")
    other = _model(vocab_file, seed=5).eval()
    assert not torch.equal(other.flow_backbone.stem.weight, model.flow_backbone.stem.weight)
    StreamCheckpointer(other).load(str(tmp_path / "aamn.pth"))
    # The Flow weights of a full AAMN checkpoint are kept, not replaced by the RGB ones.
    assert torch.equal(other.flow_backbone.stem.weight, model.flow_backbone.stem.weight)
    batch = _batch(2)
    a, b = model(batch), other(batch)
    for x, y in zip(a, b):
        assert torch.equal(x["tube_scores"], y["tube_scores"])
        assert torch.equal(x["instances"].pred_masks, y["instances"].pred_masks)


def _tiny_detector(vocab_file):
    cfg = tiny_cfg(vocab_file)
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.RPN.IN_FEATURES = ["res3"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res3"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 7
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    seed_all(7)
    det = build_model(cfg)
    with torch.no_grad():
        for p in det.backbone.parameters():
            p.add_(torch.randn_like(p))
        for name, buf in det.backbone.named_buffers():
            if "running" in name:
                buf.add_(torch.rand_like(buf))
    return det


def _assert_both_streams_equal(model, det):
    det_state = det.backbone.state_dict()
    for prefix in ("backbone", "flow_backbone"):
        state = getattr(model, prefix).state_dict()
        assert set(state) == set(det_state)
        for k, v in det_state.items():
            assert torch.equal(state[k], v), (prefix, k)


def test_pretrained_detector_loads_into_both_streams(vocab_file, tmp_path):
    det = _tiny_detector(vocab_file)
    DetectionCheckpointer(det, str(tmp_path)).save("detector")
    model = _model(vocab_file)
    head_before = model.matching_head.rgb_head.fc1.weight.clone()
    load_pretrained_streams(model, str(tmp_path / "detector.pth"))
    _assert_both_streams_equal(model, det)
    assert torch.equal(
        model.matching_head.rgb_head.fc1.weight, head_before
    )  # nothing else is adapted

    # The model-zoo .pkl format, through the checkpointer a trainer uses.
    pkl = tmp_path / "detector.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(
            {"model": {k: v.numpy() for k, v in det.state_dict().items()}, "__author__": "test"}, f
        )
    model = _model(vocab_file, seed=2)
    StreamCheckpointer(model, init_flow_from_rgb=True).resume_or_load(str(pkl), resume=False)
    _assert_both_streams_equal(model, det)

    # Heuristic name matching (a bare backbone file) applies to the RGB backbone only.
    pyth = tmp_path / "backbone.pyth"
    torch.save({"model_state": {k: v for k, v in det.backbone.state_dict().items()}}, pyth)
    model = _model(vocab_file, seed=3)
    load_pretrained_streams(model, str(pyth))
    _assert_both_streams_equal(model, det)

    # Without the copy (MODEL.INIT_FLOW_FROM_RGB False) the Flow backbone keeps its own
    # initialisation.
    model = _model(vocab_file, seed=4, **{"MODEL.INIT_FLOW_FROM_RGB": False})
    flow_before = model.flow_backbone.stem.weight.clone()
    StreamCheckpointer(model).load(str(tmp_path / "detector.pth"))
    assert torch.equal(model.flow_backbone.stem.weight, flow_before)
    assert torch.equal(model.backbone.stem.weight, det.backbone.stem.weight)
    load_pretrained_streams(model, str(tmp_path / "detector.pth"), init_flow_from_rgb=True)
    _assert_both_streams_equal(model, det)


def test_mask_roi_grown_by_box_expand(vocab_file):
    """MASK_HEAD.BOX_EXPAND: masks are predicted in (and trained on) the grown box, clipped to the
    frame, while pred_boxes / tube_boxes stay the tube's boxes."""
    batch = _batch(2, height=96, width=128)
    outputs = {}
    for scale in (1.0, 1.5):
        model = _model(vocab_file, **{"MODEL.AAMN.MASK_HEAD.BOX_EXPAND": scale}).eval()
        torch.nn.init.constant_(model.mask_head.predictor.bias, 20.0)  # every mask cell foreground
        outputs[scale] = model(batch)
    for plain, grown in zip(outputs[1.0], outputs[1.5]):
        assert torch.equal(plain["tube_boxes"], grown["tube_boxes"])
        for p_inst, g_inst in zip(plain["clip_instances"], grown["clip_instances"]):
            assert torch.equal(p_inst.pred_boxes.tensor, g_inst.pred_boxes.tensor)
            x1, y1, x2, y2 = p_inst.pred_boxes.tensor[0].tolist()
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            ys, xs = torch.nonzero(g_inst.pred_masks[0], as_tuple=True)
            # the full-foreground mask fills the grown box, clipped to the 96x128 frame
            assert float(xs.min()) == pytest.approx(max(cx - 0.75 * w, 0.0), abs=1.5)
            assert float(xs.max()) + 1 == pytest.approx(min(cx + 0.75 * w, 128.0), abs=1.5)
            assert float(ys.min()) == pytest.approx(max(cy - 0.75 * h, 0.0), abs=1.5)
            assert float(ys.max()) + 1 == pytest.approx(min(cy + 0.75 * h, 96.0), abs=1.5)
            assert g_inst.pred_masks.sum() > p_inst.pred_masks.sum()
    # training: the targets are cropped by the grown box, so the mask loss changes
    losses = {}
    for scale in (1.0, 1.5):
        model = _model(vocab_file, **{"MODEL.AAMN.MASK_HEAD.BOX_EXPAND": scale}).train()
        losses[scale] = float(model(_batch(2))["loss_mask"].detach())
    assert losses[1.0] != pytest.approx(losses[1.5])
    with pytest.raises(ValueError, match="BOX_EXPAND"):
        _model(vocab_file, **{"MODEL.AAMN.MASK_HEAD.BOX_EXPAND": 0.8})


def test_mask_training_rois_matched_or_positive(vocab_file):
    """MASK_HEAD.TRAIN_ROIS: "matched" trains the mask head on one RoI per clip, "positive" on every
    key-frame proposal overlapping an annotated actor, each with its own actor's mask."""
    batch = _batch(2)
    for x in batch:
        key = x["proposal_boxes"].shape[0] // 2
        x["proposal_boxes"][key, 2] = torch.tensor([50.5, 2.0, 60.0, 8.0])  # on the other actor
        a = x["instances"].gt_boxes.tensor[1]
        x["proposal_boxes"][key, 3] = a + torch.tensor([2.0, 0.0, 2.0, 0.0])  # on the referred one
    seen, losses = {}, {}
    for rois in ("matched", "positive"):
        model = _model(vocab_file, **{"MODEL.AAMN.MASK_HEAD.TRAIN_ROIS": rois}).train()
        torch.nn.init.constant_(
            model.mask_head.predictor.bias, 3.0
        )  # every cell predicted foreground
        torch.nn.init.zeros_(model.mask_head.predictor.weight)
        model.mask_head.register_forward_hook(lambda m, i, o: seen.__setitem__(rois, o.shape[0]))
        losses[rois] = float(model(batch)["loss_mask"].detach())
    assert seen == {"matched": 2, "positive": 6}
    # with a constant logit the loss depends on the targets alone
    assert losses["matched"] != pytest.approx(losses["positive"])
    with pytest.raises(ValueError, match="TRAIN_ROIS"):
        _model(vocab_file, **{"MODEL.AAMN.MASK_HEAD.TRAIN_ROIS": "all"})


def test_previous_box_links_the_selection_to_the_previous_clip(vocab_file):
    """Whole-video inference: with ``previous_box`` the tube whose first-frame box overlaps it
    wins unless another tube's score is higher by more than LINK_WEIGHT * IoU."""
    model = _model(vocab_file).eval()
    x = _batch(1, height=96, width=128)[0]
    free = model([x])[0]
    k_free = free["tube_index"]
    others = [k for k in range(len(free["tube_scores"])) if k != k_free]
    # The previous clip's box: tube j's first-frame box (original size) for the worst tube j.
    j = min(others, key=lambda k: float(free["tube_scores"][k]))
    if torch.allclose(free["all_tube_boxes"][j, 0], free["all_tube_boxes"][k_free, 0]):
        pytest.skip("two tubes start with the same box")
    prev = free["all_tube_boxes"][j, 0]
    linked = model([{**x, "previous_box": prev}])[0]
    sig = free["tube_scores"].sigmoid()
    iou = pairwise_iou(Boxes(free["all_tube_boxes"][:, 0]), Boxes(prev[None]))[:, 0]
    expected = int((sig + model.link_weight * iou).argmax())
    assert linked["tube_index"] == expected
    model.link_weight = 100.0  # the overlap decides
    assert model([{**x, "previous_box": prev}])[0]["tube_index"] == int(iou.argmax())
    model.link_weight = 0.0  # the scores alone decide
    assert model([{**x, "previous_box": prev}])[0]["tube_index"] == k_free
    # Scores are not changed by linking: the output score stays sigmoid(s_k) of the chosen tube.
    model.link_weight = 100.0
    out = model([{**x, "previous_box": prev}])[0]
    assert float(out["instances"].scores) == pytest.approx(
        float(out["tube_scores"][out["tube_index"]].sigmoid())
    )


def test_a_tube_chosen_outside_the_model_is_the_one_segmented(vocab_file):
    """``tube_choice`` (another system's ranking of AAMN's tubes) replaces the model's choice:
    its tube's boxes and mask come out, the scores stay the model's; a choice beyond K is an
    error naming it."""
    model = _model(vocab_file).eval()
    x = _batch(1, height=96, width=128)[0]
    free = model([x])[0]
    k = (free["tube_index"] + 1) % len(free["tube_scores"])
    chosen = model([{**x, "tube_choice": k}, x])
    assert chosen[0]["tube_index"] == k and chosen[1]["tube_index"] == free["tube_index"]
    torch.testing.assert_close(chosen[0]["tube_boxes"], free["all_tube_boxes"][k])
    torch.testing.assert_close(chosen[0]["tube_scores"], free["tube_scores"])
    with pytest.raises(ValueError, match="tube_choice 99"):
        model([{**x, "tube_choice": 99}])


def test_the_union_of_tubes_unites_the_masks_of_the_tubes_within_the_margin(vocab_file):
    """``MODEL.AAMN.TUBE_UNION_MARGIN``: each frame's mask is the union of the masks of the tubes
    scored within the margin of the selected one (each tube's mask as the model gives it when that
    tube is imposed), its box the box around theirs; a negative margin keeps the selected tube
    alone, and a clip of the batch with fewer united tubes is not changed by another's."""
    model = _model(vocab_file).eval()
    x, y = _batch(2, height=96, width=128)
    free = model([x])[0]
    scores = free["tube_scores"]
    K = len(scores)
    single = [model([{**x, "tube_choice": k}])[0] for k in range(K)]
    assert free["united_tubes"] == [free["tube_index"]]
    second = sorted(range(K), key=lambda k: -float(scores[k]))[1]
    margin = float(scores[free["tube_index"]] - scores[second]) + 1e-4
    model.tube_union_margin = margin
    expected = {k for k in range(K) if float(scores[k]) >= float(scores.max()) - margin}
    assert len(expected) >= 2
    out, other = model([x, y])
    assert set(out["united_tubes"]) == expected and out["tube_index"] == free["tube_index"]
    for t, inst in enumerate(out["clip_instances"]):
        union = torch.zeros_like(inst.pred_masks[0])
        for k in expected:
            union |= single[k]["clip_instances"][t].pred_masks[0]
        assert torch.equal(inst.pred_masks[0], union)
        boxes = torch.stack([single[k]["tube_boxes"][t] for k in expected])
        torch.testing.assert_close(
            inst.pred_boxes.tensor[0],
            torch.cat([boxes[:, :2].min(0).values, boxes[:, 2:].max(0).values]),
        )
    model.tube_union_margin = -1.0
    alone = model([y])[0]
    if len(other["united_tubes"]) == 1:  # padded with its own tube: the same masks as alone
        for a, b in zip(other["clip_instances"], alone["clip_instances"]):
            assert torch.equal(a.pred_masks, b.pred_masks)
    for a, b in zip(model([x])[0]["clip_instances"], free["clip_instances"]):
        assert torch.equal(a.pred_masks, b.pred_masks)


def test_queries_on_one_clip_share_the_backbone_pass(vocab_file):
    """Inputs holding the same clip tensors run the backbones once and give the outputs of
    separate clips."""
    model = _model(vocab_file).eval()
    x = _batch(1, height=96, width=128)[0]
    other = _batch(2, height=96, width=128)[1]
    y = {**x, "query_tokens": other["query_tokens"]}  # same clip tensors, another query
    calls = []
    hook = model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    shared = model([x, y])
    hook.remove()
    assert calls == [len(x["image"])]  # one clip's frames, not two
    copy = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in y.items()}
    alone = model([x, copy])
    for a, b in zip(shared, alone):
        assert a["tube_index"] == b["tube_index"]
        assert torch.allclose(a["tube_scores"], b["tube_scores"], atol=1e-5)
        assert torch.equal(a["instances"].pred_masks, b["instances"].pred_masks)
