"""The framework every referring-video model shares: trainer, mapper steps, checkpoints with their
vocabulary, config composition.

A toy meta-architecture defined here (no proposals, one 1x1 conv) trains, evaluates and resumes
with the same trainer as AAMN; AAMN checkpoints carry their vocabulary and evaluate from an empty
folder; a mismatched vocabulary is refused; checkpoints of the earlier layout still load.
"""

import json
import os
import shutil
import uuid

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.structures import Boxes, Instances

from aamn.modeling import resolve_vocabulary
from aamn.config import ConfigError, add_rvos_config, get_aamn_cfg
from aamn.modeling.meta_arch.aamn_config import add_aamn_config
from aamn.data.dataset_mappers import (
    ClipDatasetMapper,
    VideoFrameDatasetMapper,
    build_dataset_mapper,
)
from aamn.data.datasets import register_a2d_sentences
from aamn.data.proposals import save_proposals
from aamn.data.text import Vocabulary
from aamn.engine import Trainer
from aamn.engine.trainer import resumed_checkpoint
from aamn.modeling import (
    AAMN,
    StreamCheckpointer,
    TwoStreamModel,
    VocabularyMismatchError,
    build_language_encoder,
)

from fixtures import SQ_H, SQ_W, register_square, square_mask, square_proposals, write_square_tree
from modeling_helpers import make_clip, make_vocab, seed_all, single_thread, tiny_cfg  # noqa: F401


