"""The comparison systems: DynamicFilterSeg (Gavrilyuk et al. 2018) and CMDy, on tiny inputs."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from detectron2.modeling import build_model

from aamn.benchmark.comparison import STRIDE8
from aamn.modeling import resolve_vocabulary
from aamn.config import get_aamn_cfg
from aamn.modeling import BiGRUMaxEncoder, Conv1dMaxEncoder, StreamCheckpointer
from aamn.modeling.clip_baselines import (
    coord_features,
    downsample_targets,
    key_frame_outputs,
    masks_from_logits,
    with_coords,
)
from aamn.modeling.meta_arch.cmdy import (
    CMDyHead,
    CMDyModule,
    ConvLSTM,
    deformable_windows,
    local_windows,
)
from aamn.modeling.meta_arch.dynamic_filter import DynamicFilterHead

from modeling_helpers import (  # noqa: F401
    baseline_opts,
    loss_curve,
    make_clip,
    make_vocab,
    seed_all,
    single_thread,
    vocab_file,
)

H, W = 48, 64  # the canvas: stride 16 -> a 3 x 4 map


def _cfg(vocab_file, arch, *opts):
    return get_aamn_cfg(opts=baseline_opts(arch, vocab_file) + list(opts))


def _model(vocab_file, arch, *opts, seed=0):
    seed_all(seed)
    cfg = _cfg(vocab_file, arch, *opts)
    resolve_vocabulary(cfg)
    return build_model(cfg)


def _batch(n=2, **kw):
    return [make_clip(seed=i, T=3, K=2, h=H, w=W, **kw) for i in range(n)]


# ------------------------------------------------------------------------------ shared parts
def test_coordinate_features_by_hand():
    c = coord_features(2, 4)
    assert c.shape == (8, 2, 4)
    assert c[:, 1, 2].tolist() == pytest.approx(
        [0.0, 0.5, 0.0, 1.0, 0.25, 0.5, 0.25, 0.5]
    )  # cell (1, 2)
    v = with_coords(torch.randn(3, 5, 2, 4))
    assert torch.allclose(v[:, :5].norm(dim=1), torch.ones(3, 2, 4)) and torch.equal(v[0, 5:], c)


def test_targets_are_area_downsampled_at_half():
    Y = torch.zeros(1, 8, 8)
    Y[0, :4, :2] = 1  # cell (0, 0) of a 2x2 grid covered by half: kept; cell (0, 1) empty
    Y[0, 4:, 4:5] = 1  # cell (1, 1) covered by a quarter: dropped
    assert downsample_targets(Y, (2, 2)).tolist() == [[[1.0, 0.0], [0.0, 0.0]]]


def test_half_max_rule_on_a_constructed_map():
    p = torch.tensor([[[0.1, 0.3, 0.31], [0.6, 0.2, 0.05]]])
    assert masks_from_logits(p, "half_max").tolist() == [
        [[False, False, True], [True, False, False]]
    ]
    assert masks_from_logits(p, "fixed", 0.5).tolist() == [
        [[False, False, False], [True, False, False]]
    ]
    low = torch.full((1, 2, 2), 0.01)
    low[0, 0, 0] = 0.03
    assert masks_from_logits(low, "half_max").sum() == 1  # never empty, however low the map
    with pytest.raises(ValueError, match="THRESHOLD_MODE"):
        masks_from_logits(p, "otsu")


def test_key_frame_outputs_crop_resize_and_score():
    logits = torch.full((1, 8, 8), -5.0)
    logits[0, :2, :2] = 5.0  # the padded canvas: the frame is the top-left 4 x 6
    x = {"height": 8, "width": 12}
    (out,) = key_frame_outputs(logits, [x], [(4, 6)], "fixed", 0.5)
    inst = out["instances"]
    assert inst.image_size == (8, 12) and inst.pred_masks.shape == (1, 8, 12)
    m = inst.pred_masks[0]
    assert m[:3, :3].all() and not m[5:].any() and not m[:, 6:].any()
    ys, xs = torch.nonzero(m, as_tuple=True)
    assert inst.pred_boxes.tensor[0].tolist() == [0, 0, float(xs.max() + 1), float(ys.max() + 1)]
    probs = F.interpolate(logits[None, :, :4, :6], (8, 12), mode="bilinear")[0, 0].sigmoid()
    assert float(inst.scores) == pytest.approx(float(probs[m].mean()))
    (empty,) = key_frame_outputs(torch.full((1, 8, 8), -5.0), [x], [(4, 6)], "fixed", 0.5)
    assert (
        float(empty["instances"].scores) == 0
        and empty["instances"].pred_boxes.tensor.abs().sum() == 0
    )


# ------------------------------------------------------------------------------ text encoders
def test_conv1d_max_encoder_ignores_padding_and_takes_the_max_window():
    torch.manual_seed(0)
    enc = Conv1dMaxEncoder(vocab=make_vocab(), embed_dim=6)
    alone = enc([["a", "red", "dog"]])
    batched = enc([["a", "red", "dog"], ["a", "man", "is", "running", "left", "right"]])
    assert torch.allclose(alone["sentence"][0], batched["sentence"][0], atol=1e-6)
    e = alone["embeddings"][0]  # (3, 6); windows (w0, w1), (w1, w2), (w2, 0)
    pairs = torch.stack(
        [torch.cat([e[i], e[i + 1] if i + 1 < 3 else torch.zeros(6)]) for i in range(3)]
    )
    weight = torch.cat([enc.conv.weight[:, :, 0], enc.conv.weight[:, :, 1]], dim=1)  # (6, 12)
    windows = torch.relu(pairs @ weight.T + enc.conv.bias)
    assert torch.allclose(alone["sentence"][0], windows.max(dim=0).values, atol=1e-6)


def test_bigru_max_encoder_maxes_over_real_words():
    torch.manual_seed(0)
    enc = BiGRUMaxEncoder(vocab=make_vocab(), embed_dim=6, hidden_dim=5)
    out = enc([["a", "man", "is", "running"], ["dog"]])
    assert out["sentence"].shape == (2, 10) and enc.sentence_dim == 10
    assert torch.allclose(out["sentence"][1], out["word_states"][1, 0])  # one word
    assert torch.allclose(out["sentence"][0], out["word_states"][0].max(dim=0).values)
    assert torch.allclose(enc([["dog"]])["sentence"][0], out["sentence"][1], atol=1e-6)


# ------------------------------------------------------------------------------ DynamicFilterSeg
def test_dynamic_filter_response_is_a_hand_computed_1x1_convolution(vocab_file):
    model = _model(vocab_file, "DynamicFilterSeg", "MODEL.DYNAMIC_FILTER.STREAMS", "['rgb']").eval()
    head = model.heads["rgb"]
    X = torch.randn(2, 3, 16, 3, 4)
    tokens = [["a", "man"], ["red", "dog", "jumping"]]
    S32, S128, S512 = head(X, tokens, (48, 64))
    assert S32.shape == (2, 3, 4) and S128.shape == (2, 12, 16) and S512.shape == (2, 48, 64)
    T = head.language(tokens)["sentence"]
    V = with_coords(head.clip_encoder(X).mean(1))  # (2, 24, 3, 4)
    f = torch.tanh(head.filters[0](T))  # Eq. (1)
    by_conv = torch.stack([F.conv2d(V[b : b + 1], f[b].view(1, -1, 1, 1))[0, 0] for b in range(2)])
    assert torch.allclose(S32, by_conv, atol=1e-5)  # Eq. (2)


def test_dynamic_filter_loss_weights_follow_eq5(vocab_file):
    head = _model(vocab_file, "DynamicFilterSeg", "MODEL.DYNAMIC_FILTER.STREAMS", "['rgb']").heads[
        "rgb"
    ]
    maps = [torch.randn(1, 3, 4), torch.randn(1, 12, 16), torch.randn(1, 48, 64)]
    Y = (torch.rand(1, 48, 64) > 0.5).float()
    parts = [
        F.binary_cross_entropy_with_logits(m, downsample_targets(Y, m.shape[-2:])) for m in maps
    ]
    # log(1 + exp(-S Y')) with Y' in {-1, +1} is the BCE with logits of Eq. (3)-(4).
    assert torch.allclose(
        parts[2], torch.log1p(torch.exp(-maps[2] * (2 * Y - 1))).mean(), atol=1e-6
    )
    head.loss_weights = [1.0, 1.0, 1.0]
    assert torch.allclose(head.losses(maps, Y), sum(parts))
    head.loss_weights = [0.0, 0.5, 2.0]
    assert torch.allclose(head.losses(maps, Y), 0.5 * parts[1] + 2.0 * parts[2])


def test_two_stream_average_weights_the_streams_2_to_1(vocab_file):
    model = _model(vocab_file, "DynamicFilterSeg").eval()
    assert model.streams == ["rgb", "flow"] and set(model.heads) == {"rgb", "flow"}
    seen = {}
    for s in ("rgb", "flow"):
        model.heads[s].register_forward_hook(lambda m, a, out, s=s: seen.__setitem__(s, out[-1]))
    captured = {}
    import aamn.modeling.clip_baselines as cb

    original = cb.key_frame_outputs

    def spy(logits, *args):
        captured["logits"] = logits
        return original(logits, *args)

    cb.key_frame_outputs = spy
    try:
        model(_batch())
    finally:
        cb.key_frame_outputs = original
    assert torch.allclose(captured["logits"], (2 * seen["rgb"] + seen["flow"]) / 3, atol=1e-6)
    # STREAM_FUSION "probs": the weighted mean of the probabilities (as its logit)
    model.stream_fusion = "probs"
    cb.key_frame_outputs = spy
    try:
        model(_batch())
    finally:
        cb.key_frame_outputs = original
    probs = (2 * seen["rgb"].sigmoid() + seen["flow"].sigmoid()) / 3
    assert torch.allclose(captured["logits"].sigmoid(), probs, atol=1e-5)
    # Training sums one loss per stream; each stream is a full sub-model (its own encoder).
    model.train()
    losses = model(_batch())
    assert set(losses) == {"loss_seg_rgb", "loss_seg_flow"}
    assert model.heads["rgb"].language is not model.heads["flow"].language


def test_probability_fusion_bounds_a_confident_stream_by_its_weight():
    """By hand: a flow logit of -10 against an RGB logit of +2 (weights 2:1) drags the logit mean
    to -2 (probability 0.12); the probability mean stays at 0.59 (2/3 of the RGB's 0.88)."""
    from aamn.modeling.clip_baselines import fuse_streams

    maps = {"rgb": torch.tensor([[[2.0]]]), "flow": torch.tensor([[[-10.0]]])}
    weights = {"rgb": 2.0, "flow": 1.0}
    assert fuse_streams(maps, weights, "logits").item() == pytest.approx(-2.0)
    p = (2 * torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(-10.0))) / 3
    assert fuse_streams(maps, weights, "probs").sigmoid().item() == pytest.approx(p.item(), 1e-5)
    assert fuse_streams({"rgb": maps["rgb"]}, weights, "probs").item() == pytest.approx(2.0, 1e-4)


