"""A2D Sentences loader: records of the record contract from a tree written in the real layout."""

import logging
import os
import shutil
import time
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from aamn.data.datasets import (
    A2D_ACTORS,
    register_a2d_frames,
    register_a2d_sentences,
)
from aamn.data.layout_writers import write_a2d_annotation_txt, write_a2d_frame_h5, write_video_mp4
from aamn.data.video import VideoReader
from fixtures import (
    A2D_CODES,
    A2D_H,
    A2D_QUERIES,
    A2D_VIDEOS,
    A2D_W,
    blob_mask,
    box_of,
    frame_number_of,
    pattern_frames,
    write_a2d_tree,
)


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d")
    written = write_a2d_tree(str(root))
    return str(root), written


def fresh_copy(tree, tmp_path):
    root = os.path.join(tmp_path, "a2d")
    shutil.copytree(tree[0], root, ignore=shutil.ignore_patterns("cache"))
    return root


def load(root, split, **kw):
    name = unique(f"a2d_{split}")
    register_a2d_sentences(name, root, split, **kw)
    return name, DatasetCatalog.get(name)


def decode(rle):
    return mask_util.decode(rle).astype(bool)


def test_records_follow_the_contract_and_masks_match_pixel_for_pixel(tree):
    root, written = tree
    name, records = load(root, "train")
    keys = sorted((r["video_id"], r["frame_idx"], r["instance_id"]) for r in records)
    # vidA instance 1 in frames 3 and 7; vidB instance 1, 2 in frames 2 and 5, instance 3 in 5.
    assert keys == [
        ("vidA", 3, 1),
        ("vidA", 7, 1),
        ("vidB", 2, 1),
        ("vidB", 2, 2),
        ("vidB", 5, 1),
        ("vidB", 5, 2),
        ("vidB", 5, 3),
    ]
    for r in records:
        assert r["file_name"] == os.path.join(root, "Release", "clips320H", r["video_id"] + ".mp4")
        assert (r["height"], r["width"]) == (A2D_H, A2D_W)
        assert r["length"] == A2D_VIDEOS[r["video_id"]]["frames"]
        assert r["image_id"] == f"v_{r['video_id']}_f_{r['frame_idx']}_i_{r['instance_id']}"
        assert r["dataset_name"] == name
        frame_ids = A2D_VIDEOS[r["video_id"]]["annotated"][r["frame_idx"]]
        assert [a["instance_id"] for a in r["annotations"]] == frame_ids
        for a in r["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYXY_ABS
            assert a["segmentation"]["size"] == [A2D_H, A2D_W]
            m = written[(r["video_id"], r["frame_idx"], a["instance_id"])]
            np.testing.assert_array_equal(decode(a["segmentation"]), m)
            assert a["bbox"] == box_of(m)
            code = A2D_CODES[(r["video_id"], a["instance_id"])]
            assert a["category_id"] == code // 10 - 1
            assert a["action_id"] == code % 10 - 1
        referred = [a for a in r["annotations"] if a["instance_id"] == r["instance_id"]]
        assert len(referred) == 1
        np.testing.assert_array_equal(
            decode(referred[0]["segmentation"]),
            written[(r["video_id"], r["frame_idx"], r["instance_id"])],
        )
    queries = {(r["video_id"], r["instance_id"]): r["query"] for r in records}
    assert queries[("vidA", 1)] == "a man walking on the left"  # lower-cased, white space collapsed
    assert queries[("vidB", 1)] == "the dog, running"  # a quoted comma survives

    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "rvos" and meta.dataset_layout == "a2d" and meta.split == "train"
    assert meta.thing_classes == A2D_ACTORS and meta.action_classes[-1] == "none"
    assert meta.root == root and meta.flow_dir == os.path.join(root, "flow")
    assert meta.proposal_file == os.path.join(root, "proposals", f"{name}.pkl")


def test_copy_row_dropped_missed_video_excluded_test_split_separate(tree):
    root, _ = tree
    _, train = load(root, "train")
    _, test = load(root, "test")
    assert all("duplicate" not in r["query"] for r in train + test)
    assert all(r["video_id"] != "vidM" for r in train + test)
    assert {r["video_id"] for r in test} == {"vidC"}
    assert {r["video_id"] for r in train} == {"vidA", "vidB"}
    assert sorted((r["frame_idx"], r["instance_id"]) for r in test) == [(4, 1), (4, 2)]


def test_queries_without_annotated_frame_are_skipped_counted_and_reported_once(
    tree, tmp_path, caplog
):
    root = fresh_copy(tree, tmp_path)
    with caplog.at_level(logging.WARNING, logger="aamn.data.datasets"):
        _, records = load(root, "train")
    messages = [r.getMessage() for r in caplog.records]
    skipped = [m for m in messages if "in no annotated frame" in m]
    assert len(skipped) == 1 and "skipped 1 of 5 queries" in skipped[0] and "vidB" in skipped[0]
    assert any("1 (copy)" in m for m in messages)
    assert all(r["instance_id"] != 4 for r in records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aamn.data.datasets"):
        load(root, "train")  # from the cache: not reported again
    assert not [r for r in caplog.records if "in no annotated frame" in r.getMessage()]


def test_frame_numbers_are_one_based_against_the_video(tree):
    root, _ = tree
    _, records = load(root, "train")
    for r in records:
        frame = VideoReader(r["file_name"]).read([r["frame_idx"]])[0]
        assert frame_number_of(frame) == r["frame_idx"] - 1  # pattern index is 0-based


def test_index_cache_is_written_and_rebuilt_when_a_source_changes(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    _, before = load(root, "train")
    cache_files = os.listdir(os.path.join(root, "cache"))
    assert any(f.startswith("a2d_index_train") for f in cache_files)
    # second load comes from the cache: same records
    _, again = load(root, "train")
    assert [r["image_id"] for r in again] == [r["image_id"] for r in before]

    # change one .h5 file: a new mask for vidA frame 3
    new_mask = np.zeros((A2D_H, A2D_W), bool)
    new_mask[5:20, 30:60] = True
    time.sleep(0.01)
    write_a2d_frame_h5(
        os.path.join(root, "text_annotations", "a2d_annotation_with_instances", "vidA", "00003.h5"),
        [1],
        new_mask[None],
        [box_of(new_mask)],
        [18],
    )
    _, after = load(root, "train")
    rec = [r for r in after if (r["video_id"], r["frame_idx"]) == ("vidA", 3)][0]
    np.testing.assert_array_equal(decode(rec["annotations"][0]["segmentation"]), new_mask)

    # change the annotation file: a new query appears
    write_a2d_annotation_txt(
        os.path.join(root, "text_annotations", "a2d_annotation.txt"),
        list(A2D_QUERIES) + [("vidA", "1", "a brand new query")],
    )
    _, after2 = load(root, "train")
    assert sum(r["query"] == "a brand new query" for r in after2) == 2


def test_frames_dataset_one_record_per_annotated_frame(tree):
    root, written = tree
    name = unique("a2d_frames")
    register_a2d_frames(name, root, "train")
    records = DatasetCatalog.get(name)
    assert sorted(r["image_id"] for r in records) == [
        "vidA/00003",
        "vidA/00007",
        "vidB/00002",
        "vidB/00005",
    ]
    rec = [r for r in records if r["image_id"] == "vidB/00005"][0]
    assert [a["instance_id"] for a in rec["annotations"]] == [1, 2, 3]
    assert [a["category_id"] for a in rec["annotations"]] == [6, 5, 2]
    for a in rec["annotations"]:
        np.testing.assert_array_equal(
            decode(a["segmentation"]), written[("vidB", 5, a["instance_id"])]
        )
    assert MetadataCatalog.get(name).evaluator_type == "coco"


def test_full_video_annotation_dir(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    folder = os.path.join(root, "text_annotations", "all_frames")
    masks = {}
    for t in range(1, A2D_VIDEOS["vidA"]["frames"] + 1):
        m = blob_mask(A2D_H, A2D_W, seed=5000 + t)
        masks[t] = m
        write_a2d_frame_h5(os.path.join(folder, "vidA", f"{t:05d}.h5"), [1], m[None], [box_of(m)])
    _, records = load(root, "train", annotation_dir="text_annotations/all_frames")
    assert sorted(r["frame_idx"] for r in records) == list(range(1, 11))
    for r in records:
        np.testing.assert_array_equal(
            decode(r["annotations"][0]["segmentation"]), masks[r["frame_idx"]]
        )
        assert r["annotations"][0]["category_id"] == 0  # no 'id' dataset


def test_registering_again_replaces(tree):
    root, _ = tree
    name = unique("a2d_twice")
    register_a2d_sentences(name, root, "train")
    register_a2d_sentences(name, root, "test")
    assert {r["video_id"] for r in DatasetCatalog.get(name)} == {"vidC"}
    assert MetadataCatalog.get(name).split == "test"


# ---------------------------------------------------------------------------- errors
def test_missing_root_and_release_folder(tmp_path, tree):
    name = unique("a2d_missing")
    register_a2d_sentences(name, str(tmp_path / "nowhere"), "train")
    with pytest.raises(FileNotFoundError, match="root not found.*nowhere"):
        DatasetCatalog.get(name)
    root = fresh_copy(tree, tmp_path)
    shutil.rmtree(os.path.join(root, "Release", "clips320H"))
    with pytest.raises(FileNotFoundError, match="clips320H"):
        load(root, "train")
    with pytest.raises(ValueError, match="split"):
        register_a2d_sentences(unique("x"), root, "dev")


def test_missing_video(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    os.remove(os.path.join(root, "Release", "clips320H", "vidB.mp4"))
    with pytest.raises(FileNotFoundError, match=r"vidB\.mp4"):
        load(root, "train")
    # the test split does not need vidB
    _, test = load(root, "test")
    assert len(test) == 2


def test_corrupt_h5(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    bad = os.path.join(
        root, "text_annotations", "a2d_annotation_with_instances", "vidA", "00007.h5"
    )
    with open(bad, "wb") as f:
        f.write(b"this is not an HDF5 file")
    with pytest.raises(IOError, match=r"vidA.00007\.h5"):
        load(root, "train")


def test_mask_size_mismatch_and_transposed_mask(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    path = os.path.join(
        root, "text_annotations", "a2d_annotation_with_instances", "vidA", "00003.h5"
    )
    m = blob_mask(A2D_W, A2D_H, seed=1)  # (W, H): what a transposition bug would produce
    write_a2d_frame_h5(path, [1], m[None], [box_of(m)])
    with pytest.raises(ValueError, match=r"00003\.h5.*64x48.*48x64"):
        load(root, "train")


def test_unreadable_video(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    with open(os.path.join(root, "Release", "clips320H", "vidC.mp4"), "wb") as f:
        f.write(b"\x00" * 64)
    with pytest.raises(IOError, match=r"vidC\.mp4"):
        load(root, "test")


# ---------------------------------------------------------------------------- video reader
def test_video_reader_seeks_and_reads_only_needed_frames(tmp_path):
    path = str(tmp_path / "long.mp4")
    write_video_mp4(path, pattern_frames(40, A2D_H, A2D_W))
    reader = VideoReader(path)
    assert (len(reader), reader.height, reader.width) == (40, A2D_H, A2D_W)
    for indices in ([30, 31, 32], [5, 1, 5], [40], [12, 39, 2], [33, 34, 35, 36, 37]):
        frames = reader.read(indices)
        assert frames.shape == (len(indices), A2D_H, A2D_W, 3)
        assert [frame_number_of(f) + 1 for f in frames] == indices
    rgb, bgr = reader.read([3]), reader.read([3], format="BGR")
    np.testing.assert_array_equal(rgb[..., ::-1], bgr)
    with pytest.raises(IndexError, match="41"):
        reader.read([41])
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        VideoReader(str(tmp_path / "absent.mp4"))


def test_layout_writers_are_deterministic(tmp_path):
    import hashlib

    def digest(p):
        with open(p, "rb") as f:
            return hashlib.md5(f.read()).hexdigest()

    masks = np.stack([blob_mask(A2D_H, A2D_W, 1), blob_mask(A2D_H, A2D_W, 2)])
    for k in range(2):
        write_a2d_frame_h5(
            tmp_path / f"{k}.h5", [1, 2], masks, [box_of(m) for m in masks], [11, 22]
        )
        write_video_mp4(str(tmp_path / f"{k}.mp4"), pattern_frames(3, A2D_H, A2D_W))
        time.sleep(0.02)
    assert digest(tmp_path / "0.h5") == digest(tmp_path / "1.h5")
    assert digest(tmp_path / "0.mp4") == digest(tmp_path / "1.mp4")
    with pytest.raises(ValueError, match="even"):
        write_video_mp4(str(tmp_path / "odd.mp4"), np.zeros((2, 45, 61, 3), np.uint8))


# ---------------------------------------------------------------------------- detector mapper
def test_video_frame_mapper_with_detectron2_loader_and_rcnn(tree):
    from detectron2.config import get_cfg
    from detectron2.data import build_detection_train_loader
    from detectron2.modeling import build_model

    from aamn.data.dataset_mappers import VideoFrameDatasetMapper

    root, _ = tree
    name = unique("a2d_det")
    register_a2d_frames(name, root, "train")
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(A2D_ACTORS)
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.DATASETS.TRAIN = (name,)
    cfg.INPUT.MIN_SIZE_TRAIN = (48,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    mapper = VideoFrameDatasetMapper(cfg, True)
    rec = [r for r in DatasetCatalog.get(name) if r["image_id"] == "vidB/00005"][0]
    out = mapper(rec)
    assert out["image"].shape[0] == 3 and out["image"].dtype == torch.uint8
    assert len(out["instances"]) == 3 and out["instances"].has("gt_masks")
    loader = build_detection_train_loader(cfg, mapper=mapper)
    batch = next(iter(loader))
    assert len(batch) == 2
    from detectron2.utils.events import EventStorage

    model = build_model(cfg)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()) and "loss_mask" in losses


def test_standard_names_registered_under_aamn_datasets(tmp_path, monkeypatch):
    import importlib

    from aamn.data.datasets import builtin

    names = [
        "a2d_sentences_train",
        "a2d_sentences_test",
        "a2d_sentences_train_frames",
        "jhmdb_sentences_test",
        "synthetic_a2d_train",
        "synthetic_a2d_test",
        "synthetic_a2d_test_frames",
        "synthetic_jhmdb_test",
    ]
    assert set(names) <= set(DatasetCatalog.list())
    old_root = MetadataCatalog.get("a2d_sentences_train").root
    monkeypatch.setenv("AAMN_DATASETS", str(tmp_path))
    try:
        importlib.reload(builtin)  # registering again replaces, no error
        assert MetadataCatalog.get("a2d_sentences_train").root == str(tmp_path / "a2d_sentences")
        assert MetadataCatalog.get("synthetic_jhmdb_test").synthetic_meta == str(
            tmp_path / "synthetic" / "jhmdb_sentences" / "synthetic_meta.json"
        )
        with pytest.raises(FileNotFoundError, match=r"AAMN_DATASETS"):
            DatasetCatalog.get("a2d_sentences_test")
    finally:
        monkeypatch.setenv("AAMN_DATASETS", os.path.dirname(old_root))
        importlib.reload(builtin)
    assert MetadataCatalog.get("a2d_sentences_train").root == old_root
