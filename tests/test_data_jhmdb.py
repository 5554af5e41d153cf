"""J-HMDB Sentences loader: 3 uniformly sampled frames per video, masks in the real orientation."""

import os
import shutil
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from aamn.data.datasets import JHMDB_ACTIONS, register_jhmdb_sentences
from aamn.data.datasets.register_jhmdb_sentences import sample_frames
from aamn.data.layout_writers import write_jhmdb_puppet_mask
from aamn.data.video import VideoReader
from fixtures import JHMDB_H, JHMDB_VIDEOS, JHMDB_W, blob_mask, box_of, write_jhmdb_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("jhmdb")
    masks, frames = write_jhmdb_tree(str(root))
    return str(root), masks, frames


def load(root):
    name = f"jhmdb_{uuid.uuid4().hex[:8]}"
    register_jhmdb_sentences(name, root)
    return name, DatasetCatalog.get(name)


def fresh_copy(tree, tmp_path):
    root = os.path.join(tmp_path, "jhmdb")
    shutil.copytree(tree[0], root, ignore=shutil.ignore_patterns("cache"))
    return root


def test_three_uniform_frames_per_video_within_the_masked_frames(tree):
    root, masks, frames = tree
    name, records = load(root)
    by_video = {}
    for r in records:
        by_video.setdefault(r["video_id"], []).append(r["frame_idx"])
    # 10 frames, 10 masks: round(linspace(1, 10, 3)) = 1, 6 (5.5 to even), 10
    assert by_video["walker_1"] == [1, 6, 10]
    # 12 frames but 7 masks: frames 8..12 are unusable
    assert by_video["jumper_2"] == [1, 4, 7]
    assert all(f <= JHMDB_VIDEOS["jumper_2"]["masks"] for f in by_video["jumper_2"])
    # deterministic: the same frames on every load (from the cache and rebuilt)
    shutil.rmtree(os.path.join(root, "cache"))
    _, again = load(root)
    assert [r["image_id"] for r in again] == [r["image_id"] for r in records]

    for r in records:
        info = JHMDB_VIDEOS[r["video_id"]]
        assert r["file_name"] == os.path.join(root, "Rename_Images", info["action"], r["video_id"])
        assert r["length"] == info["frames"]
        assert (r["height"], r["width"]) == (JHMDB_H, JHMDB_W)
        assert r["instance_id"] == 1 and r["action"] == info["action"]
        assert r["image_id"] == f"v_{r['video_id']}_f_{r['frame_idx']}_i_1"
        assert r["dataset_name"] == name
        (a,) = r["annotations"]
        m = masks[(r["video_id"], r["frame_idx"])]
        np.testing.assert_array_equal(mask_util.decode(a["segmentation"]).astype(bool), m)
        assert a["bbox"] == box_of(m) and a["instance_id"] == 1
        # frames are 1-based: the record's frame is the written frame t-1
        np.testing.assert_array_equal(
            VideoReader(r["file_name"]).read([r["frame_idx"]])[0],
            frames[r["video_id"]][r["frame_idx"] - 1],
        )
    queries = {r["video_id"]: r["query"] for r in records}
    assert queries["walker_1"] == "a man walking to the left"
    meta = MetadataCatalog.get(name)
    assert meta.dataset_layout == "jhmdb" and meta.evaluator_type == "rvos"
    assert meta.action_classes == JHMDB_ACTIONS and meta.split == "test"


def test_sample_frames():
    assert sample_frames(0) == []
    assert sample_frames(1) == [1]
    assert sample_frames(2) == [1, 2]
    assert sample_frames(40) == [1, 20, 40]


def test_missing_root_and_folders(tree, tmp_path):
    name = f"jhmdb_{uuid.uuid4().hex[:8]}"
    register_jhmdb_sentences(name, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="root not found.*nowhere"):
        DatasetCatalog.get(name)
    root = fresh_copy(tree, tmp_path)
    shutil.rmtree(os.path.join(root, "puppet_mask"))
    with pytest.raises(FileNotFoundError, match="puppet_mask"):
        load(root)


def test_missing_video(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    shutil.rmtree(os.path.join(root, "Rename_Images", "jump", "jumper_2"))
    with pytest.raises(FileNotFoundError, match="jumper_2"):
        load(root)


def test_corrupt_mat(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    bad = os.path.join(root, "puppet_mask", "walk", "walker_1", "puppet_mask.mat")
    with open(bad, "wb") as f:
        f.write(b"MATLAB? no." * 20)
    with pytest.raises(IOError, match=r"walker_1.puppet_mask\.mat"):
        load(root)


def test_mask_size_mismatch(tree, tmp_path):
    root = fresh_copy(tree, tmp_path)
    path = os.path.join(root, "puppet_mask", "walk", "walker_1", "puppet_mask.mat")
    # (W, H) masks: what a transposition would give
    write_jhmdb_puppet_mask(path, np.stack([blob_mask(JHMDB_W, JHMDB_H, t) for t in range(10)]))
    with pytest.raises(ValueError, match=r"puppet_mask\.mat.*56x40.*40x56"):
        load(root)


def test_puppet_mask_is_deterministic(tmp_path):
    masks = np.stack([blob_mask(JHMDB_H, JHMDB_W, t) for t in range(3)])
    write_jhmdb_puppet_mask(tmp_path / "a.mat", masks)
    write_jhmdb_puppet_mask(tmp_path / "b.mat", masks)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
