"""Table IV's ablation models as config switches of the one AAMN class (tiny backbone, CPU).

Every row of ``aamn.modeling.ablations.ABLATIONS`` merges into a config, builds and runs; each is a
different model; the rows combine unless ``check_ablation_config`` rejects the pair with a message
naming the keys; and the rows added for Table IV change what they claim to change (the inputs the
scores depend on, the parameters they have).
"""

import itertools
import sys

import aamn.modeling.ablations

import pytest
import torch

from detectron2.modeling import build_model

from aamn.config import ConfigError, get_aamn_cfg
from aamn.modeling import (
    AAMN,
    ABLATIONS,
    StreamCheckpointer,
    WordEmbeddingEncoder,
    ablation_overrides,
    check_ablation_config,
)

from modeling_helpers import make_clip, make_vocab, seed_all, single_thread, tiny_cfg  # noqa: F401

ROWS = list(ABLATIONS)
TUBE_DIM, CHANNELS = 32, 16  # tiny_cfg: MODEL.AAMN.TUBE_DIM, channels of the res3 maps


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    make_vocab().save(path)
    return str(path)


def _cfg(vocab_file, opts=()):
    cfg = tiny_cfg(vocab_file)
    cfg.merge_from_list(list(opts))
    return cfg


def _model(vocab_file, opts=(), seed=0):
    seed_all(seed)
    return build_model(_cfg(vocab_file, opts))


def _row(vocab_file, name, extra=(), seed=0):
    return _model(vocab_file, ablation_overrides(name) + list(extra), seed)


def _batch(n=2, flow=True):
    return [make_clip(seed=i, video_id=f"v{i % 2}", instance_id=i, flow=flow) for i in range(n)]


def _param_shapes(model):
    return {k: tuple(v.shape) for k, v in model.named_parameters()}


def _scores(model, batch):
    return torch.stack([o["tube_scores"] for o in model(batch)])


def _with_rgb_changed(batch):
    """The same clips with other RGB pixel values (same sizes, boxes, flow and queries)."""
    return [dict(x, image=(255 - x["image"].int()).to(torch.uint8)) for x in batch]


def _with_flow_changed(batch):
    return [dict(x, flow=x["flow"].flip(-1) + 1.0) for x in batch]


def _features(model, batch):
    """The backbone feature maps of both streams for the ``B*T`` frames of ``batch`` (the part of
    ``AAMN.read_clips``' output that ``AAMN.mask_logits`` reads)."""
    rgb = model.normalize_frames(batch, "rgb", model.backbone.size_divisibility)
    flow = model.normalize_frames(batch, "flow", model.flow_backbone.size_divisibility)
    return {
        "rgb_features": model.backbone(rgb.tensor),
        "flow_features": model.flow_backbone(flow.tensor),
        "boxes": torch.stack([x["proposal_boxes"] for x in batch]),
        "T": batch[0]["image"].shape[0],
    }


def _keys(opts):
    return [k.split(".")[-1] for k in opts[::2]]


# ---------------------------------------------------------------------------------- the table
def test_ablations_list_the_14_rows_of_table_iv_in_order():
    assert ROWS == [
        "Baseline Model",
        "AAMN w/o Actor Module",
        "AAMN w/o Action Module",
        "AAMN w/o Location Feature",
        "AAMN w/o Contextual LSTM",
        "AAMN w/o Attention",
        "AAMN w/o Gated Fusion",
        "AAMN w/o Flow Stream",
        "AAMN w/o RGB Stream",
        "AAMN (FCN) w/o Optical Flow",
        "AAMN (Action Module) w/o Optical Flow",
        "AAMN (Action Module) w/o RGB",
        "AAMN (Actor Module) w/ Optical Flow",
        "AAMN (Full Model)",
    ]
    assert ABLATIONS["AAMN (Full Model)"] == []
    table_doc = aamn.modeling.ablations.__doc__
    for name, opts in ABLATIONS.items():
        assert len(opts) % 2 == 0 and all(isinstance(x, str) for x in opts), name
        assert name in table_doc, (
            name
        )  # the table, listed once (aamn.modeling.ablations), has every row
        # The runner's path: detectron2 defaults + the AAMN keys + the row's overrides.
        cfg = get_aamn_cfg(opts=opts)
        for key, value in zip(opts[::2], opts[1::2]):
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert str(node) == value, (name, key)
    assert ablation_overrides("AAMN w/o RGB Stream") is not ABLATIONS["AAMN w/o RGB Stream"]
    with pytest.raises(KeyError, match="Full Model"):
        ablation_overrides("AAMN w/o Everything")