@META_ARCH_REGISTRY.register()
class ToyClipSegmenter(TwoStreamModel):
    """A referring-video model with no proposals: a 1x1 conv on the key frame, modulated by the
    sentence vector.  Only what the framework requires of a model."""

    @configurable
    def __init__(self, *, language_encoder, pixel_mean, pixel_std):
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.language = language_encoder
        self.conv = nn.Conv2d(3, 1, 1)
        self.gain = nn.Linear(language_encoder.sentence_dim, 1)

    @classmethod
    def from_config(cls, cfg):
        return {
            "language_encoder": build_language_encoder(cfg),
            **{
                k: v
                for k, v in cls.stream_args_from_config(cfg).items()
                if k in ("pixel_mean", "pixel_std")
            },
        }

    def forward(self, batched_inputs):
        T = self.check_clips(batched_inputs, use_flow=False)
        clips, sizes = self.normalize_clips(batched_inputs, "rgb")
        lang = self.language([x["query_tokens"] for x in batched_inputs])
        logits = self.conv(clips[:, T // 2]).squeeze(1) * self.gain(lang["sentence"]).view(
            -1, 1, 1
        )  # (B, h, w)
        if self.training:
            targets = torch.stack(
                [x["instances"].gt_masks.tensor[x["referred_idx"]] for x in batched_inputs]
            )
            return {
                "loss_seg": nn.functional.binary_cross_entropy_with_logits(logits, targets.float())
            }
        out = []
        for b, x in enumerate(batched_inputs):
            h, w = sizes[b]
            mask = (
                nn.functional.interpolate(
                    logits[b : b + 1, None, :h, :w], (x["height"], x["width"])
                )[0]
                > 0
            )
            inst = Instances((x["height"], x["width"]))
            inst.pred_masks = mask
            inst.pred_boxes = Boxes(
                torch.tensor([[0.0, 0.0, float(x["width"]), float(x["height"])]])
            )
            inst.scores = torch.ones(1)
            inst.pred_classes = torch.zeros(1, dtype=torch.long)
            out.append({"instances": inst})
        return out


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    return register_square(tmp_path_factory, (3, 5, 7), prefix="fw_square")[1]


def _toy_cfg(square, out_dir, **overrides):
    cfg = get_aamn_cfg(
        opts=[
            "MODEL.META_ARCHITECTURE",
            "ToyClipSegmenter",
            "MODEL.DEVICE",
            "cpu",
            "MODEL.LANGUAGE.NAME",
            "WordEmbeddingEncoder",
            "MODEL.LANGUAGE.EMBED_DIM",
            "8",
            "INPUT.CLIP.HALF_LENGTH",
            "1",
            "INPUT.CLIP.LOAD_PROPOSALS",
            "False",
            "INPUT.FLOW.ENABLED",
            "False",
            "INPUT.MIN_SIZE_TRAIN",
            "(48,)",
            "INPUT.MAX_SIZE_TRAIN",
            "64",
            "INPUT.MIN_SIZE_TEST",
            "48",
            "INPUT.MAX_SIZE_TEST",
            "64",
            "INPUT.RANDOM_FLIP",
            "none",
            "SOLVER.OPTIMIZER",
            "AdamW",
            "SOLVER.BASE_LR",
            "0.05",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "0",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(out_dir),
            "DATASETS.TRAIN",
            f"('{square}',)",
            "DATASETS.TEST",
            f"('{square}',)",
            *[str(x) for kv in overrides.items() for x in kv],
        ]
    )
    return cfg


@pytest.mark.slow
def test_a_new_meta_architecture_trains_evaluates_and_resumes_with_the_trainer(square, tmp_path):
    out = tmp_path / "toy"
    cfg = _toy_cfg(square, out)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert isinstance(trainer.checkpointer, StreamCheckpointer)
    assert {"model_0000001.pth", "model_final.pth", "vocab.json"} <= set(os.listdir(out))
    saved = torch.load(out / "model_final.pth", weights_only=True)
    assert (
        saved["vocabulary"] == json.loads((out / "vocab.json").read_text())
        and saved["iteration"] == 3
    )
    results = trainer._last_eval_results  # the clip mapper and the referring-video evaluator
    assert {"P@0.5", "mean_IoU", "overall_IoU"} <= set(results["segm"])
    # Resume: the next run starts after the saved iteration and keeps the vocabulary (that of the
    # checkpoint it resumes from, whatever the training data says now).
    cfg2 = _toy_cfg(square, out, **{"SOLVER.MAX_ITER": 6})
    resolve_vocabulary(cfg2, build=True, resumed=resumed_checkpoint(str(out)))
    assert cfg2.MODEL.LANGUAGE.VOCAB_FILE == str(out / "model_final.pth")
    resumed = Trainer(cfg2)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    # Evaluation from the checkpoint alone (no vocab.json, no training data) gives the same metrics.
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(out / "model_final.pth", moved / "model.pth")
    cfg3 = _toy_cfg(
        square,
        tmp_path / "eval",
        **{"MODEL.WEIGHTS": str(moved / "model.pth"), "DATASETS.TRAIN": "()"},
    )
    model = Trainer.build_model(cfg3)
    StreamCheckpointer(model).resume_or_load(cfg3.MODEL.WEIGHTS, resume=False)
    again = Trainer.test(cfg3, model)
    assert again["segm"] == pytest.approx(results["segm"])


def test_mapper_is_chosen_from_the_data_sets_metadata(square):
    cfg = get_aamn_cfg()
    assert isinstance(build_dataset_mapper(cfg, [square], True), ClipDatasetMapper)
    frames = f"{square}_frames_probe"
    if frames not in DatasetCatalog.list():
        DatasetCatalog.register(frames, lambda: [])
        MetadataCatalog.get(frames).set(evaluator_type="coco")
    assert isinstance(build_dataset_mapper(cfg, [frames], True), VideoFrameDatasetMapper)
    with pytest.raises(ValueError, match="different mappers"):
        build_dataset_mapper(cfg, [square, frames], True)
    cfg.INPUT.DATASET_MAPPER_NAME = "clip"
    assert isinstance(build_dataset_mapper(cfg, [frames], False), ClipDatasetMapper)
    cfg.INPUT.DATASET_MAPPER_NAME = "tube"
    with pytest.raises(ValueError, match="DATASET_MAPPER_NAME"):
        build_dataset_mapper(cfg, [square], True)


def test_mapper_without_proposals_and_its_steps_on_frames_in_memory(square, tmp_path):
    cfg = get_aamn_cfg(
        opts=[
            "INPUT.CLIP.HALF_LENGTH",
            "1",
            "INPUT.CLIP.LOAD_PROPOSALS",
            "False",
            "INPUT.RANDOM_FLIP",
            "none",
            "INPUT.MIN_SIZE_TEST",
            "48",
            "INPUT.MAX_SIZE_TEST",
            "64",
            "DATASETS.TEST",
            f"('{square}',)",
        ]
    )
    record = next(r for r in DatasetCatalog.get(square) if r["frame_idx"] == 5)
    # A data set whose proposal file is missing: not read at all.
    no_file = dict(record, dataset_name=f"{square}_noprop")
    MetadataCatalog.get(no_file["dataset_name"]).set(root=MetadataCatalog.get(square).root)
    mapper = ClipDatasetMapper(cfg, is_train=False)
    out = mapper(no_file)
    assert "proposal_boxes" not in out and out["image"].shape == (3, 3, SQ_H, SQ_W)
    assert (
        out["instances"].gt_masks.tensor[out["referred_idx"]].numpy().tolist()
        == square_mask(5).tolist()
    )
    # The steps: the clip read from disk, then the same augmentation of frames held in memory.
    clip = mapper.read_clip(no_file)
    assert clip["proposal_boxes"] is None and clip["frames"].shape == (3, SQ_H, SQ_W, 3)
    boxes = np.tile(np.array([[[0, 0, 16, 16]]], np.float32), (3, 2, 1))
    model_input, transforms = mapper.augment_clip(
        clip["frames"], clip["flow"], boxes, np.zeros((3, 2)), "a Square"
    )
    assert torch.equal(model_input["image"], out["image"])
    assert model_input["query_tokens"] == ["a", "square"] and model_input[
        "proposal_boxes"
    ].shape == (3, 2, 4)
    instances, referred = mapper.build_targets(record, transforms, (SQ_H, SQ_W))
    assert referred == out["referred_idx"] and len(instances) == 2


# ------------------------------------------------------------------------------ AAMN checkpoints
@pytest.fixture()
def trained_aamn(tmp_path):
    """A tiny AAMN whose vocabulary was built from training data, saved by StreamCheckpointer."""
    name = f"fw_queries_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(
        name,
        lambda: [
            {"query": "a man is running left", "video_id": "v", "instance_id": 1},
            {"query": "a red dog is jumping", "video_id": "w", "instance_id": 1},
            {"query": "woman walking right", "video_id": "u", "instance_id": 1},
        ],
    )
    cfg = tiny_cfg("")
    cfg.DATASETS.TRAIN = (name,)
    cfg.OUTPUT_DIR = str(tmp_path / "train")
    seed_all(0)
    resolve_vocabulary(cfg, build=True)
    model = build_model(cfg).eval()
    StreamCheckpointer(model, cfg.OUTPUT_DIR).save("model_final")
    return cfg, model, tmp_path / "train" / "model_final.pth"