def test_flow_only_stream_reads_no_rgb(vocab_file):
    model = _model(
        vocab_file, "DynamicFilterSeg", "MODEL.DYNAMIC_FILTER.STREAMS", "['flow']"
    ).eval()
    assert model.backbone is None and model.flow_backbone is not None
    batch = _batch()
    other = [dict(x, image=(255 - x["image"].int()).to(torch.uint8)) for x in batch]
    a, b = model(batch), model(other)
    assert torch.equal(a[0]["instances"].pred_masks, b[0]["instances"].pred_masks)


# ------------------------------------------------------------------------------ CMDy
def test_grid_sample_deformable_windows_equal_torchvision_deform_conv2d():
    torch.manual_seed(0)
    B, D, h, w = 2, 3, 5, 7
    x = torch.randn(B, D, h, w)
    offsets = torch.randn(B, 18, h, w) * 1.5  # some samples fall outside: zeros there
    one_hot = torch.zeros(9 * D, 1, 3, 3)
    for c in range(D):
        for tap in range(9):
            one_hot[9 * c + tap, 0, tap // 3, tap % 3] = 1.0
    reference = deform_conv2d(x, offsets, one_hot, padding=1).view(B, D, 9, h, w)
    assert torch.allclose(deformable_windows(x, offsets), reference, atol=1e-5)
    # Without offsets the deformed windows are the plain 3x3 neighbourhoods.
    assert torch.allclose(
        deformable_windows(x, torch.zeros(B, 18, h, w)), local_windows(x), atol=1e-5
    )


def test_conv_lstm_carries_state_across_time():
    torch.manual_seed(0)
    lstm = ConvLSTM(4)
    x = torch.randn(1, 3, 4, 5, 5)
    last, states = lstm(x)
    assert len(states) == 3 and torch.equal(last, states[-1])
    changed = x.clone()
    changed[:, 0] += 1.0  # only the first frame differs
    last2, states2 = lstm(changed)
    assert not torch.allclose(states[2], states2[2])  # ... and the last state feels it
    alone, _ = lstm(x[:, 2:])  # the last frame without its past
    assert not torch.allclose(alone, last)


def test_cmdy_group_response_by_hand():
    torch.manual_seed(0)
    m = CMDyModule(channels=4, text_dim=3, groups=2, conv="group")
    x, text = torch.randn(1, 4, 2, 3), torch.randn(1, 3)
    k = torch.tanh(m.text_kernel(text))[0]
    g = m.grouped_response(x, text)
    assert torch.allclose(
        g[0, 0], k[0] * x[0, 0] + k[1] * x[0, 1], atol=1e-6
    )  # Eq. (8), c = jN + i
    assert torch.allclose(g[0, 1], k[2] * x[0, 2] + k[3] * x[0, 3], atol=1e-6)
    ctx = CMDyModule(channels=4, text_dim=3, groups=2, conv="context")
    kv = torch.tanh(ctx.visual_kernel(x)).view(1, 4, 9, 2, 3)
    kt = torch.tanh(ctx.text_kernel(text))[0]
    U = local_windows(x)
    expected = sum(kt[c] * (kv[0, c] * U[0, c]).sum(0) for c in (2, 3))  # Eq. (11), group 1
    assert torch.allclose(ctx.grouped_response(x, text)[0, 1], expected, atol=1e-5)


def test_cmdy_grouped_visual_kernels_read_their_group_only():
    """VISUAL_KERNEL_GROUPS g: channel c's 9 kernels k^V_{c,l} (Eq. 10) come from c's group of
    channels, with g times fewer weights; 1 is the dense convolution."""
    torch.manual_seed(0)
    dense = CMDyModule(channels=8, text_dim=3, groups=4, conv="context")
    grouped = CMDyModule(channels=8, text_dim=3, groups=4, conv="context", visual_kernel_groups=4)
    assert grouped.visual_kernel.weight.numel() * 4 == dense.visual_kernel.weight.numel()
    x = torch.randn(1, 8, 5, 6)
    y = x.clone()
    y[:, 7] += 1.0  # a channel of the last group (channels 6, 7)
    for m, changed in ((grouped, [6, 7]), (dense, list(range(8)))):
        kv_x = m.visual_kernel(x).view(1, 8, 9, 5, 6)
        kv_y = m.visual_kernel(y).view(1, 8, 9, 5, 6)
        moved = [c for c in range(8) if not torch.allclose(kv_x[:, c], kv_y[:, c])]
        assert moved == changed
    assert grouped(x, torch.randn(1, 3)).shape == (1, 8, 5, 6)
    with pytest.raises(ValueError, match="VISUAL_KERNEL_GROUPS 3 must divide"):
        CMDyModule(channels=8, text_dim=3, groups=4, conv="context", visual_kernel_groups=3)


def test_cmdy_foreground_weight_follows_eq16(vocab_file):
    head = _model(vocab_file, "CMDy").heads["rgb"]
    R = torch.randn(1, 6, 8)
    Y = (torch.rand(1, 6, 8) > 0.7).float()
    p = R.sigmoid()
    by_hand = (-1.5 * Y * p.log() - (1 - Y) * (1 - p).log()).mean()
    assert torch.allclose(head.losses([R], Y), by_hand, atol=1e-5)
    head.fg_weight.fill_(1.0)
    assert torch.allclose(head.losses([R], Y), F.binary_cross_entropy_with_logits(R, Y), atol=1e-6)


# CMDy's Table 3: baseline DyConv, group DyConv, context, deformable, + temporal.
TABLE3 = [("dyconv", False), ("group", False), ("context", False), ("deformable", False)]
TABLE3.append(("deformable", True))


def test_each_table3_row_builds_a_different_model_that_trains(vocab_file):
    batch = _batch()
    seen, outputs = set(), []
    for conv, temporal in TABLE3:
        model = _model(
            vocab_file, "CMDy", "MODEL.CMDY.CONV", conv, "MODEL.CMDY.TEMPORAL", str(temporal)
        )
        head = model.heads["rgb"]
        modules = len(head.cmdy_modules)
        assert modules == {"dyconv": 0, "group": 1}.get(conv, 3)
        assert (head.temporal is not None) == temporal
        names = frozenset((n, tuple(p.shape)) for n, p in model.named_parameters())
        assert names not in seen, conv
        seen.add(names)
        model.train()
        loss = model(batch)["loss_seg"]
        loss.backward()
        assert torch.isfinite(loss)
        untrained = [n for n, p in model.named_parameters() if p.grad is None]
        assert not untrained, (conv, temporal, untrained)
        model.eval()
        outputs.append(model(batch)[0]["instances"].pred_masks.shape)
    assert all(s == (1, H, W) for s in outputs)


def test_deformable_offsets_start_at_zero_and_change_the_computation(vocab_file):
    model = _model(vocab_file, "CMDy").eval()
    head = model.heads["rgb"]
    module = head.cmdy_modules[0]
    assert module.offsets.weight.abs().sum() == 0  # DCNv1: the windows start undeformed
    X, tokens = torch.randn(1, 3, 16, 3, 4), [["a", "dog"]]
    with torch.no_grad():
        before = head(X, tokens, (48, 64))[0]
        module.offsets.bias.fill_(0.7)
        after = head(X, tokens, (48, 64))[0]
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("arch", ["DynamicFilterSeg", "CMDy"])
def test_training_steps_reduce_the_loss_and_checkpoint_round_trip(vocab_file, tmp_path, arch):
    model = _model(vocab_file, arch)
    batch = _batch(4)
    totals = loss_curve(model, batch, torch.optim.Adam(model.parameters(), lr=1e-2), 12)
    assert totals[-1] < 0.7 * totals[0], totals
    model.eval()
    StreamCheckpointer(model, str(tmp_path)).save("m")
    again = _model(
        vocab_file,
        arch,
        "MODEL.LANGUAGE.VOCAB_FILE",
        "",
        "MODEL.WEIGHTS",
        str(tmp_path / "m.pth"),
        seed=3,
    )
    StreamCheckpointer(again).load(str(tmp_path / "m.pth"))
    again.eval()
    a, b = model(batch), again(batch)
    assert torch.equal(a[0]["instances"].pred_masks, b[0]["instances"].pred_masks)


def test_head_shapes_of_the_dynamic_filter_and_cmdy(vocab_file):
    cfg = _cfg(vocab_file, "CMDy")
    head = CMDyHead(cfg, 16)
    out = head(torch.randn(2, 3, 16, 3, 4), [["a"], ["dog", "running"]], (48, 64))
    assert len(out) == 1 and out[0].shape == (2, 48, 64)
    head = DynamicFilterHead(_cfg(vocab_file, "DynamicFilterSeg"), 16)
    with pytest.raises(ValueError, match="input size"):
        head(torch.randn(1, 3, 16, 3, 4), [["a"]], (50, 64))


def test_dynamic_filter_decoder_on_stride_8_maps(vocab_file):
    """On stride-8 maps (the resolution check) the first block upsamples x2: the responses are at
    strides 8, 4 and 1, as on stride-16 maps at 16, 4 and 1; a whole model on res3 trains."""
    cfg = _cfg(vocab_file, "DynamicFilterSeg")
    head = DynamicFilterHead(cfg, 16, 8)
    out = head(torch.randn(2, 3, 16, 6, 8), [["a"], ["dog", "running"]], (48, 64))
    assert [tuple(r.shape) for r in out] == [(2, 6, 8), (2, 12, 16), (2, 48, 64)]
    with pytest.raises(ValueError, match="stride 4"):
        DynamicFilterHead(cfg, 16, 4)
    model = _model(vocab_file, "DynamicFilterSeg", *STRIDE8)
    assert model.heads["rgb"].decoder[0][0].stride == (2, 2)
    losses = model(_batch())
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    from fixtures import register_square

    # no proposal file: the baselines read none
    return register_square(tmp_path_factory, (3, 5, 7), proposals=False, prefix="baseline_square")[
        1
    ]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["DynamicFilterSeg", "CMDy"])