def test_every_row_builds_trains_and_infers_as_a_different_model(vocab_file):
    shapes = {}
    for name in ROWS:
        cfg = _cfg(vocab_file, ABLATIONS[name])
        check_ablation_config(cfg)
        seed_all(0)
        model = build_model(cfg)
        assert isinstance(model, AAMN)
        batch = _batch(2, flow=cfg.INPUT.FLOW.ENABLED)  # the row's data pipeline
        model.train()
        losses = model(batch)
        assert set(losses) == {"loss_match", "loss_mask"} and all(
            torch.isfinite(v) for v in losses.values()
        ), name
        sum(losses.values()).backward()
        # Every parameter is trained, except the word attention of a module the row removes (the
        # encoder keeps both heads: the output reports both attentions).
        untrained = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
        removed = {"AAMN w/o Actor Module": "actor", "AAMN w/o Action Module": "action"}.get(name)
        prefix = f"matching_head.word_attention.{removed}_attention"
        allowed = {f"{prefix}.weight", f"{prefix}.bias"} if removed else set()
        assert untrained <= allowed, (name, untrained)
        model.eval()
        out = model(batch)
        assert out[0]["instances"].pred_masks.shape == (1, 48, 64), name
        assert out[0]["tube_scores"].shape == (4,), name
        for key in ("actor", "action"):
            assert float(out[0]["word_attention"][key].sum()) == pytest.approx(1.0, abs=1e-5), name
        shapes[name] = frozenset(_param_shapes(model).items())
    # Every row changes the parameters of the model (names or shapes): 14 different models.
    assert len(set(shapes.values())) == len(ROWS)


# Pairs of rows that check_ablation_config rejects: a module switch with the baseline (which has no
# modules), a feature of a stream or module that the other row removes, a switch that the other
# row leaves without effect.
REJECTED_PAIRS = {
    frozenset(p)
    for p in [
        *[("Baseline Model", r) for r in ROWS[1:7]],
        ("Baseline Model", "AAMN (Action Module) w/o Optical Flow"),
        ("Baseline Model", "AAMN (Action Module) w/o RGB"),
        ("Baseline Model", "AAMN (Actor Module) w/ Optical Flow"),
        ("AAMN w/o Actor Module", "AAMN w/o Action Module"),
        ("AAMN w/o Actor Module", "AAMN (Actor Module) w/ Optical Flow"),
        ("AAMN w/o Action Module", "AAMN (Action Module) w/o Optical Flow"),
        ("AAMN w/o Action Module", "AAMN (Action Module) w/o RGB"),
        ("AAMN w/o Contextual LSTM", "AAMN (Action Module) w/o RGB"),
        ("AAMN w/o Attention", "AAMN (Action Module) w/o RGB"),
        ("AAMN w/o Gated Fusion", "AAMN (Action Module) w/o Optical Flow"),
        ("AAMN w/o Gated Fusion", "AAMN (Action Module) w/o RGB"),
        ("AAMN w/o Flow Stream", "AAMN w/o RGB Stream"),
        ("AAMN w/o Flow Stream", "AAMN (Action Module) w/o RGB"),
        ("AAMN w/o Flow Stream", "AAMN (Actor Module) w/ Optical Flow"),
        ("AAMN w/o RGB Stream", "AAMN (FCN) w/o Optical Flow"),
        ("AAMN w/o RGB Stream", "AAMN (Action Module) w/o Optical Flow"),
        ("AAMN w/o RGB Stream", "AAMN (Actor Module) w/ Optical Flow"),
    ]
}


def test_rows_combine_unless_the_pair_is_rejected_with_the_keys_named(vocab_file):
    rejected = set()
    for a, b in itertools.combinations(ROWS, 2):
        opts_a, opts_b = ABLATIONS[a], ABLATIONS[b]
        if set(opts_a[::2]) & set(opts_b[::2]):
            continue  # the two rows set the same key: not a combination
        cfg = _cfg(vocab_file, opts_a + opts_b)
        try:
            check_ablation_config(cfg)
        except ConfigError as e:
            rejected.add(frozenset((a, b)))
            msg = str(e)
            assert any(k in msg for k in _keys(opts_a)) and any(k in msg for k in _keys(opts_b)), (
                a,
                b,
                msg,
            )
            with pytest.raises(ConfigError):
                build_model(cfg)  # the meta-architecture checks before building
            continue
        seed_all(0)
        model = build_model(cfg).train()
        losses = model(_batch(2, flow=cfg.INPUT.FLOW.ENABLED))
        assert all(torch.isfinite(v) for v in losses.values()), (a, b)
    assert rejected == REJECTED_PAIRS


