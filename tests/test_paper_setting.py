"""The paper's exact A2D setting (configs/a2d_sentences/aamn_paper.yaml): the VGG-16 backbone and
its weight files, the 512 x 512 padding, Table VII's training strategies, every ablation table as
rows that build the model the table describes, and the small VGG variant training on data."""

import os
import pickle
import uuid

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from aamn.config import get_aamn_cfg
from aamn.data.dataset_mappers import ClipDatasetMapper
from aamn.modeling import ABLATION_TABLES, StreamCheckpointer
from aamn.modeling.backbone import VGG16, vgg16_weights

from modeling_helpers import make_clip, seed_all, single_thread, tiny_cfg, vocab_file  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "configs", "a2d_sentences", "aamn_paper.yaml")
OURS = os.path.join(REPO, "configs", "a2d_sentences", "aamn_R101.yaml")


# Each difference between the paper (Sec. IV-B) and the project's own A2D config: the key, the
# paper's value (in aamn_paper.yaml), the project's (aamn_R101.yaml), and the word its header uses.
DIFFERENCES = {
    "VGG-16 streams": (
        "MODEL.BACKBONE.NAME",
        "build_vgg16_backbone",
        "build_resnet_backbone",
        "VGG-16",
    ),
    "conv5_3 RoIs": ("MODEL.AAMN.IN_FEATURES", ["conv5_3"], ["res4"], "VGG-16"),
    "512 x 512 padding": ("INPUT.FIXED_SIZE", 512, 0, "FIXED_SIZE"),
    "summed Eq. 12": ("MODEL.AAMN.MATCH_LOSS_REDUCTION", "sum", "mean", "MATCH_LOSS_REDUCTION"),
    "raw actor features": ("MODEL.AAMN.ACTOR_FEATURE_NORM", "none", "l2", "ACTOR_FEATURE_NORM"),
    "GloVe by path": (
        "MODEL.LANGUAGE.WORD_VECTORS",
        "datasets/glove/glove.840B.300d.txt",
        "",
        "GloVe",
    ),
    "no warm-up": ("SOLVER.WARMUP_ITERS", 0, 1000, "warm-up"),
}


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return list(node) if isinstance(node, (list, tuple)) else node


@pytest.mark.parametrize("difference", list(DIFFERENCES))
def test_each_difference_from_the_paper(difference):
    """The paper config holds the paper's value, the project's config its own, and the project's
    config names the difference in its header."""
    key, paper, ours, word = DIFFERENCES[difference]
    assert _get(get_aamn_cfg(PAPER), key) == paper
    assert _get(get_aamn_cfg(OURS), key) == ours
    assert word in open(OURS).read().split("_BASE_")[0]


def test_the_paper_config_holds_the_papers_shared_setting():
    """What both configs share with the paper, and the paper config's COCO weights."""
    for path in (PAPER, OURS):
        cfg = get_aamn_cfg(path)
        A, S = cfg.MODEL.AAMN, cfg.SOLVER
        assert A.TRAINING_STRATEGY == "joint" and A.MASK_LOSS_WEIGHT == 5.0
        assert cfg.INPUT.CLIP.NUM_PROPOSALS == 6 and cfg.INPUT.CLIP.HALF_LENGTH == 4
        assert (S.OPTIMIZER, S.BASE_LR, S.MOMENTUM, S.WEIGHT_DECAY) == ("SGD", 1e-4, 0.95, 5e-4)
        assert tuple(S.STEPS) == (100000,) and S.MAX_ITER == 150000
    cfg = get_aamn_cfg(PAPER)
    assert cfg.MODEL.VGG.WIDTH_SCALE == 1.0 and cfg.MODEL.AAMN.ROI_FC_DIM == 4096
    assert cfg.MODEL.WEIGHTS  # a COCO Faster R-CNN VGG-16 file is named
    assert cfg.MODEL.LANGUAGE.EMBED_DIM == 300


