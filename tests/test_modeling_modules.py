"""The actor module (Eq. 6), the action module (Eq. 7-9): context LSTM, attention, gated fusion."""

import pytest
import torch

from aamn.modeling import (
    ActionModule,
    ActorModule,
    BaselineModule,
    ContextualLSTM,
    GatedFusion,
    ScoreHead,
    context_order,
    context_sequences,
    location_features,
)

from modeling_helpers import single_thread  # noqa: F401  (autouse fixture)


def test_location_feature():
    boxes = torch.tensor([[[10.0, 20, 30, 60]]])
    loc = location_features(boxes, torch.tensor([[100.0, 50.0]]))  # (h, w)
    assert torch.allclose(loc, torch.tensor([[[0.2, 0.2, 0.6, 0.6, 800 / 5000]]]))


def test_score_head_cross_scores_match_pairs():
    torch.manual_seed(0)
    head = ScoreHead(6, 5, 4)
    v, q = torch.randn(3, 4, 6), torch.randn(3, 5)
    cross = head(v, q)
    assert cross.shape == (3, 3, 4)
    ar = torch.arange(3)
    pairs = torch.stack([head(v[b : b + 1], q[b : b + 1])[0, 0] for b in range(3)])
    assert torch.allclose(cross[ar, ar], pairs, atol=1e-6)
    # Eq. (6): L2-normalised embeddings: scaling the inputs' projections does not matter.
    head.visual_fc.bias.data.zero_()
    assert torch.allclose(head(3.0 * v, q), head(v, q), atol=1e-5)


def test_actor_module_location_switch():
    torch.manual_seed(0)
    v, q = torch.randn(2, 3, 8), torch.randn(2, 6)
    boxes = (
        torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [5, 30, 15, 45]]).expand(2, 3, 4).clone()
    )
    sizes = torch.tensor([[48.0, 64.0]] * 2)
    with_loc = ActorModule(tube_dim=8, query_dim=6, match_dim=4, use_location=True)
    without = ActorModule(tube_dim=8, query_dim=6, match_dim=4, use_location=False)
    assert with_loc.head.visual_fc.in_features == 13 and without.head.visual_fc.in_features == 8
    moved = boxes + 5.0
    assert with_loc(v, boxes, sizes, q).shape == (2, 2, 3)
    assert not torch.allclose(with_loc(v, boxes, sizes, q), with_loc(v, moved, sizes, q))
    assert torch.allclose(without(v, boxes, sizes, q), without(v, moved, sizes, q))


def test_actor_module_with_the_motion_feature():
    torch.manual_seed(0)
    v, f, q = torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(2, 6)
    boxes = (
        torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [5, 30, 15, 45]]).expand(2, 3, 4).clone()
    )
    sizes = torch.tensor([[48.0, 64.0]] * 2)
    actor = ActorModule(tube_dim=8, query_dim=6, match_dim=4, use_location=True, motion_dim=8)
    assert actor.head.visual_fc.in_features == 8 + 8 + 5  # [v_k, f_k, l_k]
    x = actor.visual_features(v, boxes, sizes, f)
    assert torch.equal(x[..., :8], v) and torch.equal(x[..., 8:16], f)
    assert torch.allclose(x[..., 16:], location_features(boxes, sizes))
    assert not torch.allclose(actor(v, boxes, sizes, q, f), actor(v, boxes, sizes, q, f + 1.0))
    with pytest.raises(ValueError, match="ACTOR_USES_FLOW"):
        actor(v, boxes, sizes, q)
    plain = ActorModule(tube_dim=8, query_dim=6, match_dim=4)
    assert torch.equal(
        plain(v, boxes, sizes, q, f), plain(v, boxes, sizes, q, f + 1.0)
    )  # f is not used