def test_trainer_trains_and_evaluates_the_baselines(vocab_file, square, tmp_path, arch):
    from aamn.engine import Trainer

    opts = [
        "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "48",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.OPTIMIZER", "AdamW", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path), "MODEL.LANGUAGE.VOCAB_FILE", "",
        "DATASETS.TRAIN", f"('{square}',)", "DATASETS.TEST", f"('{square}',)",
    ]  # fmt: skip
    trainer = Trainer(_cfg(vocab_file, arch, *opts))
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = trainer._last_eval_results
    assert {"P@0.5", "mean_IoU", "COCO_mAP"} <= set(results["segm"]) and "loc" in results
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["vocabulary"][:2] == [
        "<pad>",
        "<unk>",
    ]


def test_a2d_configs_hold_the_papers_settings():
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    df = get_aamn_cfg(os.path.join(repo, "configs", "a2d_sentences", "dynamic_filter_R50.yaml"))
    D = df.MODEL.DYNAMIC_FILTER
    assert list(D.STREAMS) == ["rgb", "flow"] and list(D.STREAM_WEIGHTS) == [2.0, 1.0]
    assert list(D.DECODER_DIMS) == [256, 64] and list(D.LOSS_WEIGHTS) == [1.0, 1.0, 1.0]
    assert (df.SOLVER.BASE_LR, df.SOLVER.STEPS, df.SOLVER.MAX_ITER) == (1e-3, (5000, 10000), 15000)
    cm = get_aamn_cfg(os.path.join(repo, "configs", "jhmdb_sentences", "cmdy_R50.yaml"))
    C = cm.MODEL.CMDY
    assert (C.CONV, C.TEMPORAL, C.GROUPS, C.DECON_DIM, C.FG_WEIGHT) == (
        "deformable",
        True,
        64,
        256,
        1.5,
    )
    assert (
        C.THRESHOLD_MODE == "half_max"
        and list(C.STREAMS) == ["rgb"]
        and cm.SOLVER.IMS_PER_BATCH == 36
    )
    assert cm.MODEL.LANGUAGE.HIDDEN_DIM == 300 and cm.DATASETS.TEST == ("jhmdb_sentences_test",)
    for cfg in (df, cm):
        assert cfg.INPUT.CLIP.HALF_LENGTH == 8 and not cfg.INPUT.CLIP.LOAD_PROPOSALS
        assert cfg.MODEL.CLIP_ENCODER.IN_FEATURE == "res4" and cfg.SOLVER.WEIGHT_DECAY == 0.0