A = "MODEL.AAMN."
INVALID = [
    (
        [A + "USE_RGB", "False", A + "USE_FLOW", "False"],
        r"USE_RGB and MODEL\.AAMN\.USE_FLOW cannot both",
    ),
    ([A + "USE_RGB", "False"], r"LINK_FEATURE='rgb' needs MODEL\.AAMN\.USE_RGB=True"),
    (
        [A + "USE_RGB", "False", A + "LINK_FEATURE", "both"],
        r"LINK_FEATURE='both' needs MODEL\.AAMN\.USE_RGB",
    ),
    (
        [A + "USE_RGB", "False", A + "LINK_FEATURE", "flow", A + "MASK_HEAD.USE_FLOW", "False"],
        r"MASK_HEAD\.USE_FLOW=False leaves the mask head without input",
    ),
    ([A + "MATCHING", "modules"], r"Unknown MODEL\.AAMN\.MATCHING 'modules'"),
    ([A + "ACTION_FEATURES", "optical"], r"Unknown MODEL\.AAMN\.ACTION_FEATURES 'optical'"),
    (
        [A + "MATCHING", "baseline", A + "USE_LOCATION", "False"],
        r"USE_LOCATION=False would have no effect",
    ),
    ([A + "MATCHING", "baseline", A + "RANDOM_WORD_ATTENTION", "True"], r"RANDOM_WORD_ATTENTION"),
    (
        [A + "ACTION_FEATURES", "flow", A + "USE_FLOW", "False"],
        r"ACTION_FEATURES='flow' needs the Flow",
    ),
    (
        [A + "ACTION_FEATURES", "rgb", A + "USE_RGB", "False", A + "LINK_FEATURE", "flow"],
        r"ACTION_FEATURES='rgb' needs the RGB stream",
    ),
    (
        [A + "ACTION_FEATURES", "flow", A + "CONTEXT_ATTENTION", "False"],
        r"CONTEXT_ATTENTION=False would",
    ),
    (
        [A + "ACTION_FEATURES", "rgb", A + "GATED_FUSION", "False"],
        r"no fusion, so MODEL\.AAMN\.GATED_FUSION",
    ),
    (
        [A + "ACTION_FEATURES", "rgb", A + "USE_ACTION_MODULE", "False"],
        r"USE_ACTION_MODULE=False removes",
    ),
    (
        [A + "ACTOR_USES_FLOW", "True", A + "USE_FLOW", "False"],
        r"ACTOR_USES_FLOW=True needs the Flow",
    ),
    (
        [A + "ACTOR_USES_FLOW", "True", A + "USE_ACTOR_MODULE", "False"],
        r"ACTOR_USES_FLOW=True needs the actor",
    ),
]


@pytest.mark.parametrize("opts, message", INVALID)
def test_invalid_combinations_name_their_keys(vocab_file, opts, message):
    with pytest.raises(ConfigError, match=message):
        _model(vocab_file, opts)


def test_every_problem_is_reported_at_once(vocab_file):
    cfg = _cfg(vocab_file, ["MODEL.AAMN.USE_RGB", "False", "MODEL.AAMN.ACTOR_USES_FLOW", "True"])
    with pytest.raises(ValueError) as info:  # ConfigError is a ValueError
        check_ablation_config(cfg)
    assert "LINK_FEATURE='rgb'" in str(info.value) and "v_k already is f_k" in str(info.value)


# ---------------------------------------------------------------------------------- Baseline Model
def test_baseline_model_has_one_matching_head_and_no_modules(vocab_file):
    model = _row(vocab_file, "Baseline Model")
    names = set(_param_shapes(model))
    assert model.matching_head.actor_module is None and model.matching_head.action_module is None
    assert isinstance(model.language, WordEmbeddingEncoder)
    assert not any(
        n.startswith(("actor_module.", "action_module.", "language.lstms.")) for n in names
    )
    assert not any("attention" in n for n in names)
    assert {n for n in names if n.startswith("language.")} == {"language.embedding.weight"}
    assert (
        model.matching_head.baseline_module.head.visual_fc.in_features == 2 * TUBE_DIM
    )  # [v_k, f_k]
    # Linking, mask head and both streams are those of the full model.
    full = _param_shapes(_row(vocab_file, "AAMN (Full Model)"))
    for prefix in (
        "backbone.",
        "flow_backbone.",
        "rgb_head.",
        "flow_head.",
        "rgb_aggregation.",
        "mask_head.",
    ):
        assert {k: v for k, v in full.items() if k.startswith(prefix)} == {
            k: v for k, v in _param_shapes(model).items() if k.startswith(prefix)
        }, prefix
    single = _row(vocab_file, "Baseline Model", ["MODEL.AAMN.USE_FLOW", "False"])
    assert single.matching_head.baseline_module.head.visual_fc.in_features == TUBE_DIM