def _outputs(model, batch):
    with torch.no_grad():
        return [(o["tube_scores"], o["instances"].pred_masks) for o in model(batch)]


def test_checkpoint_moved_to_an_empty_folder_rebuilds_the_same_model(trained_aamn, tmp_path):
    cfg, model, path = trained_aamn
    moved = tmp_path / "elsewhere" / "weights.pth"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    eval_cfg = tiny_cfg("")
    eval_cfg.MODEL.WEIGHTS = str(moved)
    eval_cfg.DATASETS.TRAIN = ("no_such_data_set_is_read",)  # build_model must not read a data set
    eval_cfg.MODEL.LANGUAGE.WORD_VECTORS = str(
        tmp_path / "absent_glove.txt"
    )  # nor the word vectors
    seed_all(5)
    resolve_vocabulary(eval_cfg)  # the checkpoint's vocabulary: no data set, no word vectors read
    again = build_model(eval_cfg).eval()
    assert again.language.vocab == model.language.vocab
    StreamCheckpointer(again).load(str(moved))
    batch = [make_clip(seed=i, query_tokens=["a", "red", "dog"]) for i in range(2)]
    for (s1, m1), (s2, m2) in zip(_outputs(model, batch), _outputs(again, batch)):
        assert torch.equal(s1, s2) and torch.equal(m1, m2)


def test_a_vocabulary_that_does_not_match_the_checkpoint_is_an_error(trained_aamn, tmp_path):
    _, _, path = trained_aamn
    other = tmp_path / "other_vocab.json"
    Vocabulary.build([["a", "totally", "different", "set", "of", "words"]]).save(other)
    cfg = tiny_cfg(str(other))
    cfg.MODEL.WEIGHTS = str(path)
    model = build_model(cfg)
    with pytest.raises(VocabularyMismatchError, match="other_vocab.json") as e:
        StreamCheckpointer(model).load(str(path))
    assert str(path) in str(e.value)


