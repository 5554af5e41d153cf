"""One backbone for the proposals and the RGB stream (``MODEL.AAMN.SHARED_DETECTOR``): the model's
own proposals are the proposal detector's, its inference is the separate pipeline's, the two ways
to train keep what they promise, and the detector it needs is checked."""

import logging
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from aamn.config import ConfigError, get_aamn_cfg
from aamn.data.dataset_mappers.clip_mapper import ClipDatasetMapper
from aamn.data.proposals import detector_record, pad_proposals
from aamn.engine import ProposalDetector, VideoPredictor
from aamn.engine.trainer import Trainer
from aamn.modeling import StreamCheckpointer
from aamn.modeling.checkpoint import CheckpointFileError, IncompatibleCheckpointError
from aamn.modeling.shared_detector import check_proposal_detector
from aamn.model_zoo import get_config_file

from modeling_helpers import make_clip, seed_all, single_thread, vocab_file  # noqa: F401

H, W, K = 48, 64, 6
SIZES = ["INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "64"]
# Narrower AAMN heads than the synthetic config's, for speed; the detector's keys stay its own.
NARROW = [
    "MODEL.AAMN.ROI_FC_DIM", "32", "MODEL.AAMN.TUBE_DIM", "32", "MODEL.AAMN.MATCH_DIM", "16",
    "MODEL.AAMN.CONTEXT_HIDDEN_DIM", "16", "MODEL.AAMN.FUSION_DIM", "16",
    "MODEL.AAMN.MASK_HEAD.CONV_DIM", "8", "MODEL.LANGUAGE.EMBED_DIM", "16",
    "MODEL.LANGUAGE.HIDDEN_DIM", "8",
]  # fmt: skip


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """The synthetic proposal detector (untrained, seeded, with non-zero BatchNorm statistics):
    ``(config, weights path)``."""
    cfg = get_aamn_cfg(get_config_file("synthetic/detector.yaml"), SIZES)
    seed_all(5)
    model = build_model(cfg)
    for name, buf in model.named_buffers():
        if "running" in name:
            buf.copy_(torch.rand_like(buf) + (0.5 if "var" in name else -0.5))
    path = tmp_path_factory.mktemp("detector") / "model.pth"
    DetectionCheckpointer(model, str(path.parent)).save("model")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(path)
    return cfg, str(path)


def shared_cfg(vocab, weights, *opts):
    return get_aamn_cfg(
        get_config_file("synthetic/aamn.yaml"),
        ["MODEL.WEIGHTS", weights, "MODEL.LANGUAGE.VOCAB_FILE", vocab, *SIZES, *NARROW, *opts],
    )


def shared_model(vocab, weights, *opts):
    cfg = shared_cfg(vocab, weights, *opts)
    seed_all(1)
    model = build_model(cfg)
    StreamCheckpointer(model).load(weights)
    return cfg, model


def frames(n=3, seed=0):
    """``n`` RGB frames ``(n, H, W, 3)`` uint8 with two bright boxes on noise."""
    g = np.random.default_rng(seed)
    out = (g.random((n, H, W, 3)) * 60).astype(np.uint8)
    for t in range(n):
        out[t, 8:30, 6 + 3 * t : 26 + 3 * t] = (220, 80, 60)
        out[t, 20:40, 40:58] = (60, 200, 90)
    return out


def clip_input(rgb, seed=0, **kw):
    """A mapper-like clip of the RGB frames ``rgb`` (the model reads BGR, ``INPUT.FORMAT``)."""
    x = make_clip(seed=seed, T=len(rgb), K=K, h=H, w=W, **kw)
    x["image"] = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(0, 3, 1, 2)))
    return x