def test_cmdy_decoders_see_the_l2_clip_mean_and_the_convlstm_state(vocab_file):
    """F_V^S = L2(mean_t X) enters Decon_a; the ConvLSTM's last hidden state enters Decon_b."""
    head = _model(vocab_file, "CMDy").eval().heads["rgb"]
    seen = {}
    head.decon_a.register_forward_pre_hook(lambda m, args: seen.__setitem__("a", args[0]))
    head.decon_b.register_forward_pre_hook(lambda m, args: seen.__setitem__("b", args[0]))
    X = torch.randn(2, 3, 16, 3, 4)
    with torch.no_grad():
        head(X, [["a"], ["dog"]], (48, 64))
        encoded = head.clip_encoder(X)
        expected_a = F.normalize(encoded.mean(dim=1), dim=1)
        expected_b = head.temporal(encoded)[0]
    assert torch.allclose(seen["a"], expected_a, atol=1e-6)
    assert torch.allclose(seen["a"].norm(dim=1), torch.ones(2, 3, 4), atol=1e-5)
    assert torch.allclose(seen["b"], expected_b, atol=1e-6)


@pytest.mark.parametrize("init_flow", [True, False])
def test_flow_stream_from_rgb_weights_follows_the_config(vocab_file, tmp_path, init_flow):
    """MODEL.INIT_FLOW_FROM_RGB applies to the comparison systems as to AAMN: a file with
    ``backbone.*`` only (a detector's) fills the Flow backbone too, unless the key is False."""
    source = _model(vocab_file, "DynamicFilterSeg", seed=1)
    weights = {k: v for k, v in source.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": weights}, tmp_path / "detector.pth")
    model = _model(
        vocab_file, "DynamicFilterSeg", "MODEL.INIT_FLOW_FROM_RGB", str(init_flow), seed=2
    )
    before = model.flow_backbone.state_dict()["stem.weight"].clone()
    StreamCheckpointer(model).load(str(tmp_path / "detector.pth"))
    rgb = source.backbone.state_dict()["stem.weight"]
    assert torch.equal(model.backbone.state_dict()["stem.weight"], rgb)
    flow = model.flow_backbone.state_dict()["stem.weight"]
    assert torch.equal(flow, rgb) if init_flow else torch.equal(flow, before)


@pytest.mark.parametrize("arch", ["DynamicFilterSeg", "CMDy"])
def test_frames_of_any_size_are_segmented(vocab_file, arch):  # noqa: F811
    """Frames whose size is not a multiple of the feature stride (a user's video): the canvas is
    padded to the stride and the mask cropped back to the frame."""
    model = _model(vocab_file, arch).eval()
    x = make_clip(seed=0, T=3, K=2, h=48, w=59, flow=arch == "DynamicFilterSeg")
    with torch.no_grad():
        inst = model([x])[0]["instances"]
    assert inst.pred_masks.shape == (1, 48, 59)
