"""Tests that pin how AAMN's parts are wired together.

Each test fails on one single-line wiring bug that leaves the shape and loss tests green (the bug
is named in the test's docstring; each was checked by making it).  They reach the parts by type
(``StreamRoIHead``, ``ActorModule``, ...), not by attribute path, so they outlive a restructure.
"""

import numpy as np
import pytest
import torch

from detectron2.structures import Boxes

import aamn.modeling.actor_module as actor_module_lib
from aamn.modeling import AAMNMaskHead, ActionModule, ActorModule, StreamRoIHead, link_tubes

from modeling_helpers import make_clip, single_thread, tiny_model, vocab_file  # noqa: F401  (fixtures)


_model = tiny_model


def _batch(n=3, **kw):
    return [make_clip(seed=i, video_id=f"v{i}", instance_id=1, **kw) for i in range(n)]


def _only(model, cls):
    found = [m for m in model.modules() if isinstance(m, cls)]
    assert len(found) == 1, f"expected one {cls.__name__}, found {len(found)}"
    return found[0]


def _rgb_head(model):
    """The RGB stream's RoI head: the one whose pooling of the RGB features the model uses."""
    heads = [m for m in model.modules() if isinstance(m, StreamRoIHead)]
    return heads[0]


def _capture_rgb_features(model):
    store = {}
    handle = model.backbone.register_forward_hook(lambda m, i, o: store.setdefault("rgb", o))
    return store, handle


def _capture_mask_head_inputs(model):
    calls = []
    handle = _only(model, AAMNMaskHead).register_forward_pre_hook(
        lambda m, args: calls.append(args)
    )
    return calls, handle


def _reference_link(boxes, feats, key, rho):
    """Eq. (1) with plain loops: chain from the key frame, each step against the previous link."""
    B, T, K, _ = boxes.shape

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    tubes = np.zeros((B, K, T), dtype=np.int64)
    for b in range(B):
        for k in range(K):
            tubes[b, k, key] = k
            for direction in (1, -1):
                prev, t = k, key + direction
                while 0 <= t < T:
                    p = t - direction
                    scores = [
                        iou(boxes[b, p, prev], boxes[b, t, j])
                        + rho / (1.0 + float(np.linalg.norm(feats[b, p, prev] - feats[b, t, j])))
                        for j in range(K)
                    ]
                    prev = int(np.argmax(scores))
                    tubes[b, k, t] = prev
                    t += direction
    return tubes