def test_baseline_scores_both_streams_against_the_mean_word_embedding(vocab_file):
    model = _row(vocab_file, "Baseline Model").eval()
    batch = _batch(2)
    seen = []
    handle = model.matching_head.baseline_module.register_forward_hook(
        lambda m, args, out: seen.append(args)
    )
    try:
        scores = _scores(model, batch)
        flow_scores = _scores(model, _with_flow_changed(batch))
    finally:
        handle.remove()
    (streams, query), (streams_f, _) = seen
    assert len(streams) == 2 and all(s.shape == (2, 4, TUBE_DIM) for s in streams)
    # The language representation: the mean of the embedded words.
    for b, x in enumerate(batch):
        ids, _ = model.language.encode_tokens([x["query_tokens"]])
        assert torch.allclose(query[b], model.language.embedding(ids)[0].mean(0), atol=1e-6)
    # The visual representation: [v_k, f_k]; only f_k moves with the flow.
    assert torch.equal(streams_f[0], streams[0]) and not torch.allclose(streams_f[1], streams[1])
    assert not torch.allclose(flow_scores, scores)
    # Mean pooling ignores the word order (the full model's BiLSTM attention does not), and the
    # reported word weights are the uniform 1/N.
    reordered = [dict(x, query_tokens=x["query_tokens"][::-1]) for x in batch]
    assert torch.allclose(_scores(model, reordered), scores, atol=1e-6)
    full = _row(vocab_file, "AAMN (Full Model)").eval()
    assert not torch.allclose(_scores(full, reordered), _scores(full, batch))
    out = model(batch)[0]
    n = len(batch[0]["query_tokens"])
    assert torch.allclose(out["word_attention"]["actor"], torch.full((n,), 1.0 / n))


