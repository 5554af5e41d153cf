"""Ref-YouTube-VOS and Ref-DAVIS17 (the Ref-YouTube-VOS form) read from a fixture that copies the
release layout: palette PNGs of object ids, frames every 5th, meta_expressions.json's keys; the
record contract, the frames read back, the split without masks, and bad files named."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from fixtures import YTVOS_VIDEOS, write_ytvos_tree

from aamn.data.datasets.register_ref_youtube_vos import (
    load_ref_youtube_vos,
    register_ref_davis,
    register_ref_youtube_vos,
)
from aamn.data.video import VideoReader


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ref-youtube-vos"
    ids = write_ytvos_tree(str(root))
    return root, ids


def test_records_follow_the_contract(tree):
    root, ids = tree
    records = load_ref_youtube_vos(str(root), "train")
    # expression 0 of the first video: its person in 3 frames; expression 1: the dog in frames
    # 2 and 3 only (absent from the first); the cat's expression in its 2 frames
    by = {}
    for r in records:
        by.setdefault((r["video_id"], r["exp_id"]), []).append(r)
    assert {k: [r["frame_idx"] for r in v] for k, v in by.items()} == {
        ("0a1b2c3d4e", "0"): [1, 2, 3],
        ("0a1b2c3d4e", "1"): [2, 3],
        ("1f2e3d4c5b", "0"): [1, 2],
    }
    r = by[("0a1b2c3d4e", "1")][1]
    assert r["frame_name"] == "00010" and r["query"] == "the dog on the right"
    assert r["instance_id"] == 2 and r["instance_ids"] == [2]
    assert r["image_id"] == "v_0a1b2c3d4e_f_3_e_1" and r["length"] == 3
    assert (r["height"], r["width"]) == (36, 48)
    assert r["file_name"] == str(root / "train" / "JPEGImages" / "0a1b2c3d4e")
    anns = {a["instance_id"]: a for a in r["annotations"]}
    assert set(anns) == {1, 2}
    for obj, a in anns.items():
        m = mask_util.decode(a["segmentation"]).astype(bool)
        assert np.array_equal(m, ids[("0a1b2c3d4e", "00010")] == obj)
        ys, xs = np.nonzero(m)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the categories of meta.json are not A2D's actors (dog, cat, person): one class, "object"
    # (the proposal detector of such a release is class-agnostic)
    assert anns[2]["category_id"] == 0
    from aamn.data.datasets.register_ref_youtube_vos import thing_classes_of

    assert thing_classes_of(str(root / "train")) == ["object"]
    assert len({r["image_id"] for r in records}) == len(records)


def test_the_frame_of_a_record_is_its_jpeg(tree):
    from PIL import Image

    root, _ = tree
    r = [r for r in load_ref_youtube_vos(str(root), "train") if r["frame_name"] == "00005"][0]
    reader = VideoReader(r["file_name"])
    assert len(reader) == 3
    got = reader.read([r["frame_idx"]])[0]
    want = np.asarray(Image.open(os.path.join(r["file_name"], "00005.jpg")).convert("RGB"))
    assert np.array_equal(got, want)


def test_all_frames_and_a_split_without_masks(tmp_path, tree):
    root, _ = tree
    every = load_ref_youtube_vos(str(root), "train", all_frames=True)
    assert len(every) == 3 * 2 + 2  # every listed frame of every expression
    empty = [r for r in every if r["exp_id"] == "1" and r["frame_idx"] == 1][0]
    assert 2 not in {a["instance_id"] for a in empty["annotations"]}
    valid = tmp_path / "v"
    write_ytvos_tree(str(valid), split="valid", with_masks=False)
    records = load_ref_youtube_vos(str(valid), "valid")
    assert len(records) == 8 and all(r["annotations"] == [] for r in records)
    register_ref_youtube_vos("ytvos_fixture_valid", str(valid), "valid")
    try:
        meta = MetadataCatalog.get("ytvos_fixture_valid")
        assert meta.evaluator_type == "none" and meta.annotations_dir is None
    finally:
        DatasetCatalog.remove("ytvos_fixture_valid")
        MetadataCatalog.remove("ytvos_fixture_valid")


def test_ref_davis_scores_each_annotator_apart(tmp_path):
    """Four expressions per object (two annotators, first-frame and full-video); the annotator is
    exp_id // 2 % 2, and J&F is each annotator's, then their mean."""
    from aamn.data.datasets.register_ref_youtube_vos import annotator_of

    assert [annotator_of(str(i)) for i in range(8)] == [0, 0, 1, 1, 0, 0, 1, 1]
    root = tmp_path / "ref-davis"
    write_ytvos_tree(str(root), split="valid")
    register_ref_davis("davis_fixture", str(root), "valid", all_frames=True)
    try:
        meta = MetadataCatalog.get("davis_fixture")
        assert meta.evaluator_type == "jf" and meta.per_annotator
        records = DatasetCatalog.get("davis_fixture")
        assert {r["annotator"] for r in records} == {0}  # exp ids 0 and 1
    finally:
        DatasetCatalog.remove("davis_fixture")
        MetadataCatalog.remove("davis_fixture")