@pytest.mark.parametrize("rho", [1.0, 3.0])
def test_eq1_linking_matches_a_hand_written_reference(rho):
    """Bug: Eq. (1)'s ``rho / (1 + d)`` replaced by another decreasing function of the distance
    (``exp(-d)``, ``1 / (1 + d^2)``) or the chain scored against the anchor, not the previous
    link."""
    g = torch.Generator().manual_seed(3)
    B, T, K = 6, 7, 6
    xy = torch.rand((B, T, K, 2), generator=g) * 40
    wh = 10 + torch.rand((B, T, K, 2), generator=g) * 30
    boxes = torch.cat([xy, xy + wh], dim=-1)
    feats = torch.rand((B, T, K, 4), generator=g)
    got = link_tubes(boxes, feats, T // 2, rho).numpy()
    expected = _reference_link(
        boxes.numpy().astype(np.float64), feats.numpy().astype(np.float64), T // 2, rho
    )
    np.testing.assert_array_equal(got, expected)


def test_linked_tube_features_follow_the_proposals_not_their_order(vocab_file):
    """Bug: the linked tube ignored (every frame pooled with the key frame's proposal index).
    Reordering the proposals of the non-key frames must not change any tube or score."""
    model = _model(vocab_file).eval()
    batch = _batch(2)
    permuted = []
    for x in batch:
        y = dict(x)
        boxes, scores = x["proposal_boxes"].clone(), x["proposal_scores"].clone()
        perm = torch.tensor([2, 0, 3, 1])
        for t in range(boxes.shape[0]):
            if t != boxes.shape[0] // 2:
                boxes[t], scores[t] = boxes[t, perm], scores[t, perm]
        y["proposal_boxes"], y["proposal_scores"] = boxes, scores
        assert not torch.equal(boxes, x["proposal_boxes"])
        permuted.append(y)
    with torch.no_grad():
        a, b = model(batch), model(permuted)
    for oa, ob in zip(a, b):
        assert torch.allclose(oa["tube_scores"], ob["tube_scores"], atol=1e-5)
        assert oa["tube_index"] == ob["tube_index"]
        assert torch.allclose(oa["tube_boxes"], ob["tube_boxes"])


def test_mask_rois_of_every_frame_are_pooled_from_that_frame(vocab_file):
    """Bug: the mask RoIs of all ``T`` frames pooled from the key frame's feature map."""
    model = _model(vocab_file).eval()
    batch = _batch(2)
    feats, h1 = _capture_rgb_features(model)
    calls, h2 = _capture_mask_head_inputs(model)
    with torch.no_grad():
        outputs = model(batch)
    h1.remove()
    h2.remove()
    rgb_maps = calls[0][0]
    T = batch[0]["image"].shape[0]
    boxes = [Boxes(out["tube_boxes"][t : t + 1]) for out in outputs for t in range(T)]  # B*T frames
    expected = _rgb_head(model).pool_mask_features(feats["rgb"], boxes)
    assert rgb_maps.shape == expected.shape
    assert torch.allclose(rgb_maps, expected, atol=1e-5)
    # The frames differ, so pooling the key frame's map for every frame would not match.
    key = T // 2
    wrong = _rgb_head(model).pool_mask_features(
        {k: v[torch.arange(len(v)) // T * T + key] for k, v in feats["rgb"].items()}, boxes
    )
    assert not torch.allclose(rgb_maps, wrong, atol=1e-3)


@pytest.mark.parametrize("gt_in_proposals", [True, False])
def test_mask_head_trains_on_the_matched_tube_key_frame_box(vocab_file, gt_in_proposals):
    """Bug: the mask head trained on another key-frame proposal than the matched tube's (or the GT
    substitution ignored).  The actor's proposal is moved to index 2 of the key frame."""
    model = _model(vocab_file)
    model.train()
    batch = _batch(2, gt_in_proposals=gt_in_proposals)
    key = batch[0]["image"].shape[0] // 2
    expected_boxes = []
    for x in batch:
        perm = torch.tensor([1, 3, 0, 2])  # proposal 0 (the actor) goes to index 2
        x["proposal_boxes"] = x["proposal_boxes"][:, perm].contiguous()
        x["proposal_scores"] = x["proposal_scores"][:, perm].contiguous()
        gt = x["instances"].gt_boxes.tensor[x["referred_idx"]]
        expected_boxes.append(x["proposal_boxes"][key, 2] if gt_in_proposals else gt)
    feats, h1 = _capture_rgb_features(model)
    calls, h2 = _capture_mask_head_inputs(model)
    model(batch)
    h1.remove()
    h2.remove()
    T = batch[0]["image"].shape[0]
    key_frames = {k: v[[b * T + key for b in range(len(batch))]] for k, v in feats["rgb"].items()}
    expected = _rgb_head(model).pool_mask_features(
        key_frames, [Boxes(b[None]) for b in expected_boxes]
    )
    assert torch.allclose(calls[0][0], expected, atol=1e-5)


def test_each_clip_selects_its_tube_with_its_own_query(vocab_file):
    """Bug: the tube of clip ``b`` selected with the scores of another query of the batch.
    The actor module's scores are replaced by ``s[b, q, k] = 1 if k == (b + q) mod K``."""
    model = _model(vocab_file, **{"MODEL.AAMN.USE_ACTION_MODULE": False}).eval()
    batch = _batch(3)
    K = batch[0]["proposal_boxes"].shape[1]

    def designed(module, args, output):
        B, Q, _ = output.shape
        s = torch.zeros_like(output)
        for b in range(B):
            for q in range(Q):
                s[b, q, (b + q) % K] = 1.0
        return s

    handle = _only(model, ActorModule).register_forward_hook(designed)
    with torch.no_grad():
        outputs = model(batch)
    handle.remove()
    assert [o["tube_index"] for o in outputs] == [(2 * b) % K for b in range(len(batch))]


def test_v0_is_the_whole_frame_aggregated_like_a_tube(vocab_file):
    """Bug: ``v_0`` pooled from another box than the full frame.  A proposal that is the full
    frame in every frame links into a tube whose feature must equal ``v_0``."""
    model = _model(vocab_file).eval()
    batch = _batch(2)
    j = 3
    for x in batch:
        h, w = x["image"].shape[-2:]
        x["proposal_boxes"][:, j] = torch.tensor([0.0, 0.0, float(w), float(h)])
    action = _only(model, ActionModule)
    seen = {}
    original = action.visual_features

    def spy(v_tubes, v0, *args, **kwargs):
        seen["v_tubes"], seen["v0"] = v_tubes, v0
        return original(v_tubes, v0, *args, **kwargs)

    action.visual_features = spy
    with torch.no_grad():
        model(batch)
    assert seen["v0"].shape == seen["v_tubes"][:, j].shape
    assert torch.allclose(seen["v0"], seen["v_tubes"][:, j], atol=1e-5)
    assert not torch.allclose(seen["v0"], seen["v_tubes"][:, 0], atol=1e-3)


def test_location_feature_comes_from_the_key_frame(vocab_file, monkeypatch):
    """Bug: the actor module's location feature (Eq. 6) taken from another frame's boxes."""
    model = _model(vocab_file).eval()
    batch = _batch(2)
    seen = []
    original = actor_module_lib.location_features

    def spy(boxes, image_sizes):
        seen.append(boxes.clone())
        return original(boxes, image_sizes)

    monkeypatch.setattr(actor_module_lib, "location_features", spy)
    with torch.no_grad():
        model(batch)
    key = batch[0]["image"].shape[0] // 2
    expected = torch.stack([x["proposal_boxes"][key] for x in batch])
    assert len(seen) == 1 and torch.allclose(seen[0], expected)


def test_a_training_batch_goes_through_aamn_in_a_straight_line(vocab_file):
    """``AAMN.forward``: read the clips, the queries, the targets, the matching head, the mask
    head, the criterion; at most 4 returns to a module already left (the mask head and the
    criterion are entered twice: RoIs and targets come before the matching head), and the inputs
    are never modified (the GT box is substituted into the targets' own copy)."""
    from modeling_helpers import make_clip, module_steps, tiny_model

    model = tiny_model(vocab_file).train()
    # the second clip's proposals miss the actor: the GT box is substituted
    batch = [make_clip(seed=i, T=3, K=4, gt_in_proposals=i == 0) for i in range(2)]
    before = [x["proposal_boxes"].clone() for x in batch]
    steps, returns = module_steps(lambda: model(batch), "modeling/meta_arch/aamn.py")
    assert steps[:4] == [
        "modeling/meta_arch/aamn.py",
        "modeling/streams.py",
        "modeling/language.py",
        "modeling/criterion.py",
    ]
    assert steps[-1] == "modeling/criterion.py" and len(returns) <= 4, steps
    assert all(torch.equal(b, x["proposal_boxes"]) for b, x in zip(before, batch))
    boxes = torch.stack([x["proposal_boxes"] for x in batch]).float()
    copy = boxes.clone()
    targets = model.criterion.targets(batch, boxes)
    assert targets["substituted"].tolist() == [False, True]
    assert torch.equal(boxes, copy) and not torch.equal(targets["boxes"], boxes)