def detector_proposals(det_cfg, rgb, model_cfg):
    """The separate pipeline's proposals of ``rgb``: ``ProposalDetector`` then ``pad_proposals``
    (what ``VideoPredictor`` and the proposal files give), ``(T, K, 4)``; the detector at the
    shared model's test-time RPN sizes (``TEST_TIME_KEYS``, the model's own choice)."""
    det_cfg = det_cfg.clone()
    det_cfg.defrost()
    det_cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = model_cfg.MODEL.RPN.PRE_NMS_TOPK_TEST
    det_cfg.MODEL.RPN.POST_NMS_TOPK_TEST = model_cfg.MODEL.RPN.POST_NMS_TOPK_TEST
    det_cfg.MODEL.ROI_BOX_HEAD.INFERENCE_BF16 = model_cfg.MODEL.ROI_BOX_HEAD.INFERENCE_BF16
    out = ProposalDetector(det_cfg, topk=20, nms=0.7)(rgb)
    return torch.stack([torch.from_numpy(pad_proposals(b, s, K, H, W)[0]) for b, s in out])


def test_the_synthetic_configs_name_one_detector(detector, vocab_file):  # noqa: F811
    """aamn.yaml's detector keys are detector.yaml's: the check the trainer runs passes
    on a proposal file's record of the detector, and names a key that differs."""
    det_cfg, weights = detector
    record = dict(detector_record(det_cfg, weights), topk=20, nms=0.7)
    check_proposal_detector(shared_cfg(vocab_file, weights), record)
    other = shared_cfg(vocab_file, weights, "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50")
    with pytest.raises(ConfigError, match=r"MODEL\.RPN\.POST_NMS_TOPK_TRAIN: 50 here, 200 in"):
        check_proposal_detector(other, record)
    # the RPN's test-time sizes and the box head's bf16 are the model's own choice
    assert det_cfg.MODEL.ROI_BOX_HEAD.INFERENCE_BF16 is False
    smaller = ["MODEL.RPN.PRE_NMS_TOPK_TEST", "150", "MODEL.RPN.POST_NMS_TOPK_TEST", "50"]
    bf16 = ["MODEL.ROI_BOX_HEAD.INFERENCE_BF16", "True"]
    check_proposal_detector(shared_cfg(vocab_file, weights, *smaller, *bf16), record)
    with pytest.raises(ConfigError, match=r"MODEL\.ROI_BOX_HEAD\.FC_DIM: 128 here, 256 in"):
        check_proposal_detector(
            shared_cfg(vocab_file, weights, "MODEL.ROI_BOX_HEAD.FC_DIM", "128"), record
        )
    with pytest.raises(ConfigError, match="NMS_THRESH: 0.5 here, --nms 0.7"):
        check_proposal_detector(
            shared_cfg(vocab_file, weights, "MODEL.AAMN.SHARED_DETECTOR.NMS_THRESH", "0.5"), record
        )


def test_the_trainer_refuses_proposals_of_another_detector(detector, vocab_file, monkeypatch):
    """The trainer checks the training proposal files' detector before it builds anything."""
    import aamn.engine.trainer as trainer_module

    det_cfg, weights = detector
    other = det_cfg.clone()
    other.defrost()
    other.MODEL.FPN.OUT_CHANNELS = 64
    record = dict(detector_record(other, weights), topk=20, nms=0.7)
    monkeypatch.setattr(trainer_module, "training_proposal_detector", lambda cfg: record)
    with pytest.raises(ConfigError, match=r"MODEL\.FPN\.OUT_CHANNELS: 32 here, 64 in"):
        Trainer(shared_cfg(vocab_file, weights))


def test_files_naming_no_detector_are_warned_about(detector, vocab_file, caplog):  # noqa: F811
    with caplog.at_level(logging.WARNING, logger="aamn.modeling.shared_detector"):
        check_proposal_detector(shared_cfg(vocab_file, detector[1]), None)
    assert "name no detector" in caplog.text


def test_own_proposals_are_the_detectors(detector, vocab_file):  # noqa: F811
    """The model's proposals, from its one backbone pass, equal the separate detector's on the
    same frames, for every frame of every clip; queries on one clip share one detection."""
    det_cfg, weights = detector
    cfg, model = shared_model(vocab_file, weights)
    model.eval()
    a, b = frames(seed=0), frames(seed=1)
    inputs = [clip_input(a), clip_input(b, seed=1)]
    inputs.append(dict(inputs[0], query_tokens=["a", "dog"]))  # a second query on clip a
    with torch.no_grad():
        features, _ = model.stream_features(inputs, "rgb", model.backbone)
        own = model.own_proposals(inputs, features)
    assert own.shape == (3, 3, K, 4)
    expected = [detector_proposals(det_cfg, f, cfg) for f in (a, b)]
    torch.testing.assert_close(own[0], expected[0], rtol=0, atol=1e-3)
    torch.testing.assert_close(own[1], expected[1], rtol=0, atol=1e-3)
    torch.testing.assert_close(own[2], expected[0], rtol=0, atol=0)
    assert len({tuple(map(tuple, p[1].tolist())) for p in own}) > 1  # not one box repeated