def test_actor_module_feature_norm():
    torch.manual_seed(0)
    v, f, q = 100.0 * torch.rand(2, 3, 8), 50.0 * torch.rand(2, 3, 8), torch.randn(2, 6)
    boxes = (
        torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [5, 30, 15, 45]]).expand(2, 3, 4).clone()
    )
    sizes = torch.tensor([[48.0, 64.0]] * 2)
    actor = ActorModule(tube_dim=8, query_dim=6, match_dim=4, motion_dim=8, feature_norm="l2")
    x = actor.visual_features(v, boxes, sizes, f)
    # v_k and f_k become unit vectors, the location feature is kept as it is
    assert torch.allclose(x[..., :8].norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(x[..., 8:16].norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(x[..., 16:], location_features(boxes, sizes))
    # so the scores do not depend on the scale of the tube features (they do without the norm)
    assert torch.allclose(
        actor(v, boxes, sizes, q, f), actor(3.0 * v, boxes, sizes, q, 2.0 * f), atol=1e-5
    )
    plain = ActorModule(tube_dim=8, query_dim=6, match_dim=4, motion_dim=8)
    assert not torch.allclose(
        plain(v, boxes, sizes, q, f), plain(3.0 * v, boxes, sizes, q, 2.0 * f), atol=1e-4
    )
    # without location and motion the single part is normalised too
    alone = ActorModule(tube_dim=8, query_dim=6, match_dim=4, use_location=False, feature_norm="l2")
    assert torch.allclose(
        alone.visual_features(v, boxes, sizes).norm(dim=-1), torch.ones(2, 3), atol=1e-5
    )
    with pytest.raises(ValueError, match="ACTOR_FEATURE_NORM"):
        ActorModule(tube_dim=8, query_dim=6, match_dim=4, feature_norm="batch")


def test_baseline_module_scores_the_concatenated_streams():
    torch.manual_seed(0)
    v, f, q = torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(4, 6)
    two = BaselineModule(tube_dim=8, num_streams=2, query_dim=6, match_dim=5)
    s = two([v, f], q)
    assert s.shape == (2, 4, 3)
    assert torch.allclose(s, two.head(torch.cat([v, f], dim=-1), q))  # Eq. (6) form on [v_k, f_k]
    assert not torch.allclose(two([v, f + 1.0], q), s)
    one = BaselineModule(tube_dim=8, num_streams=1, query_dim=6, match_dim=5)
    assert one.head.visual_fc.in_features == 8 and one([v], q).shape == (2, 4, 3)
    with pytest.raises(ValueError, match="expects 2"):
        two([v], q)
    with pytest.raises(ValueError):
        BaselineModule(tube_dim=8, num_streams=0, query_dim=6, match_dim=5)


def test_context_order_top_to_bottom_then_left_to_right():
    boxes = torch.tensor([[[50.0, 30, 60, 40], [10, 5, 20, 15], [0, 30, 10, 40], [70, 5, 80, 15]]])
    assert context_order(boxes).tolist() == [[1, 3, 2, 0]]


def test_context_sequences_put_the_clip_first_and_leave_the_tube_out():
    tubes = torch.arange(1, 5).float().view(1, 4, 1)  # tube k has value k + 1
    whole = torch.zeros(1, 1)
    order = torch.tensor([[1, 3, 2, 0]])
    seq = context_sequences(tubes, whole, order)
    assert seq.shape == (1, 4, 4, 1)
    assert seq[0, :, :, 0].tolist() == [[0, 2, 4, 3], [0, 4, 3, 1], [0, 2, 4, 1], [0, 2, 3, 1]]
    assert context_sequences(tubes[:, :1], whole, order[:, :1] * 0).shape == (1, 1, 1, 1)  # K = 1


def test_contextual_lstm_attention_and_mean_pooling():
    torch.manual_seed(0)
    seq = torch.randn(5, 4, 6)
    att = ContextualLSTM(6, 3, use_attention=True)
    v_c, alpha = att(seq)
    assert v_c.shape == (5, 3) and torch.allclose(alpha.sum(1), torch.ones(5))
    h, _ = att.lstm(seq)
    y = torch.relu(att.proj(h))
    assert torch.allclose(v_c, (alpha[..., None] * y).sum(1), atol=1e-6)  # Eq. (7)
    mean = ContextualLSTM(6, 3, use_attention=False)
    mean.lstm.load_state_dict(att.lstm.state_dict())
    v_m, w = mean(seq)
    assert torch.allclose(v_m, h.mean(1), atol=1e-6) and torch.allclose(w, torch.full((5, 4), 0.25))
    assert not hasattr(mean, "attention")


def test_gated_fusion_gate_selects_a_source():
    torch.manual_seed(0)
    fusion = GatedFusion(4, 3, 5, gated=True)
    a, b = torch.randn(2, 4), torch.randn(2, 3)
    fusion.gate.weight.data.zero_()
    fusion.gate.bias.data.fill_(50.0)  # sigma -> 1: appearance only
    assert torch.allclose(fusion(a, b), fusion.fc_a(a), atol=1e-5)
    fusion.gate.bias.data.fill_(-50.0)  # sigma -> 0: motion only
    assert torch.allclose(fusion(a, b), fusion.fc_b(b), atol=1e-5)
    fusion.gate.bias.data.zero_()  # sigma = 0.5
    assert torch.allclose(fusion(a, b), 0.5 * (fusion.fc_a(a) + fusion.fc_b(b)), atol=1e-6)
    concat = GatedFusion(4, 3, 5, gated=False)
    assert torch.allclose(concat(a, b), concat.fc(torch.cat([a, b], -1)))


def _action(**kw):
    torch.manual_seed(0)
    args = dict(tube_dim=8, query_dim=6, match_dim=4, fusion_dim=5, context_hidden_dim=3)
    args.update(kw)
    return ActionModule(**args)


def _action_inputs():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(2, 4, 8, generator=g)
    v0 = torch.randn(2, 8, generator=g)
    f = torch.randn(2, 4, 8, generator=g)
    boxes = torch.rand(2, 4, 4, generator=g) * 20
    boxes[..., 2:] += boxes[..., :2] + 5
    q = torch.randn(2, 6, generator=g)
    return v, v0, f, boxes, q


def test_action_module_scores_and_context():
    v, v0, f, boxes, q = _action_inputs()
    full = _action()
    s = full(v, v0, f, boxes, q)
    assert s.shape == (2, 2, 4)
    v_action, weights = full.visual_features(v, v0, f, boxes)
    assert v_action.shape == (2, 4, 5) and weights.shape == (2, 4, 4)
    # The context: changing another tube (or the clip feature) changes tube 0's score ...
    v2 = v.clone()
    v2[:, 1] += 1.0
    assert not torch.allclose(full(v2, v0, f, boxes, q)[:, :, 0], s[:, :, 0])
    assert not torch.allclose(full(v, v0 + 1.0, f, boxes, q), s)
    # ... but not without the contextual LSTM.
    no_ctx = _action(use_context_lstm=False)
    assert no_ctx.context is None and no_ctx.fusion.fc_a.in_features == 8
    assert torch.allclose(
        no_ctx(v2, v0, f, boxes, q)[:, :, 0], no_ctx(v, v0 + 1.0, f, boxes, q)[:, :, 0]
    )
    # The motion feature matters, unless the module has none.
    assert not torch.allclose(full(v, v0, f + 1.0, boxes, q), s)
    no_motion = _action(use_motion=False)
    assert torch.allclose(no_motion(v, v0, None, boxes, q), no_motion(v, v0, f, boxes, q))
    with pytest.raises(ValueError, match="motion"):
        full(v, v0, None, boxes, q)


def test_action_module_ablations_change_parameters():
    def names(m):
        return {k: tuple(p.shape) for k, p in m.named_parameters()}

    base = names(_action())
    for kw in (
        dict(use_context_attention=False),
        dict(gated_fusion=False),
        dict(use_context_lstm=False),
        dict(use_motion=False),
    ):
        assert names(_action(**kw)) != base, kw
    v, v0, f, boxes, q = _action_inputs()
    mean = _action(use_context_attention=False)
    assert mean(v, v0, f, boxes, q).shape == (2, 2, 4)
    assert _action(gated_fusion=False)(v, v0, f, boxes, q).shape == (2, 2, 4)


def test_gradients_reach_every_input():
    v, v0, f, boxes, q = _action_inputs()
    for x in (v, v0, f, q):
        x.requires_grad_(True)
    _action()(v, v0, f, boxes, q).sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (v, v0, f, q))


def test_action_module_feature_choice():
    v, v0, f, boxes, q = _action_inputs()
    # "(Action Module) w/o RGB": v_action = W7 f_k + b7, no contextual LSTM, v and v_0 unused.
    motion_only = _action(use_appearance=False)
    assert motion_only.context is None and not motion_only.use_context_lstm
    assert isinstance(motion_only.fusion, torch.nn.Linear) and motion_only.fusion.in_features == 8
    v_action, weights = motion_only.visual_features(v, v0, f, boxes)
    assert weights is None and torch.allclose(v_action, motion_only.fusion(f))
    s = motion_only(v, v0, f, boxes, q)
    assert torch.equal(motion_only(v + 1.0, v0 - 1.0, f, boxes, q), s)
    assert not torch.allclose(motion_only(v, v0, f + 1.0, boxes, q), s)
    # "(Action Module) w/o Optical Flow": v_action = W6 [v_k, v_c] + b6, the motion unused.
    appearance_only = _action(use_motion=False)
    assert appearance_only.fusion.in_features == 8 + 3
    assert torch.equal(
        appearance_only(v, v0, f + 1.0, boxes, q), appearance_only(v, v0, f, boxes, q)
    )
    with pytest.raises(ValueError, match="appearance feature, the motion feature or both"):
        _action(use_appearance=False, use_motion=False)
    with pytest.raises(ValueError, match="motion"):
        motion_only(v, v0, None, boxes, q)


def test_matching_norm_scale_scales_the_product_quadratically():
    """MODEL.AAMN.MATCH_NORM_SCALE: both embeddings are normalised to norm s, so the element-wise
    product (and the score without its bias) grows by s**2; s = 1 is the paper's L2
    normalisation."""
    from aamn.modeling.actor_module import ScoreHead

    torch.manual_seed(0)
    unit = ScoreHead(7, 5, 16)
    scaled = ScoreHead(7, 5, 16, norm_scale=4.0)
    scaled.load_state_dict(unit.state_dict())
    v, q = torch.randn(2, 3, 7), torch.randn(4, 5)
    bias = unit.score_fc.bias
    torch.testing.assert_close(scaled(v, q) - bias, 16.0 * (unit(v, q) - bias))

    def pairs(head, v, q):  # clip b with query b: (B, K)
        return torch.stack([head(v[b : b + 1], q[b : b + 1])[0, 0] for b in range(len(q))])

    torch.testing.assert_close(
        pairs(scaled, v, q[:2]) - bias, 16.0 * (pairs(unit, v, q[:2]) - bias)
    )
    with pytest.raises(ValueError, match="MATCH_NORM_SCALE"):
        ScoreHead(7, 5, 16, norm_scale=0.0)


def test_expand_boxes_grows_about_the_centre_and_clips():
    from aamn.modeling.box_ops import expand_boxes

    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 20.0, 10.0]])
    sizes = torch.tensor([[48.0, 64.0], [48.0, 64.0]])
    assert expand_boxes(boxes, 1.0, sizes) is boxes
    grown = expand_boxes(boxes, 1.5, sizes)
    assert torch.allclose(grown[0], torch.tensor([5.0, 15.0, 35.0, 45.0]))  # centre kept, 1.5x size
    assert torch.allclose(
        grown[1], torch.tensor([0.0, 0.0, 25.0, 12.5])
    )  # clipped at the frame's origin
    edge = expand_boxes(torch.tensor([[50.0, 40.0, 64.0, 48.0]]), 2.0, sizes[:1])
    assert torch.allclose(edge, torch.tensor([[43.0, 36.0, 64.0, 48.0]]))  # clipped at (w, h)
    with pytest.raises(ValueError, match="BOX_EXPAND"):
        expand_boxes(boxes, 0.9, sizes)
