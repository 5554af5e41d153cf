"""The main job end to end on the tiny synthetic benchmark, with a few iterations per stage.

It runs the same runner as ``make main`` (``tools/run_main_job.py``): data -> flow -> detector ->
proposals -> AAMN -> evaluation -> drawings, then checks what each stage left behind and that a
second run finds every stage up to date.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the whole main job, end to end

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEW_ITERS = ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)", "SOLVER.WARMUP_ITERS", "0"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main_job")
    # A default-size tree beside it (its stand-in): the tiny run must leave it as it is.
    default_tree = root / "datasets" / "synthetic"
    default_tree.mkdir(parents=True)
    (default_tree / "synthetic_info.json").write_text('{"size": "default", "seed": 0}')
    cmd = [
        sys.executable,
        "tools/run_main_job.py",
        "--size",
        "tiny",
        "--datasets-dir",
        str(root / "datasets"),
        "--output-dir",
        str(root / "output"),
        "--workers",
        "1",
        "--detector-opts",
        " ".join(FEW_ITERS + ["SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "0"]),
        *FEW_ITERS,
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # Again with one more AAMN override: the AAMN stage and what follows are redone.
    third = subprocess.run(
        cmd + ["TEST.VIDEO.LINK_WEIGHT", "0.1"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    return root, first.stdout, second.stdout, third.stdout


def test_every_stage_leaves_its_output(tiny_run):
    root, *_ = tiny_run
    synth = root / "datasets" / "synthetic_tiny"  # each size in its own tree
    default_tree = root / "datasets" / "synthetic"
    assert os.listdir(default_tree) == ["synthetic_info.json"]
    assert json.loads((default_tree / "synthetic_info.json").read_text())["size"] == "default"
    assert (synth / "a2d_sentences" / "flow" / ".complete").exists()
    assert (synth / "jhmdb_sentences" / "flow" / ".complete").exists()
    assert (root / "output" / "detector" / "model_final.pth").exists()
    with open(synth / "a2d_sentences" / "proposals" / "synthetic_a2d_test.pkl", "rb") as f:
        props = pickle.load(f)
    assert len(props["ids"]) == len(props["boxes"]) > 0
    assert all(b.shape[1] == 4 for b in props["boxes"])
    # Each split's file holds the frames its 3-frame clips read, and only those.
    from detectron2.data import DatasetCatalog

    from aamn.data.datasets import register_a2d_sentences, register_jhmdb_sentences
    from aamn.data.proposals import load_proposals, proposal_id

    register_a2d_sentences("pipeline_train", str(synth / "a2d_sentences"), "train")
    register_a2d_sentences("pipeline_test", str(synth / "a2d_sentences"), "test")
    register_jhmdb_sentences("pipeline_jhmdb", str(synth / "jhmdb_sentences"))
    for name, tree, split in (
        ("pipeline_train", "a2d_sentences", "synthetic_a2d_train"),
        ("pipeline_test", "a2d_sentences", "synthetic_a2d_test"),
        ("pipeline_jhmdb", "jhmdb_sentences", "synthetic_jhmdb_test"),
    ):
        held = load_proposals(synth / tree / "proposals" / f"{split}.pkl")
        expected = {
            proposal_id(r["video_id"], t)
            for r in DatasetCatalog.get(name)
            for t in range(max(1, r["frame_idx"] - 1), min(r["length"], r["frame_idx"] + 1) + 1)
        }
        assert expected and set(held) == expected, split
    assert (synth / "a2d_sentences" / "proposals" / "synthetic_a2d_val.pkl").exists()
    # every stage's wall and CPU seconds, and the trainings' own compute (evaluation left out)
    compute = json.loads((root / "output" / "main_job_compute.json").read_text())
    assert list(compute) == ["data", "flow", "detector", "proposals", "aamn", "evaluate", "draw",
                             "demo"]  # fmt: skip
    for stage, record in compute.items():
        assert record["cpu_s"] > 0 and record["wall_s"] > 0, stage
        assert record["cpu_s"] == pytest.approx(
            sum(c["cpu_s"] for c in record["commands"]), abs=0.05
        )
    assert len(compute["flow"]["commands"]) == 2  # the A2D tree's, then the J-HMDB tree's
    detector = json.loads((root / "output" / "detector" / "compute.json").read_text())
    assert (
        detector["iterations"] == 3 and 0 < detector["train_cpu_s"] < compute["detector"]["cpu_s"]
    )
    aamn_dir = root / "output" / "aamn"
    assert (aamn_dir / "model_final.pth").exists() and (aamn_dir / "vocab.json").exists()
    for name in ("synthetic_a2d_test", "synthetic_jhmdb_test"):
        with open(aamn_dir / f"eval_{name}.json") as f:
            res = json.load(f)
        for key in ("P@0.5", "P@0.9", "mAP", "overall_IoU", "mean_IoU", "COCO_mAP"):
            assert 0.0 <= res["segm"][key] <= 100.0
        assert "P@0.5" in res["loc"] and res["speed"]["ms_per_clip_query"] > 0
    drawings = (aamn_dir / "visualizations" / "index.txt").read_text().splitlines()
    assert len(drawings) == 8
    for line in drawings:
        assert (aamn_dir / "visualizations" / line.split("\t")[0]).stat().st_size > 0
    tubes = (aamn_dir / "tubes" / "index.txt").read_text().splitlines()
    assert len(tubes) == 4 and all((aamn_dir / "tubes" / t.split("\t")[0]).exists() for t in tubes)
    for run in ("detector", "aamn"):
        assert (root / "output" / run / "training_curves.png").stat().st_size > 0
        assert list((root / "output" / run).glob("events.out.tfevents.*"))  # TensorBoard
    # The demo on the first test video: one output frame per input frame, same size and rate.
    import cv2

    (demo_json,) = (aamn_dir / "demo").glob("*.json")
    with open(demo_json) as f:
        demo = json.load(f)
    source, out = cv2.VideoCapture(demo["video"]), cv2.VideoCapture(str(demo_json)[:-5] + ".mp4")
    n = int(source.get(cv2.CAP_PROP_FRAME_COUNT))
    assert len(demo["frames"]) == n == int(out.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    from aamn.utils.visualizer import display_scale

    scale = display_scale(int(source.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(source.get(3)))
    assert scale > 1  # a small video is drawn larger, so that its captions can be read
    for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
        assert scale * source.get(prop) == out.get(prop)
    assert abs(source.get(cv2.CAP_PROP_FPS) - out.get(cv2.CAP_PROP_FPS)) < 0.01
    assert len(list((aamn_dir / "demo" / "frames").glob("*.png"))) == n


def test_second_run_skips_every_stage(tiny_run):
    _, first, second, _ = tiny_run
    for stage in ("flow", "detector", "proposals", "aamn", "evaluate", "draw", "demo"):
        assert f"stage {stage}: up to date, skipped" not in first
        assert f"stage {stage}: up to date, skipped" in second
    assert "aamn.cli.train_net" not in second


def test_rerun_with_other_overrides_redoes_what_they_change(tiny_run):
    *_, third = tiny_run
    for stage in ("flow", "detector", "proposals"):
        assert f"stage {stage}: up to date, skipped" in third
    assert "stage aamn: made with other commands or overrides, redone" in third
    for stage in ("aamn", "evaluate", "draw", "demo"):
        assert f"stage {stage}: up to date, skipped" not in third
    assert "TEST.VIDEO.LINK_WEIGHT 0.1" in third


def test_until_stops_after_the_named_stage(tmp_path):
    cmd = [sys.executable, "tools/run_main_job.py", "--size", "tiny", "--workers", "1"]
    cmd += ["--datasets-dir", str(tmp_path / "datasets"), "--output-dir", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd + ["--until", "flow"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    compute = json.loads((tmp_path / "out" / "main_job_compute.json").read_text())
    assert list(compute) == ["data", "flow"] and not (tmp_path / "out" / "detector").exists()
    assert (
        tmp_path / "datasets" / "synthetic_tiny" / "a2d_sentences" / "flow" / ".complete"
    ).exists()