def test_baseline_trains_on_a_fixed_batch(vocab_file):
    model = _row(vocab_file, "Baseline Model").train()
    batch = _batch(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    totals, match = [], []
    for _ in range(8):
        losses = model(batch)
        loss = sum(losses.values())
        totals.append(float(loss.detach()))
        match.append(float(losses["loss_match"].detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert totals[-1] < 0.8 * totals[0], totals
    assert match[-1] < 0.5 * match[0], match  # the baseline matching itself learns


# ---------------------------------------------------------------------------------- w/o RGB Stream
def test_flow_only_model_has_no_rgb_stream_and_ignores_the_rgb_frames(vocab_file):
    model = _row(vocab_file, "AAMN w/o RGB Stream").eval()
    names = _param_shapes(model)
    assert (
        model.backbone is None
        and model.matching_head.rgb_head is None
        and model.matching_head.rgb_aggregation is None
    )
    assert not any(n.startswith(("backbone.", "matching_head.rgb_")) for n in names)
    assert model.mask_head.fuse.in_channels == CHANNELS  # the Flow 14x14 maps alone
    assert (
        model.matching_head.action_module.fusion.fc_a.in_features == TUBE_DIM + 16
    )  # [f_k, v_c] replaces [v_k, v_c]
    batch = _batch(2)
    out, out_rgb = model(batch), model(_with_rgb_changed(batch))
    for a, b in zip(out, out_rgb):
        assert torch.equal(a["tube_scores"], b["tube_scores"])
        assert torch.equal(a["instances"].pred_masks, b["instances"].pred_masks)
    assert not torch.allclose(_scores(model, _with_flow_changed(batch)), _scores(model, batch))
    full = _row(
        vocab_file, "AAMN (Full Model)"
    ).eval()  # control: the full model sees the RGB frames
    assert not torch.allclose(_scores(full, _with_rgb_changed(batch)), _scores(full, batch))
    model.train()
    sum(model(batch).values()).backward()
    assert model.flow_backbone.stem.weight.grad.abs().sum() > 0


def test_flow_only_model_loads_the_flow_weights_of_a_two_stream_checkpoint(vocab_file, tmp_path):
    full = _row(vocab_file, "AAMN (Full Model)", seed=3)
    StreamCheckpointer(full, str(tmp_path)).save("full")
    model = _row(vocab_file, "AAMN w/o RGB Stream")
    StreamCheckpointer(model).load(str(tmp_path / "full.pth"))
    assert torch.equal(model.flow_backbone.stem.weight, full.flow_backbone.stem.weight)
    assert torch.equal(
        model.matching_head.flow_head.fc1.weight, full.matching_head.flow_head.fc1.weight
    )
    # A detector checkpoint (backbone.* only) initialises the Flow backbone (INIT_FLOW_FROM_RGB).
    torch.save(
        {"model": {"backbone." + k: v for k, v in full.backbone.state_dict().items()}},
        tmp_path / "det.pth",
    )
    model = _row(vocab_file, "AAMN w/o RGB Stream", seed=4)
    assert not torch.equal(model.flow_backbone.stem.weight, full.backbone.stem.weight)
    StreamCheckpointer(model).load(str(tmp_path / "det.pth"))
    assert torch.equal(model.flow_backbone.stem.weight, full.backbone.stem.weight)


# ---------------------------------------------------------------------------------- action module
def test_action_module_without_optical_flow_ignores_the_flow_in_matching(vocab_file):
    model = _row(vocab_file, "AAMN (Action Module) w/o Optical Flow").eval()
    assert (
        not model.matching_head.action_module.use_motion
        and model.matching_head.action_module.context is not None
    )
    assert isinstance(
        model.matching_head.action_module.fusion, torch.nn.Linear
    )  # v_action = W6 [v_k, v_c] + b6
    batch = _batch(2)
    # The actor module and linking use RGB: the matching no longer depends on the flow ...
    assert torch.equal(_scores(model, _with_flow_changed(batch)), _scores(model, batch))
    full = _row(vocab_file, "AAMN (Full Model)").eval()
    assert not torch.allclose(_scores(full, _with_flow_changed(batch)), _scores(full, batch))
    # ... so the Flow stream feeds only the mask head: no Flow RoI FCs, no Flow Eq. (2) FC.
    assert not model.matching_head.flow_matching and model.mask_head.use_flow
    assert not any(n.startswith(("flow_head.", "flow_aggregation.")) for n in _param_shapes(model))
    with pytest.raises(RuntimeError, match="box_head=False"):
        model.matching_head.flow_head(model.flow_backbone(torch.zeros(1, 3, 48, 64)), [])
    with torch.no_grad():
        probs = model.mask_logits(
            _features(model, batch), torch.tensor([1]), batch[0]["proposal_boxes"][1, :1]
        )
        moved = model.mask_logits(
            _features(model, _with_flow_changed(batch)),
            torch.tensor([1]),
            batch[0]["proposal_boxes"][1, :1],
        )
    assert not torch.allclose(probs, moved)


def test_action_module_without_rgb_matches_the_motion_feature_alone(vocab_file):
    # Action module alone, Flow linking: the scores then depend on the RGB frames only through the
    # action module's appearance feature, which "(Action Module) w/o RGB" removes.
    alone = ["MODEL.AAMN.USE_ACTOR_MODULE", "False", "MODEL.AAMN.LINK_FEATURE", "flow"]
    model = _row(vocab_file, "AAMN (Action Module) w/o RGB", alone).eval()
    action = model.matching_head.action_module
    assert action.context is None and not action.use_appearance  # no contextual LSTM
    assert isinstance(action.fusion, torch.nn.Linear) and action.fusion.in_features == TUBE_DIM
    batch = _batch(2)
    assert torch.equal(_scores(model, _with_rgb_changed(batch)), _scores(model, batch))
    assert not torch.allclose(_scores(model, _with_flow_changed(batch)), _scores(model, batch))
    control = _model(vocab_file, alone).eval()
    assert not torch.allclose(_scores(control, _with_rgb_changed(batch)), _scores(control, batch))
    assert model.match(batch)["context_weights"] is None


# ---------------------------------------------------------------------------------- actor module
def test_actor_module_with_optical_flow_sees_the_motion_feature(vocab_file):
    actor_only = ["MODEL.AAMN.USE_ACTION_MODULE", "False"]
    model = _row(vocab_file, "AAMN (Actor Module) w/ Optical Flow", actor_only).eval()
    assert (
        model.matching_head.actor_module.head.visual_fc.in_features == 2 * TUBE_DIM + 5
    )  # [v_k, f_k, l_k]
    batch = _batch(2)
    assert not torch.allclose(_scores(model, _with_flow_changed(batch)), _scores(model, batch))
    control = _model(vocab_file, actor_only).eval()  # the paper's actor module: [v_k, l_k]
    assert control.matching_head.actor_module.head.visual_fc.in_features == TUBE_DIM + 5
    assert torch.equal(_scores(control, _with_flow_changed(batch)), _scores(control, batch))