def test_the_paper_config_builds_the_papers_model(vocab_file):  # noqa: F811
    """The paper's model itself (294 M parameters): VGG-16 in both streams, fc6 / fc7 of
    25088 -> 4096 -> 4096 in both RoI heads, padding to 512 x 512."""
    opts = ["MODEL.WEIGHTS", "", "MODEL.LANGUAGE.WORD_VECTORS", "", "MODEL.DEVICE", "cpu"]
    cfg = get_aamn_cfg(PAPER, opts + ["MODEL.LANGUAGE.VOCAB_FILE", vocab_file])
    model = build_model(cfg)
    for stream in (model.backbone, model.flow_backbone):
        assert isinstance(stream, VGG16) and stream.output_shape()["conv5_3"].channels == 512
    for head in (model.matching_head.rgb_head, model.matching_head.flow_head):
        assert tuple(head.fc1.weight.shape) == (4096, 512 * 7 * 7)
        assert tuple(head.fc2.weight.shape) == (4096, 4096)
    assert model.fixed_size == 512 and model.criterion.match_loss_reduction == "sum"
    assert model.matching_head.actor_module.feature_norm == "none"


def test_vgg16_is_vgg16():
    net = VGG16()
    shapes = net.output_shape()
    assert shapes["conv5_3"].channels == 512 and shapes["conv5_3"].stride == 16
    # torchvision's vgg16().features holds 14,714,688 parameters
    assert sum(p.numel() for p in net.parameters()) == 14714688
    small = VGG16(width_scale=0.125, norm="BN", out_features=("conv4_3", "conv5_3"))
    out = small(torch.zeros(1, 3, 96, 128))
    assert out["conv5_3"].shape == (1, 64, 6, 8) and out["conv4_3"].shape == (1, 64, 12, 16)
    frozen = VGG16(width_scale=0.125, freeze_at=2)
    trainable = {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {
        f"conv{b}_{i}" for b, n in ((3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)
    }


def _vgg_model(vocab_file, **overrides):  # noqa: F811
    seed_all(0)
    cfg = tiny_cfg(
        vocab_file,
        **{
            "MODEL.BACKBONE.NAME": "build_vgg16_backbone",
            "MODEL.BACKBONE.FREEZE_AT": 0,
            "MODEL.VGG.WIDTH_SCALE": 0.125,
            "MODEL.VGG.NORM": "",
            "MODEL.VGG.OUT_FEATURES": ["conv5_3"],
            "MODEL.AAMN.IN_FEATURES": ["conv5_3"],
            "MODEL.AAMN.LINK_FEATURE": "both",  # the Flow stream's box head is built too
            **overrides,
        },
    )
    return build_model(cfg)


def _torchvision_names(model):
    """The model's VGG-16 and fc6 / fc7 shapes as a torchvision vgg16 state dict, random values."""
    g = torch.Generator().manual_seed(5)
    index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    convs = [n for block in model.backbone.blocks for n in block]
    out = {}
    for name, i in zip(convs, index):
        conv = getattr(model.backbone, name)
        out[f"features.{i}.weight"] = torch.randn(conv.weight.shape, generator=g)
        out[f"features.{i}.bias"] = torch.randn(conv.bias.shape, generator=g)
    head = model.matching_head.rgb_head
    for fc, j in ((head.fc1, 0), (head.fc2, 3)):
        out[f"classifier.{j}.weight"] = torch.randn(fc.weight.shape, generator=g)
        out[f"classifier.{j}.bias"] = torch.randn(fc.bias.shape, generator=g)
    out["classifier.6.weight"] = torch.randn(1000, head.fc2.weight.shape[0], generator=g)
    return out


@pytest.mark.parametrize("kind", ["torchvision", "caffe", "detectron2"])
def test_a_vgg16_file_fills_both_streams_and_fc6_fc7(vocab_file, tmp_path, kind):  # noqa: F811
    model = _vgg_model(vocab_file)
    tv = _torchvision_names(model)
    if kind == "torchvision":
        path = tmp_path / "vgg16.pth"
        torch.save(tv, path)
    else:
        converted = vgg16_weights(tv, "backbone.", ["roi_heads.box_head."])
        if kind == "caffe":  # conv1_1_w ... fc7_b, numpy arrays in a pickle
            data = {}
            for k, v in converted.items():
                layer, suffix = k.split(".")[-2:]
                layer = {"fc1": "fc6", "fc2": "fc7"}.get(layer, layer)
                data[f"{layer}_{'w' if suffix == 'weight' else 'b'}"] = v.numpy()
            path = tmp_path / "vgg16.pkl"
            with open(path, "wb") as f:
                pickle.dump({"blobs": data}, f)
        else:  # a detectron2 Faster R-CNN VGG-16
            converted["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(81, 4)
            path = tmp_path / "faster_rcnn_vgg16.pth"
            torch.save({"model": converted}, path)
    StreamCheckpointer(model).load(str(path))
    state = model.state_dict()
    index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    convs = [n for block in model.backbone.blocks for n in block]
    for name, i in zip(convs, index):
        for stream in ("backbone", "flow_backbone"):  # the Flow stream from the same file
            assert torch.equal(state[f"{stream}.{name}.weight"], tv[f"features.{i}.weight"])
    for head in ("rgb_head", "flow_head"):
        assert torch.equal(
            state[f"matching_head.{head}.fc1.weight"], tv["classifier.0.weight"]
        )  # fc6
        assert torch.equal(state[f"matching_head.{head}.fc2.bias"], tv["classifier.3.bias"])  # fc7


def test_fixed_size_resizes_the_longer_side_and_pads_to_a_square(vocab_file):  # noqa: F811
    cfg = tiny_cfg(vocab_file, **{"INPUT.FIXED_SIZE": 64})
    mapper = ClipDatasetMapper(cfg, is_train=False)
    frames = np.zeros((3, 40, 100, 3), np.uint8)
    x, _ = mapper.augment_clip(frames)
    assert tuple(x["image"].shape[-2:]) == (26, 64)  # longer side 64, aspect kept
    model = build_model(cfg)
    images = model.normalize_frames([x], "rgb")
    assert tuple(images.tensor.shape) == (3, 3, 64, 64)
    assert torch.equal(images.tensor[:, :, 26:], torch.zeros_like(images.tensor[:, :, 26:]))
    with pytest.raises(ValueError, match=r"\(70, 64\) exceeds INPUT.FIXED_SIZE 64"):
        model.normalize_frames(
            [x, {"image": torch.zeros((3, 3, 70, 64), dtype=torch.uint8)}], "rgb"
        )
    model.fixed_size = 0  # without the key: the batch's own size
    assert tuple(model.normalize_frames([x], "rgb").tensor.shape[-2:]) == (26, 64)


@pytest.mark.parametrize("strategy", ["M+S", "S+M", "joint"])
def test_training_strategies_train_one_branch_per_phase(vocab_file, strategy):  # noqa: F811
    """Table VII: M+S trains the matching branch (Eq. 12) first and the FCN branch (Eq. 11) from
    PHASE_SPLIT x MAX_ITER on; S+M the other way round; joint both from the start."""
    model = _vgg_model(
        vocab_file,
        **{
            "MODEL.AAMN.TRAINING_STRATEGY": strategy,
            "MODEL.AAMN.PHASE_SPLIT": 0.5,
            "SOLVER.MAX_ITER": 10,
        },
    ).train()
    batch = [make_clip(seed=i, T=3, K=4, h=48, w=64) for i in range(2)]
    for iteration, phase in ((0, 1), (4, 1), (5, 2), (9, 2)):
        model.zero_grad(set_to_none=True)
        with EventStorage(start_iter=iteration):
            losses = model(batch)
        sum(losses.values()).backward()
        matching = model.matching_head.actor_module.parameters()
        mask = model.mask_head.parameters()
        match_trained = any(p.grad is not None and p.grad.abs().sum() > 0 for p in matching)
        mask_trained = any(p.grad is not None and p.grad.abs().sum() > 0 for p in mask)
        expected = {
            "M+S": (phase == 1, phase == 2),
            "S+M": (phase == 2, phase == 1),
            "joint": (True, True),
        }[strategy]
        assert (match_trained, mask_trained) == expected, (iteration, strategy)
        assert all(torch.isfinite(v) for v in losses.values())  # both logged in every phase


def _built_value(model, key):
    """What the built model (or its mapper) does for a table's config key."""
    A = "MODEL.AAMN."
    return {
        "INPUT.CLIP.NUM_PROPOSALS": lambda: model.num_proposals,
        "INPUT.CLIP.HALF_LENGTH": lambda: model.half_length_of_mapper,
        A + "LINK_FEATURE": lambda: model.matching_head.linker.link_feature,
        A + "TEMPORAL_AGGREGATION": lambda: model.matching_head.rgb_aggregation.mode,
        A + "TRAINING_STRATEGY": lambda: model.criterion.training_strategy,
        A + "MASK_LOSS_WEIGHT": lambda: model.criterion.mask_loss_weight,
        A + "RANDOM_WORD_ATTENTION": lambda: model.matching_head.word_attention.random_at_test,
    }[key]()


@pytest.mark.parametrize("table", [t for t in ABLATION_TABLES if t != "IV"])
def test_every_row_of_every_table_builds_the_model_it_describes(vocab_file, table):  # noqa: F811
    """Each row of Tables I-III and V-IX (Table IV: test_modeling_ablations) merges into a config,
    builds, runs a clip, and its model has the row's value where the table varies it."""
    rows = ABLATION_TABLES[table]
    assert len(rows) >= 2
    for name, overrides in rows.items():
        key, value = overrides[0], overrides[1]
        cfg = tiny_cfg(vocab_file, **{"MODEL.AAMN.LINK_FEATURE": "both"})
        cfg.merge_from_list(overrides)
        model = build_model(cfg).eval()
        model.half_length_of_mapper = ClipDatasetMapper(cfg, is_train=False).half_length
        built = _built_value(model, key)
        expected = type(built)(value) if not isinstance(built, bool) else value == "True"
        assert built == expected, (table, name, built)
        T = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1
        x = make_clip(seed=0, T=T, K=cfg.INPUT.CLIP.NUM_PROPOSALS, h=48, w=64)
        with torch.no_grad():
            assert model([x])[0]["instances"].pred_masks.shape == (1, 48, 64)
    values = [tuple(o) for o in rows.values()]
    assert len(set(values)) == len(values)  # the rows differ


@pytest.mark.slow
def test_the_paper_setting_trains_on_data_with_the_small_vgg(tmp_path):
    """configs/synthetic/aamn_paper_vgg.yaml (the paper's setting, small VGG-16) through the
    trainer: a few iterations on a data tree, then its evaluation."""
    from aamn.data.datasets import register_a2d_sentences
    from aamn.data.proposals import save_proposals
    from aamn.engine import Trainer
    from detectron2.data import MetadataCatalog
    from fixtures import square_proposals, write_square_tree

    root = str(tmp_path / "square")
    write_square_tree(root, key_frames=(3, 5, 7))
    name = f"paper_square_{uuid.uuid4().hex[:8]}"
    register_a2d_sentences(name, root, "train")
    save_proposals(MetadataCatalog.get(name).proposal_file, *square_proposals())
    opts = [
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "0", "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", str(tmp_path / "out"),
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)",
        "INPUT.CLIP.NUM_PROPOSALS", "2", "MODEL.AAMN.ROI_FC_DIM", "32",
    ]  # fmt: skip
    cfg = get_aamn_cfg(os.path.join(REPO, "configs", "synthetic", "aamn_paper_vgg.yaml"), opts)
    trainer = Trainer(cfg)
    assert isinstance(trainer.model.backbone, VGG16)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert {"P@0.5", "mean_IoU"} <= set(trainer._last_eval_results["segm"])
