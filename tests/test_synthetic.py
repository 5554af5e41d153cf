"""The synthetic benchmark: determinism, layouts read by the project's loaders, difficulty,
motions."""

import filecmp
import importlib.util
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from pycocotools import mask as mask_util

from aamn.data.datasets import (
    read_a2d_frame_h5,
    read_puppet_mask,
    register_a2d_sentences,
    register_jhmdb_sentences,
)
from aamn.utils.masks import mask_to_box
from aamn.data.synthetic import QUERY_TYPES, SIZES, generate, query_types
from aamn.data.synthetic.actors import ACTION_CLASSES, SIZE_RANGES, VALID_ACTIONS
from aamn.data.synthetic.motions import simulate_motion
from aamn.data.synthetic.queries import ACTION_PHRASES, LOCATION_PHRASES, choose_attributes
from aamn.data.synthetic.scenes import SceneConfig, sample_a2d_video
from aamn.data.synthetic.writer import _rng, _scene_config, a2d_video_id, compute_statistics
from aamn.data.video import VideoReader
from fixtures import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUNDS = {"needs_action": 0.30, "needs_appearance": 0.30, "needs_location": 0.10}


def tree_files(root):
    out = []
    for folder, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, f), root) for f in files]
    return sorted(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny benchmark (seed 3) and its A2D metadata."""
    out = str(tmp_path_factory.mktemp("synthetic") / "synthetic")
    info = generate(out, "tiny", seed=3, workers=1)
    with open(os.path.join(out, "a2d_sentences", "synthetic_meta.json")) as f:
        meta = json.load(f)
    return out, info, meta


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_writes_identical_files_whatever_the_worker_count(tmp_path):
    a = generate(str(tmp_path / "a"), "tiny", seed=5, workers=1)
    b = generate(str(tmp_path / "b"), "tiny", seed=5, workers=2)
    files = tree_files(tmp_path / "a")
    assert files == tree_files(tmp_path / "b")
    assert any(f.endswith(".mp4") for f in files) and any(f.endswith(".mat") for f in files)
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files)
    assert a["statistics"] == b["statistics"]
    c = generate(str(tmp_path / "c"), "tiny", seed=6, workers=1)
    assert c["missed_videos"] != a["missed_videos"]


def test_existing_tree_is_kept_replaced_or_refused(tmp_path):
    out = str(tmp_path / "synthetic")
    first = generate(out, "tiny", seed=0, workers=1)
    info_file = os.path.join(out, "synthetic_info.json")
    mtime = os.stat(info_file).st_mtime_ns
    again = generate(out, "tiny", seed=0, workers=1)
    assert again["skipped"] and not first["skipped"] and os.stat(info_file).st_mtime_ns == mtime
    # another seed (or size) replaces the tree only when asked
    with pytest.raises(ValueError, match=r"size tiny and seed 0; writing size tiny and seed 1"):
        generate(out, "tiny", seed=1, workers=1)
    assert os.stat(info_file).st_mtime_ns == mtime
    other = generate(out, "tiny", seed=1, workers=1, overwrite=True)
    assert not other["skipped"] and json.load(open(info_file))["seed"] == 1
    assert not [n for n in os.listdir(tmp_path) if ".incomplete-" in n or ".old-" in n]

    with pytest.raises(ValueError, match="unknown size"):
        generate(str(tmp_path / "x"), "huge")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    with pytest.raises(ValueError, match="not written by this generator"):
        generate(str(foreign), "tiny")
    release = tmp_path / "a2d" / "Release"
    release.mkdir(parents=True)
    (release / "videoset.csv").write_text("")
    with pytest.raises(ValueError, match="looks like an A2D / J-HMDB Sentences release"):
        generate(str(tmp_path / "a2d" / "synthetic"), "tiny")
    assert (foreign / "notes.txt").read_text() == "not ours"


# ------------------------------------------------------------------------------------ layouts
def test_a2d_layout_loads_through_the_project_loader(tiny):
    out, info, meta = tiny
    root = os.path.join(out, "a2d_sentences")
    spec = SIZES["tiny"]
    missed = set(
        open(os.path.join(root, "text_annotations", "a2d_missed_videos.txt")).read().split()
    )
    assert len(missed) == 2 and missed == set(info["missed_videos"])
    for split, n in (("train", spec.train), ("val", spec.val), ("test", spec.test)):
        name = f"_test_synthetic_{split}"
        register_a2d_sentences(name, root, split)
        records = DatasetCatalog.get(name)
        vids = {r["video_id"] for r in records}
        assert len(vids) == n and not vids & missed
        assert all(meta["videos"][v]["split"] == split for v in vids)
        # one record per (query, annotated frame showing the queried actor)
        expected = sum(
            1
            for q in meta["queries"]
            if q["video_id"] in vids
            for f in meta["videos"][q["video_id"]]["annotated_frames"]
            if meta["videos"][q["video_id"]]["instances"][str(q["instance_id"])]["boxes"][f - 1]
        )
        assert len(records) == expected
        for r in records:
            assert (r["height"], r["width"]) == (spec.height, spec.width) and r["height"] != r[
                "width"
            ]
            inst = meta["videos"][r["video_id"]]["instances"][str(r["instance_id"])]
            referred = [a for a in r["annotations"] if a["instance_id"] == r["instance_id"]]
            assert len(referred) == 1
            assert referred[0]["bbox"] == inst["boxes"][r["frame_idx"] - 1]
            assert referred[0]["category_id"] == [
                "adult",
                "baby",
                "ball",
                "bird",
                "car",
                "cat",
                "dog",
            ].index(inst["category"])
            assert 3 <= len(meta["videos"][r["video_id"]]["annotated_frames"]) <= 5


def test_validation_videos_are_drawn_apart_and_held_out_of_training(tiny, tmp_path):
    """The val split: its own videos (own random stream), training-usage videos of videoset.csv
    listed in aamn_val_videos.txt, which the train split leaves out; adding them leaves the
    training and test videos as they were."""
    from aamn.data.datasets.register_a2d_sentences import read_videoset
    from aamn.data.layout_writers import VAL_LIST

    out, info, meta = tiny
    root = os.path.join(out, "a2d_sentences")
    listed = open(os.path.join(root, VAL_LIST)).read().split()
    spec = SIZES["tiny"]
    assert len(listed) == spec.val == info["statistics"]["val"]["videos"] > 0
    assert listed == sorted(a2d_video_id(3, "val", i) for i in range(spec.val))
    videoset = read_videoset(os.path.join(root, "Release", "videoset.csv"))
    assert all(videoset[v]["usage"] == 0 for v in listed)  # training videos in A2D's terms
    vids = {}
    for split in ("train", "val", "test"):
        register_a2d_sentences(f"_val_split_{split}", root, split)
        vids[split] = {r["video_id"] for r in DatasetCatalog.get(f"_val_split_{split}")}
    assert vids["val"] == set(listed)
    assert not vids["val"] & vids["train"] and not vids["val"] & vids["test"]
    # the training and test videos are those of (seed, split, index), as before the val split
    assert vids["train"] <= {a2d_video_id(3, "train", i) for i in range(spec.train + 1)}
    assert vids["test"] <= {a2d_video_id(3, "test", i) for i in range(spec.test + 1)}

    # A list naming a test video, or a video the release does not have, is refused by name.
    import shutil

    copy = tmp_path / "a2d"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache"))
    test_video = sorted(vids["test"])[0]
    for bad, message in ((test_video, "is a test video"), ("noSuchVideo", "not in Release")):
        (copy / VAL_LIST).write_text(bad + "\n")
        register_a2d_sentences("_val_split_bad", str(copy), "val")
        with pytest.raises(ValueError, match=message):
            DatasetCatalog.get("_val_split_bad")
    (copy / VAL_LIST).unlink()
    register_a2d_sentences("_val_split_bad", str(copy), "val")
    with pytest.raises(FileNotFoundError, match="make_val_split.py"):
        DatasetCatalog.get("_val_split_bad")
    register_a2d_sentences("_val_split_train", str(copy), "train")  # no list: every training video
    assert len({r["video_id"] for r in DatasetCatalog.get("_val_split_train")}) == len(
        vids["train"] | vids["val"]
    )


def test_make_val_split_holds_out_a_fraction_of_a_release_and_keeps_an_existing_list(
    tiny, tmp_path, capsys
):
    import shutil

    from aamn.data.layout_writers import VAL_LIST

    out, _, _ = tiny
    copy = tmp_path / "a2d"
    shutil.copytree(
        os.path.join(out, "a2d_sentences"), copy, ignore=shutil.ignore_patterns("cache")
    )
    (copy / VAL_LIST).unlink()  # a release has no list
    before = {f: open(copy / f, "rb").read() for f in tree_files(copy)}
    script = load_script("datasets/make_val_split.py")
    assert script.main(["--root", str(copy), "--fraction", "0.5"]) in (0, None)
    listed = (copy / VAL_LIST).read_text().split()
    register_a2d_sentences("_made_val", str(copy), "val")
    register_a2d_sentences("_made_train", str(copy), "train")
    val = {r["video_id"] for r in DatasetCatalog.get("_made_val")}
    train = {r["video_id"] for r in DatasetCatalog.get("_made_train")}
    assert val and set(listed) >= val and not val & train
    assert len(listed) == round(0.5 * (len(train | val)))  # every training video has queries here
    after = {f: open(copy / f, "rb").read() for f in tree_files(copy) if f != VAL_LIST}
    assert {f: b for f, b in after.items() if not f.startswith("cache")} == {
        f: b for f, b in before.items() if not f.startswith("cache")
    }  # the release's own files untouched
    with pytest.raises(SystemExit, match="exists; --overwrite"):
        script.main(["--root", str(copy)])
    with pytest.raises(SystemExit, match="strictly between 0 and 1"):
        script.main(["--root", str(copy), "--fraction", "1.5", "--overwrite"])
    assert (copy / VAL_LIST).read_text().split() == listed  # kept through both refusals


def test_loaded_masks_equal_the_rendered_masks(tiny):
    """The records' masks (every frame) equal the masks the generator drew, and the video is
    non-square."""
    out, _, meta = tiny
    root = os.path.join(out, "a2d_sentences")
    name = "_test_synthetic_full"
    register_a2d_sentences(name, root, "test", annotation_dir="synthetic_full_annotations")
    records = DatasetCatalog.get(name)
    spec = SIZES["tiny"]
    index = next(
        i
        for i in range(spec.test + 1)
        if a2d_video_id(3, "test", i) in {r["video_id"] for r in records}
    )
    vid = a2d_video_id(3, "test", index)
    video = sample_a2d_video(_rng(3, "test", index), _scene_config(spec))
    mine = [r for r in records if r["video_id"] == vid]
    queried = {q["instance_id"] for q in video.queries}
    assert {r["instance_id"] for r in mine} == queried
    assert {r["frame_idx"] for r in mine} == set(range(1, video.frames.shape[0] + 1)) - {
        t + 1
        for t in range(video.frames.shape[0])
        if all(video.instances[k]["boxes"][t] is None for k in queried)
    }
    for r in mine:
        for a in r["annotations"]:
            rendered = video.labels[r["frame_idx"] - 1] == a["instance_id"] + 1
            assert np.array_equal(mask_util.decode(a["segmentation"]).astype(bool), rendered)
    frames = VideoReader(mine[0]["file_name"]).read_all()
    assert frames.shape == video.frames.shape == (video.frames.shape[0], spec.height, spec.width, 3)
    assert np.abs(frames.astype(int) - video.frames).mean() < 12  # mp4 is lossy, but close


def test_meta_boxes_are_tight_around_the_written_masks(tiny):
    out, _, meta = tiny
    root = os.path.join(out, "a2d_sentences")
    checked = 0
    for vid, v in meta["videos"].items():
        for t in range(1, v["length"] + 1):
            path = os.path.join(root, "synthetic_full_annotations", vid, f"{t:05d}.h5")
            visible = {int(k) for k, i in v["instances"].items() if i["boxes"][t - 1] is not None}
            if not visible:
                assert not os.path.exists(path)
                continue
            data = read_a2d_frame_h5(path)
            assert set(data["instance_ids"]) == visible
            for k, iid in enumerate(data["instance_ids"]):
                box = v["instances"][str(iid)]["boxes"][t - 1]
                assert box == mask_to_box(data["masks"][k])
                assert np.allclose(data["boxes"][k], box)
                checked += 1
            sparse = os.path.join(
                root, "text_annotations", "a2d_annotation_with_instances", vid, f"{t:05d}.h5"
            )
            assert os.path.exists(sparse) == (t in v["annotated_frames"])
    assert checked > 100


def test_jhmdb_layout_loads_through_the_project_loader(tiny):
    out, _, _ = tiny
    root = os.path.join(out, "jhmdb_sentences")
    with open(os.path.join(root, "synthetic_meta.json")) as f:
        jmeta = json.load(f)
    register_jhmdb_sentences("_test_synthetic_jhmdb", root)
    records = DatasetCatalog.get("_test_synthetic_jhmdb")
    assert {r["video_id"] for r in records} == set(jmeta["videos"])
    assert len(records) == 3 * len(jmeta["videos"])
    assert any(v["num_masks"] < v["length"] for v in jmeta["videos"].values())
    for r in records:
        v = jmeta["videos"][r["video_id"]]
        assert r["instance_id"] == 1 and r["frame_idx"] <= v["num_masks"]
        assert (r["height"], r["width"]) == (SIZES["tiny"].height, SIZES["tiny"].width)
        mat = os.path.join(
            root, "puppet_mask", v["action_folder"], r["video_id"], "puppet_mask.mat"
        )
        masks = read_puppet_mask(mat)
        assert masks.shape[0] == v["num_masks"]
        (anno,) = r["annotations"]
        assert np.array_equal(
            mask_util.decode(anno["segmentation"]).astype(bool), masks[r["frame_idx"] - 1]
        )
        assert anno["bbox"] == v["instances"]["1"]["boxes"][r["frame_idx"] - 1]
        assert len(os.listdir(r["file_name"])) == v["length"]


# ------------------------------------------------------------------------------------ difficulty
def test_hard_query_fractions_meet_the_bounds():
    """On 160 videos (about 480 queries), counted with query_types from metadata of the written
    form."""
    cfg = SceneConfig(height=48, width=64, min_frames=12, max_frames=16)
    meta = {"videos": {}, "queries": []}
    for i in range(160):
        video = sample_a2d_video(np.random.default_rng([11, i]), cfg)
        vid = f"v{i:04d}"
        meta["videos"][vid] = {
            "split": "test",
            "length": video.frames.shape[0],
            "annotated_frames": video.annotated_frames,
            "instances": {str(x["instance_id"]): x for x in video.instances},
        }
        meta["queries"] += [dict(q, video_id=vid) for q in video.queries]
    fractions = compute_statistics(meta)["all"]["query_type_fractions"]
    for t, bound in BOUNDS.items():
        assert fractions[t] >= bound, (t, fractions)
    types = query_types(meta)
    for q in meta["queries"]:
        assert set(q["types"]) == types[(q["video_id"], q["instance_id"])]
        words = q["query"]
        if "needs_action" in q["types"]:
            assert any(
                p in words
                for p, _ in ACTION_PHRASES[
                    meta["videos"][q["video_id"]]["instances"][str(q["instance_id"])]["action"]
                ]
            ) or any(
                p3 in words
                for _, p3 in ACTION_PHRASES[
                    meta["videos"][q["video_id"]]["instances"][str(q["instance_id"])]["action"]
                ]
            )
        if "needs_location" in q["types"]:
            assert any(p in words for p in LOCATION_PHRASES[q["location"]])


def test_written_fractions_match_the_stored_types(tiny):
    _, info, meta = tiny
    types = query_types(meta)
    assert set(types) == {(q["video_id"], q["instance_id"]) for q in meta["queries"]}
    for q in meta["queries"]:
        assert set(q["types"]) == types[(q["video_id"], q["instance_id"])] <= set(QUERY_TYPES)
    assert (
        info["statistics"]
        == json.load(open(os.path.join(tiny[0], "synthetic_info.json")))["statistics"]
    )


def test_every_query_fits_only_its_actor():
    rng = np.random.default_rng(0)
    looks = [
        dict(category=c, color=col, size=s, action=a, location=loc)
        for c in ("dog", "cat")
        for col in ("red", "blue")
        for s in ("small",)
        for a in ("running", "none")
        for loc in (["left"], ["right"])
    ]
    for _ in range(300):
        cast = [looks[i] for i in rng.choice(len(looks), size=4, replace=False)]
        for k, target in enumerate(cast):
            others = cast[:k] + cast[k + 1 :]
            chosen = choose_attributes(rng, target, others)
            assert chosen is not None
            attrs, loc = chosen
            for o in others:
                assert any(
                    (o[a] != target[a]) if a != "location" else (loc not in o["location"])
                    for a in attrs
                )


# ------------------------------------------------------------------------------------ motions
def _window_action(poses, u):
    """Name the action of 5 consecutive poses from the documented motion patterns alone."""
    x = np.array([p.cx for p in poses]) / u
    y = np.array([p.cy for p in poses]) / u
    dx, dy = np.abs(np.diff(x)), np.diff(y)
    dth = np.abs(np.diff([p.theta for p in poses]))
    sy = np.array([p.sy for p in poses])
    if dth.max() > 0.3:
        return "rolling"
    if sy.mean() < 0.75:
        return "crawling"
    if dx.max() == 0 and np.abs(dy).max() == 0 and dth.max() == 0:
        return "none"
    if dx.max() == 0:
        return "eating"
    if dx.mean() > 2.0:
        return "running"
    if dx.mean() > 0.5 and np.abs(dy).mean() > 0.5:
        return "flying"
    if np.abs(dy).mean() > 1.4:
        return "jumping"
    if (dy < -0.7).all():
        return "climbing"
    if 0.7 < dx.mean() < 1.4 and np.abs(dy).mean() < 0.5:
        return "walking"
    return "unknown"


@pytest.mark.parametrize("height,width", [(48, 64), (96, 128)])
def test_every_action_is_recognisable_within_five_frames(height, width):
    rng = np.random.default_rng(0)
    u = height / 96
    for action in ACTION_CLASSES:
        classes = [c for c, acts in VALID_ACTIONS.items() if action in acts]
        for k in range(60):
            size = ("small", "large")[k % 2]
            scale = rng.uniform(*SIZE_RANGES[size]) * height
            poses = simulate_motion(
                rng, classes[k % len(classes)], action, scale, 32, height, width
            )
            t0 = int(rng.integers(0, 32 - 5))
            assert _window_action(poses[t0 : t0 + 5], u) == action, (
                action,
                classes[k % len(classes)],
                t0,
            )


def test_actors_stay_in_the_frame_and_climbing_goes_up():
    rng = np.random.default_rng(1)
    cfg = SceneConfig()
    for _ in range(10):
        video = sample_a2d_video(rng, cfg)
        for inst in video.instances:
            assert any(b is not None for b in inst["boxes"])
            if inst["action"] == "climbing":
                ys = [b[1] for b in inst["boxes"] if b is not None]
                assert ys[-1] < ys[0]


# ------------------------------------------------------------------------------------ command line
def _load_script(name):
    return load_script(f"datasets/{name}.py")


def test_prepare_script_writes_prints_and_refuses(tmp_path, capsys):
    script = _load_script("prepare_synthetic")
    out = tmp_path / "synthetic"
    argv = [
        "--size",
        "tiny",
        "--seed",
        "2",
        "--output",
        str(out),
        "--no-progress",
        "--workers",
        "1",
    ]
    assert script.main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "query types: needs_action" in captured.out
    # a tiny tree is too small for the bounds to be meaningful: a miss is only a warning
    assert "bounds met" in captured.out or "warning: the fraction" in captured.err
    assert os.path.isfile(out / "a2d_sentences" / "Release" / "videoset.csv")
    assert script.main(argv) == 0
    assert "kept" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        script.main(["--size", "huge"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("x")
    assert (
        script.main(["--size", "tiny", "--output", str(tmp_path / "foreign"), "--no-progress"]) == 2
    )
    assert "not written by this generator" in capsys.readouterr().err


def test_draw_script_writes_a_small_png(tiny, tmp_path):
    out, _, _ = tiny
    png = tmp_path / "samples.png"
    assert (
        _load_script("draw_synthetic_samples").main(
            [
                "--root",
                os.path.join(out, "a2d_sentences"),
                "--output",
                str(png),
                "--num",
                "2",
                "--frames",
                "3",
            ]
        )
        == 0
    )
    from PIL import Image

    img = Image.open(png)
    assert img.size[0] > 3 * SIZES["tiny"].width and png.stat().st_size < 300 * 1024
