"""The synthetic benchmark in the Ref-YouTube-VOS and MeViS layouts (prepare_synthetic.py
--layout): the same videos, masks and queries as its A2D tree, read back through the real loaders;
MeViS's expressions about several actors refer to the actors doing that action; an output folder
the writer did not write is never replaced."""

import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest

from aamn.data.datasets.register_a2d_sentences import read_a2d_frame_h5
from aamn.data.datasets.register_ref_youtube_vos import load_mevis, load_ref_youtube_vos
from aamn.data.video import VideoReader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    env = dict(os.environ, AAMN_DATASETS=str(root), OMP_NUM_THREADS="1")
    for layout in ("ytvos", "mevis"):
        cmd = [sys.executable, os.path.join(REPO, "datasets", "prepare_synthetic.py"), "--size",
               "tiny", "--layout", layout, "--workers", "1", "--no-progress"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"synthetic_tiny_{layout}" in proc.stdout
    return root


def test_ytvos_layout_holds_the_a2d_trees_videos_masks_and_queries(written):
    a2d = written / "synthetic_tiny" / "a2d_sentences"
    meta = json.loads((a2d / "synthetic_meta.json").read_text())
    records = load_ref_youtube_vos(str(written / "synthetic_tiny_ytvos"), "valid")
    val = {v for v, m in meta["videos"].items() if m["split"] == "val" and not m["missed"]}
    assert {r["video_id"] for r in records} == val
    queries = {(q["video_id"], q["query"]) for q in meta["queries"] if q["video_id"] in val}
    assert {(r["video_id"], r["query"]) for r in records} == queries
    for r in records[:: max(1, len(records) // 10)]:
        t = r["frame_idx"]  # every frame listed: the A2D video's frame t
        h5 = read_a2d_frame_h5(
            str(a2d / "synthetic_full_annotations" / r["video_id"] / f"{t:05d}.h5")
        )
        want = h5["masks"][h5["instance_ids"].index(r["instance_id"] - 1)]
        got = [a for a in r["annotations"] if a["instance_id"] == r["instance_id"]][0]
        assert np.array_equal(mask_util.decode(got["segmentation"]).astype(bool), want)
        jpeg = VideoReader(r["file_name"]).read([t])[0].astype(int)
        mp4 = VideoReader(str(a2d / "Release" / "clips320H" / f"{r['video_id']}.mp4")).read([t])[0]
        assert np.abs(jpeg - mp4).mean() < 4  # JPEG quality 95 of the decoded frame
    categories = json.loads((written / "synthetic_tiny_ytvos" / "valid" / "meta.json").read_text())
    vid = records[0]["video_id"]
    obj = str(records[0]["instance_id"])
    assert categories["videos"][vid]["objects"][obj]["category"] == (
        meta["videos"][vid]["instances"][str(int(obj) - 1)]["category"])  # fmt: skip


def test_mevis_layout_has_expressions_about_several_actors(written):
    a2d = written / "synthetic_tiny" / "a2d_sentences"
    meta = json.loads((a2d / "synthetic_meta.json").read_text())
    records = load_mevis(str(written / "synthetic_tiny_mevis"), "train")
    several = [r for r in records if len(r["instance_ids"]) > 1]
    assert several
    for r in several:
        action = r["query"].rsplit(" ", 1)[1]
        instances = meta["videos"][r["video_id"]]["instances"]
        doing = sorted(int(i) for i, inst in instances.items() if inst["action"] == action)
        assert r["instance_ids"] == doing  # MeViS's object ids: the A2D tree's instance ids
    # every listed frame of every expression is a record (J&F)
    frames = {r["video_id"]: r["length"] for r in records}
    expressions = {(r["video_id"], r["exp_id"]) for r in records}
    assert len(records) == sum(frames[v] for v, _ in expressions)


def test_a_folder_the_writer_did_not_write_is_refused(written, tmp_path):
    from aamn.data.synthetic.rvos_layouts import write_rvos_layout

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="was not written by the synthetic layout writer"):
        write_rvos_layout(str(written / "synthetic_tiny" / "a2d_sentences"), str(foreign))
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = written / "synthetic_tiny_ytvos"
    with pytest.raises(ValueError, match="--overwrite"):  # the same folder, another step
        write_rvos_layout(str(written / "synthetic_tiny" / "a2d_sentences"), str(out),
                          frame_step=5)  # fmt: skip


def test_a_model_trains_and_is_evaluated_on_the_ytvos_layout(tmp_path_factory, tmp_path):
    """tools/train_net.py on synthetic_ytvos_train (the tiny benchmark in the Ref-YouTube-VOS
    layout), evaluated on synthetic_ytvos_valid (the papers' metrics and J&F) and on its every
    frame (J&F alone): the layout's records go through the same mapper, model and evaluators."""
    from training_helpers import ok, tiny_synthetic, train_net

    from aamn.data.synthetic.rvos_layouts import write_rvos_layout

    datasets = tiny_synthetic(tmp_path_factory)
    write_rvos_layout(os.path.join(datasets, "synthetic", "a2d_sentences"),
                      os.path.join(datasets, "synthetic_ytvos"))  # fmt: skip
    out = tmp_path / "run"
    opts = ["SOLVER.MAX_ITER", "2", "DATASETS.TRAIN", "('synthetic_ytvos_train',)"]
    opts += ["DATASETS.TEST", "('synthetic_ytvos_valid', 'synthetic_ytvos_valid_all_frames')"]
    ok(train_net(datasets, out, *opts, args=["--results-json", str(out / "r.json")]))
    res = json.loads((out / "r.json").read_text())
    present, every = res["synthetic_ytvos_valid"], res["synthetic_ytvos_valid_all_frames"]
    assert "P@0.5" in present["segm"] and set(present["jf"]) == {"J", "F", "J&F"}
    assert set(every) - {"speed"} == {"jf"} and 0.0 <= every["jf"]["J&F"] <= 100.0


def test_a_frame_without_the_referred_object_is_evaluated_but_never_trained_on():
    """The J&F protocol scores every frame of an expression: at inference the mapper gives a
    frame without the referred object (referred_idx -1); a training record without it is an
    error naming it."""
    from detectron2.data.transforms import TransformList

    from aamn.config import get_aamn_cfg
    from aamn.data.dataset_mappers.clip_mapper import ClipDatasetMapper
    from aamn.utils.masks import mask_to_rle

    cfg = get_aamn_cfg(os.path.join(REPO, "configs", "synthetic", "cmdy.yaml"))
    m = np.zeros((24, 32), bool)
    m[4:10, 5:12] = True
    record = {"image_id": "v_x_f_1_e_0", "instance_id": 2, "height": 24, "width": 32,
              "annotations": [{"instance_id": 1, "bbox": [5, 4, 12, 10], "bbox_mode": 0,
                               "segmentation": mask_to_rle(m), "category_id": 0}]}  # fmt: skip
    instances, referred = ClipDatasetMapper(cfg, is_train=False).build_targets(
        record, TransformList([]), (24, 32)
    )
    assert referred == -1 and len(instances) == 1
    with pytest.raises(ValueError, match="v_x_f_1_e_0: the referred instance 2"):
        ClipDatasetMapper(cfg, is_train=True).build_targets(record, TransformList([]), (24, 32))


def test_the_layout_jobs_steps_and_its_report(tmp_path):
    """tools/run_layout_job.py: without the main job's detector, an error naming make main; then
    the layout, the flow of its splits, the detector's proposals of train and valid, and each
    system trained on synthetic_ytvos_train and evaluated on valid (AAMN from the detector, on
    those proposals); what exists is skipped; the report reads P@0.5 and J&F beside it."""
    from aamn.engine import layout_job

    datasets, out = tmp_path / "datasets", tmp_path / "out"
    detector = tmp_path / "detector.pth"
    with pytest.raises(FileNotFoundError, match="make main"):
        layout_job.run_layout_job(str(datasets), str(out), str(detector))
    detector.write_bytes(b"")
    ran = []

    def run(cmd, env):
        ran.append(cmd)
        assert env["AAMN_DATASETS"] == str(datasets)
        step = [s for s in steps if s["command"] == cmd][0]
        for path in step["outputs"]:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if path.endswith("eval.json"):
                system = os.path.basename(os.path.dirname(path))
                p = {"AAMN": 80.0, "CMDy": 40.0, "DynamicFilterSeg": 20.0}[system]
                res = {"synthetic_ytvos_valid": {"segm": {"P@0.5": p, "mean_IoU": p - 10},
                                                 "jf": {"J&F": p - 5}},
                       "synthetic_ytvos_valid_all_frames": {"jf": {"J&F": p - 7}}}  # fmt: skip
                open(path, "w").write(json.dumps(res))
            else:
                open(path, "w").close()

    steps = layout_job.layout_job_commands(str(datasets), str(out), str(detector), "tiny", 1)
    results = layout_job.run_layout_job(str(datasets), str(out), str(detector), "tiny", 1, run)
    names = [s["name"] for s in steps]
    assert names == ["layout", "flow train", "flow valid", "flow test", "proposals", "AAMN",
                     "CMDy", "DynamicFilterSeg"]  # fmt: skip
    layout = ran[0]
    assert layout[layout.index("--output") + 1] == str(datasets / "synthetic_ytvos")
    proposals = ran[4]
    assert [proposals[i + 1] for i, a in enumerate(proposals) if a == "--dataset"] == [
        "synthetic_ytvos_train",
        "synthetic_ytvos_valid",
        "synthetic_ytvos_valid_all_frames",
    ]
    assert proposals[proposals.index("MODEL.WEIGHTS") + 1] == str(detector)
    aamn = ran[5]
    assert aamn[aamn.index("MODEL.WEIGHTS") + 1] == str(detector)
    assert aamn[aamn.index("DATASETS.TRAIN") + 1] == "('synthetic_ytvos_train',)"
    assert "synthetic_ytvos_valid_all_frames" in aamn[aamn.index("DATASETS.TEST") + 1]
    assert "train" in aamn[aamn.index("DATASETS.PROPOSAL_FILES_TRAIN") + 1]
    assert "DATASETS.PROPOSAL_FILES_TRAIN" not in ran[6]  # CMDy reads no proposals
    assert results["CMDy"] == {"P@0.5": 40.0, "mean_IoU": 30.0, "J&F": 35.0,
                               "J&F_all_frames": 33.0}  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == results
    ran.clear()
    layout_job.run_layout_job(str(datasets), str(out), str(detector), "tiny", 1, run)
    assert ran == []  # everything made: nothing runs again


def test_a_failed_layout_write_leaves_nothing(written, tmp_path):
    """A video that cannot be read stops the writer with its error, and neither the output nor
    its temporary folder is left behind."""
    import shutil

    from aamn.data.synthetic.rvos_layouts import write_rvos_layout

    a2d = tmp_path / "a2d_sentences"
    shutil.copytree(written / "synthetic_tiny" / "a2d_sentences", a2d)
    meta = json.loads((a2d / "synthetic_meta.json").read_text())
    train = sorted(
        v for v, m in meta["videos"].items() if m["split"] == "train" and not m["missed"]
    )
    for vid in train[1:]:  # the first video is written before the second fails
        (a2d / "Release" / "clips320H" / f"{vid}.mp4").write_bytes(b"not a video")
    with pytest.raises(IOError):
        write_rvos_layout(str(a2d), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a2d_sentences"]