def test_inference_is_the_separate_pipelines(detector, vocab_file):  # noqa: F811
    """A frozen shared model at inference gives what the same weights give as a separate model
    fed the proposal detector's boxes (tubes, masks, scores), without reading proposals."""
    det_cfg, weights = detector
    cfg, shared = shared_model(vocab_file, weights)
    shared.eval()
    separate_cfg = cfg.clone()
    separate_cfg.defrost()
    separate_cfg.MODEL.AAMN.SHARED_DETECTOR.ENABLED = False
    separate = build_model(separate_cfg).eval()
    state = {
        k: v
        for k, v in shared.state_dict().items()
        if not k.startswith(("proposal_generator.", "roi_heads."))
    }
    separate.load_state_dict(state, strict=True)
    rgb = [frames(seed=s) for s in (0, 2)]
    with_files = [clip_input(f, seed=s) for s, f in enumerate(rgb)]
    for x, f in zip(with_files, rgb):
        x["proposal_boxes"] = detector_proposals(det_cfg, f, cfg)
    without = [{k: v for k, v in x.items() if k != "proposal_boxes"} for x in with_files]
    with torch.no_grad():
        mine, theirs = shared(without), separate(with_files)
    for m, t in zip(mine, theirs):
        assert m["tube_index"] == t["tube_index"]
        torch.testing.assert_close(m["tube_scores"], t["tube_scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(m["all_tube_boxes"], t["all_tube_boxes"], rtol=0, atol=1e-3)
        for a, b in zip(m["clip_instances"], t["clip_instances"]):
            assert torch.equal(a.pred_masks, b.pred_masks)


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return sorted(k for k, v in module.state_dict().items() if not torch.equal(before[k], v))


@pytest.mark.parametrize("train_backbone, detector_loss", [(False, 1.0), (True, 0.0), (True, 1.0)])
def test_training_keeps_what_each_way_promises(
    detector,
    vocab_file,
    single_thread,
    train_backbone,
    detector_loss,  # noqa: F811
):
    """Frozen: the backbone (weights and BatchNorm statistics), the RPN and the box head are the
    detector's after training steps.  Fine-tuned: the backbone trains; with the detector's losses
    (on the key frames' actors) the RPN and box head train too, without them they stay the
    detector's.  AAMN's heads train every way, and the optimizer holds no frozen parameter."""
    _, weights = detector
    cfg, model = shared_model(
        vocab_file,
        weights,
        "MODEL.AAMN.SHARED_DETECTOR.TRAIN_BACKBONE",
        str(train_backbone),
        "MODEL.AAMN.SHARED_DETECTOR.DETECTOR_LOSS_WEIGHT",
        str(detector_loss),
    )
    heads_train = train_backbone and detector_loss > 0
    optimizer = Trainer.build_optimizer(cfg, model)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = [] if heads_train else [model.proposal_generator, model.roi_heads]
    frozen += [] if train_backbone else [model.backbone]
    assert not any(id(p) in held for m in frozen for p in m.parameters())
    parts = ("backbone", "proposal_generator", "roi_heads", "matching_head")
    before = {n: _params(getattr(model, n)) for n in parts}
    model.train()
    batch = [clip_input(frames(seed=s), seed=s) for s in range(2)]
    for _ in range(2):
        with EventStorage(0):  # detectron2's RPN and box head log their sampling
            losses = model(batch)
        detector_losses = sorted(k for k in losses if k.startswith("loss_detector_"))
        expected = ["loss_detector_box_reg", "loss_detector_cls", "loss_detector_rpn_cls"]
        assert detector_losses == (expected + ["loss_detector_rpn_loc"] if heads_train else [])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert bool(_changed(before["proposal_generator"], model.proposal_generator)) == heads_train
    assert bool(_changed(before["roi_heads"], model.roi_heads)) == heads_train
    assert _changed(before["matching_head"], model.matching_head)
    changed = _changed(before["backbone"], model.backbone)
    if train_backbone:
        weights_changed = any(k.endswith("weight") for k in changed)
        assert weights_changed and any("running_mean" in k for k in changed)
    else:
        assert changed == []


def test_the_detectors_weights_are_required(detector, vocab_file, tmp_path):  # noqa: F811
    """No MODEL.WEIGHTS, or a file without the detector's heads, is refused by name: a shared
    model with a random detector would link random boxes."""
    _, weights = detector
    model = build_model(shared_cfg(vocab_file, weights))
    with pytest.raises(CheckpointFileError, match="MODEL.WEIGHTS is empty.*SHARED_DETECTOR"):
        StreamCheckpointer(model).load("")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.")}
    path = tmp_path / "no_heads.pth"
    torch.save({"model": state}, path)
    with pytest.raises(IncompatibleCheckpointError, match=r"roi_heads\..*SHARED_DETECTOR"):
        StreamCheckpointer(model).load(str(path))


def test_predictor_and_evaluation_read_no_proposals(detector, vocab_file, tmp_path):  # noqa: F811
    """A shared model's video predictor needs no detector or proposal file, and its evaluation
    mapper reads no proposal file; training still reads the files."""
    _, weights = detector
    cfg, model = shared_model(vocab_file, weights)
    assert not ClipDatasetMapper(cfg, is_train=False).load_proposals
    assert ClipDatasetMapper(cfg, is_train=True).load_proposals
    StreamCheckpointer(model, str(tmp_path)).save("aamn")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(tmp_path / "aamn.pth")
    cfg.MODEL.LANGUAGE.VOCAB_FILE = ""
    video = str(tmp_path / "v.mp4")
    rgb = frames(n=7)
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for f in rgb:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    predictor = VideoPredictor(cfg)
    assert predictor.detector is None and not predictor.needs_proposals
    out = list(predictor(video, ["a dog"]))
    assert [f["index"] for f in out] == list(range(7))
    assert all(f["queries"][0]["mask"].shape == (H, W) for f in out)
    assert out[0]["queries"][0]["all_tube_boxes"].shape == (K, 3, 4)


def test_main_job_starts_the_shared_model_from_its_detector(tmp_path):
    """With the shared config, the main job's AAMN stage starts from the detector the job trained
    (whatever the config's MODEL.WEIGHTS), and is redone when that detector changes."""
    from aamn.engine.main_job import MainJob, main_job_stages

    def aamn_stage(config):
        job = MainJob(
            output_dir=str(tmp_path / "out"),
            datasets_dir=str(tmp_path / "data"),
            aamn_config=get_config_file(config),
        )
        stage = next(s for s in main_job_stages(job) if s.name == "aamn")
        return stage, os.path.join(job.det_dir, "model_final.pth")

    stage, det_weights = aamn_stage("synthetic/aamn.yaml")
    (cmd,) = stage.commands
    assert det_weights in stage.inputs
    i = cmd.index("MODEL.WEIGHTS")
    assert cmd[i + 1] == det_weights and "MODEL.WEIGHTS" not in cmd[i + 1 :]
    stage, det_weights = aamn_stage("synthetic/aamn_separate.yaml")
    assert det_weights not in stage.inputs and "MODEL.WEIGHTS" not in stage.commands[0]


def test_a_model_without_rgb_stream_cannot_share_it(detector, vocab_file):  # noqa: F811
    """Table IV's "w/o RGB Stream" has no backbone to run the detector on: a config error."""
    from aamn.modeling.ablations import ablation_overrides

    opts = ablation_overrides("AAMN w/o RGB Stream")
    with pytest.raises(ConfigError, match="USE_RGB must be True"):
        build_model(shared_cfg(vocab_file, detector[1], *opts))