def test_checkpoint_of_the_earlier_layout_with_vocab_json_beside_it_loads(trained_aamn, tmp_path):
    _, model, path = trained_aamn
    old = torch.load(path, weights_only=True)
    del old["vocabulary"]
    inverse = {new: old_prefix for old_prefix, new in AAMN.checkpoint_renames.items()}
    weights = {}
    for k, v in old["model"].items():
        prefix = next((n for n in inverse if k.startswith(n)), None)
        weights[inverse[prefix] + k[len(prefix) :] if prefix else k] = v
    assert any(k.startswith("rgb_head.") for k in weights) and any(
        k.startswith("language.actor_attention") for k in weights
    )
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    torch.save({"model": weights}, old_dir / "model_final.pth")
    model.language.vocab.save(old_dir / "vocab.json")
    cfg = tiny_cfg("")
    cfg.MODEL.WEIGHTS = str(old_dir / "model_final.pth")
    cfg.DATASETS.TRAIN = ("no_such_data_set_is_read",)
    seed_all(7)
    resolve_vocabulary(cfg)
    again = build_model(cfg).eval()
    StreamCheckpointer(again).load(cfg.MODEL.WEIGHTS)
    batch = [make_clip(seed=3)]
    ((s1, m1),) = _outputs(model, batch)
    ((s2, m2),) = _outputs(again, batch)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)


def test_without_any_vocabulary_source_the_error_names_them(tmp_path):
    cfg = tiny_cfg("")
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError, match="VOCAB_FILE is empty, MODEL.WEIGHTS"):
        resolve_vocabulary(cfg, build=True)


# ------------------------------------------------------------------------------ config composition
def test_config_functions_compose_and_renamed_keys_are_named(tmp_path):
    from detectron2.config import get_cfg

    shared = add_rvos_config(get_cfg())
    assert "LANGUAGE" in shared.MODEL and "CLIP" in shared.INPUT and "AAMN" not in shared.MODEL
    full = add_aamn_config(get_cfg())
    assert (
        full.INPUT.CLIP.NUM_PROPOSALS == 6 and full.MODEL.AAMN.MATCHING_HEAD == "AAMNMatchingHead"
    )
    assert add_aamn_config(full) is full  # idempotent
    old = tmp_path / "old.yaml"
    old.write_text("MODEL:\n  AAMN:\n    NUM_PROPOSALS: 4\n")
    with pytest.raises(
        ConfigError, match="MODEL.AAMN.NUM_PROPOSALS was renamed to INPUT.CLIP.NUM_PROPOSALS"
    ):
        get_aamn_cfg(str(old))


def test_a_recorded_config_reads_its_renamed_keys_under_their_new_names(tmp_path):
    """A checkpoint's or proposal file's record of its config, written before a key was renamed,
    is read with the key under its new name (a record is not the user's file to correct); a
    user's file with the old key is still an error naming the new one."""
    from aamn.config import config_from_text

    record = (
        "TEST:\n  VIDEO:\n    FLOW_METHOD: farneback\n"
        "MODEL:\n  RPN:\n    NMS_ON_PREFIX: true\n    PRE_NMS_TOPK_TEST: 77\n"
    )
    cfg = config_from_text(record, "the record")
    assert cfg.INPUT.FLOW.METHOD == "farneback"
    assert cfg.MODEL.RPN.PRE_NMS_TOPK_TEST == 77  # its other keys kept
    assert "NMS_ON_PREFIX" not in cfg.MODEL.RPN  # became another kind of setting: dropped
    with pytest.raises(ConfigError, match="the record"):
        config_from_text("MODEL:\n  NO_SUCH_KEY: 1\n", "the record")
    user = tmp_path / "old.yaml"
    user.write_text("TEST:\n  VIDEO:\n    FLOW_METHOD: dis\n")
    with pytest.raises(ConfigError, match="TEST.VIDEO.FLOW_METHOD was renamed to INPUT.FLOW"):
        get_aamn_cfg(str(user))


def test_synthetic_configs_share_one_base():
    import yaml

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name, base in (
        ("aamn_separate.yaml", "Base-Synthetic.yaml"),
        ("aamn.yaml", "aamn_separate.yaml"),
    ):
        with open(os.path.join(repo, "configs", "synthetic", name)) as f:
            assert yaml.safe_load(f)["_BASE_"] == base
    cfg = get_aamn_cfg(os.path.join(repo, "configs", "synthetic", "aamn_table_iv.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "build_tiny_fpn_backbone" and cfg.SOLVER.OPTIMIZER == "AdamW"
    assert cfg.INPUT.CLIP.HALF_LENGTH == 2 and cfg.MODEL.AAMN.ACTOR_FEATURE_NORM == "none"