def _rewrite_meta(root, edit):
    path = root / "meta_expressions" / "train" / "meta_expressions.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["videos"].__setitem__("../x", m["videos"].pop("1f2e3d4c5b")), "video id"),
        (lambda m: m["videos"]["1f2e3d4c5b"]["expressions"]["0"].__setitem__("obj_id", "one"),
         "is not an integer"),
        (lambda m: m["videos"]["1f2e3d4c5b"]["frames"].append("00020"), "frame 00020"),
        (lambda m: m["videos"]["1f2e3d4c5b"]["expressions"]["0"].__setitem__("exp", " "),
         "has no 'exp' text"),
    ],
)  # fmt: skip
def test_bad_release_files_are_named(tree, edit, message):
    root, _ = tree
    path = _rewrite_meta(root, edit)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        load_ref_youtube_vos(str(root), "train")
    assert "meta_expressions.json" in str(e.value) or str(path) in str(e.value)


def test_a_corrupt_annotation_is_named(tree):
    root, _ = tree
    png = root / "train" / "Annotations" / "1f2e3d4c5b" / "00005.png"
    png.write_bytes(b"not a png")
    with pytest.raises(IOError, match="00005.png"):
        load_ref_youtube_vos(str(root), "train")


def test_the_detectors_frames_of_a_split(tree):
    """One detection record per listed frame that shows an object, every object in it."""
    from aamn.data.datasets.register_ref_youtube_vos import load_ref_youtube_vos_frames

    root, ids = tree
    frames = load_ref_youtube_vos_frames(str(root), "train")
    assert len(frames) == 3 + 2
    counts = {(r["video_id"], r["frame_idx"]): len(r["annotations"]) for r in frames}
    assert counts[("0a1b2c3d4e", 1)] == 1 and counts[("0a1b2c3d4e", 2)] == 2


def test_flow_lists_the_split_videos(tree):
    from aamn.data.datasets.common import detect_layout, list_layout_videos

    root, _ = tree
    split = str(root / "train")
    assert detect_layout(split) == "ytvos"
    assert [v for v, _ in list_layout_videos(split)] == sorted(YTVOS_VIDEOS)


def test_mevis_expressions_about_several_objects_target_their_union(tmp_path):
    """Every listed frame is a record (J&F); expression "1" refers to objects 0 and 1, its target
    the union of their masks (object 1 absent from the first frame); J&F of a prediction of
    object 0 alone is a hand count."""
    import torch
    from detectron2.structures import Instances
    from fixtures import write_mevis_tree

    from aamn.data.datasets.register_ref_youtube_vos import register_mevis
    from aamn.evaluation.jf import JFEvaluator, jaccard, target_mask

    root = tmp_path / "mevis"
    masks = write_mevis_tree(str(root))
    register_mevis("mevis_fixture", str(root), "train")
    try:
        records = DatasetCatalog.get("mevis_fixture")
        assert MetadataCatalog.get("mevis_fixture").evaluator_type == "jf"
        assert len(records) == 2 * 3
        both = sorted((r for r in records if r["exp_id"] == "1"), key=lambda r: r["frame_idx"])
        assert both[0]["instance_ids"] == [0, 1]
        assert [len(r["annotations"]) for r in both] == [1, 2, 2]
        for t, r in enumerate(both):
            union = masks[(10, t)] | (masks[(11, t)] if masks[(11, t)] is not None else False)
            assert np.array_equal(target_mask(r), union)
        ev = JFEvaluator("mevis_fixture", distributed=False)
        ev.reset()
        for r in records:
            inst = Instances((r["height"], r["width"]))
            inst.pred_masks = torch.from_numpy(masks[(10, r["frame_idx"] - 1)])[None]
            inst.scores = torch.tensor([1.0])
            ev.process([{"image_id": r["image_id"]}], [{"instances": inst}])
        results = ev.evaluate()
        res = results["jf"]
        j_both = np.mean([jaccard(masks[(10, t)], target_mask(both[t])) for t in range(3)])
        assert res["J"] == pytest.approx(100 * (1.0 + j_both) / 2)
        # each kind of expression apart: the one-object expression right, the other not
        assert results["jf_one_object"]["J"] == pytest.approx(100.0)
        assert results["jf_several_objects"]["J"] == pytest.approx(100 * j_both)
    finally:
        DatasetCatalog.remove("mevis_fixture")
        MetadataCatalog.remove("mevis_fixture")
    bad = json.loads((root / "train" / "mask_dict.json").read_text())
    bad["11"] = bad["11"][:2]
    (root / "train" / "mask_dict.json").write_text(json.dumps(bad))
    from aamn.data.datasets.register_ref_youtube_vos import load_mevis

    with pytest.raises(ValueError, match="anno_id 11 needs a list of 3 masks"):
        load_mevis(str(root), "train")
