"""What a user can give by mistake from the command line, and what the project does with it
(docs/reliability.md, rows 63 on): configs that would run code, release ids that would lead a
writer outside its folder, a smoke run beside the default benchmark, outputs that would overwrite
their inputs or look complete when they are not, links and other runs in OUTPUT_DIR, values that
must name their key.  Each case ends in an error naming the thing, or in a correct result."""

import json
import logging
import math
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from detectron2.structures import Boxes, pairwise_iou

from aamn.config import ConfigError, check_device, get_aamn_cfg
from aamn.data.flow import write_video_flow
from aamn.data.proposals import load_proposals, proposal_id, save_proposals
from aamn.engine import VideoPredictor
from aamn.engine.predictor import QueryError
from aamn.engine.trainer import check_resume_solver, claim_output_dir, setup_cfg, solver_record
from aamn.modeling.checkpoint import CheckpointFileError, StreamCheckpointer
from aamn.utils.io import atomic_path, check_plain_name

from fixtures import load_script, real_video_path, write_a2d_tree, write_jhmdb_tree
from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import (  # noqa: F401
    N_FRAMES,
    _cfg,
    _demo,
    _square_frames,
    _write_mp4,
    checkpoints,
    video,
)
from training_helpers import REPO, ok, tiny_synthetic, train_net


@contextmanager
def file_size_limit(nbytes):
    """Writes beyond ``nbytes`` in this process fail with EFBIG (a disk that is full)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


# ---------------------------------------------------------------------- configs
EVIL = "MODEL:\n  DEVICE: !!python/object/apply:os.system ['touch {marker}']\n"


def test_a_config_that_would_run_code_is_refused_naming_file_and_tag(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL.format(marker=marker))
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: evil.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    for path in (evil, child):  # directly, and reached through another config's _BASE_
        with pytest.raises(ConfigError, match=r"evil\.yaml: refused the YAML tag.*os\.system"):
            get_aamn_cfg(str(path))
    assert not marker.exists()
    # as a user runs it: train_net stops with the message, nothing runs
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", str(child)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "refused the YAML tag" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()


def test_base_configs_that_point_at_each_other_name_the_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        get_aamn_cfg(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize(
    "key,value",
    [
        ("INPUT.MIN_SIZE_TEST", "-96"),
        ("INPUT.FLOW.BOUND", "0"),
        ("INPUT.FLOW.BOUND", "-20"),
        ("INPUT.FLOW.METHOD", "foo"),
        ("SOLVER.MAX_ITER", "0"),
        ("MODEL.DEVICE", "gpu"),
    ],
)
def test_config_values_no_run_can_use_name_their_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        get_aamn_cfg(opts=[key, value])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_silent_cpu_run(tmp_path, checkpoints, video):
    cfg = get_aamn_cfg(opts=["MODEL.DEVICE", "cuda"])
    with pytest.raises(ConfigError, match=r"MODEL\.DEVICE is 'cuda' but CUDA is not available"):
        check_device(cfg)
    args = SimpleNamespace(
        config_file="", opts=["MODEL.DEVICE", "cuda", "OUTPUT_DIR", str(tmp_path / "out")],
        resume=False, eval_only=False,
    )  # fmt: skip
    with pytest.raises(SystemExit, match=r"MODEL\.DEVICE"):
        setup_cfg(args)
    assert not (tmp_path / "out").exists()  # stopped before anything was written
    with pytest.raises(ConfigError, match=r"MODEL\.DEVICE"):
        VideoPredictor(_cfg(checkpoints, "CMDy", "MODEL.DEVICE", "cuda"))


# ---------------------------------------------------------------------- release ids
def test_release_ids_must_be_plain_names(tmp_path):
    for bad in ("../../victim", "a/b", "..", ".", "", "x\x00y", "a\\b"):
        with pytest.raises(ValueError, match="not a plain name"):
            check_plain_name(bad, "video id", "videoset.csv")
    assert check_plain_name("-0tDNYbsKjQ", "video id", "f") == "-0tDNYbsKjQ"
    # prepare_flow on a tree whose videoset.csv names a folder outside it: refused, nothing
    # outside is touched
    root = tmp_path / "tree" / "a2d"
    write_a2d_tree(str(root))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    videoset = root / "Release" / "videoset.csv"
    videoset.write_text(videoset.read_text() + "../../../victim,11,0,1,48,64,6,1,0\n")
    pf = load_script("datasets/prepare_flow.py", register=True)
    with pytest.raises(SystemExit, match=r"videoset\.csv: the video id of line 5 '\.\./\.\./\.\./"):
        pf.main(["--dataset-root", str(root), "--overwrite"])
    assert os.listdir(victim) == ["keep.txt"] and (victim / "keep.txt").read_text() == "mine"
    assert not (root / "flow").exists()
    # the annotation and missed-video lists, and J-HMDB's annotation file, are checked alike
    from aamn.data.datasets.register_a2d_sentences import read_a2d_annotations, read_missed_videos

    ann = tmp_path / "ann.txt"
    ann.write_text("video_id,instance_id,query\n../x,1,a man\n")
    with pytest.raises(ValueError, match=r"ann\.txt: the video id of line 2 '\.\./x'"):
        read_a2d_annotations(str(ann))
    missed = tmp_path / "missed.txt"
    missed.write_text("vidA\nsub/vid\n")
    with pytest.raises(ValueError, match=r"missed\.txt: the video id of line 2 'sub/vid'"):
        read_missed_videos(str(missed))
    jroot = tmp_path / "jhmdb"
    write_jhmdb_tree(str(jroot))
    with open(jroot / "jhmdb_annotation.txt", "a") as f:
        f.write("../walker_1,a man walking\n")
    from aamn.data import load_jhmdb_sentences

    with pytest.raises(ValueError, match=r"jhmdb_annotation\.txt: the video id .*'\.\./walker_1'"):
        load_jhmdb_sentences(str(jroot))


def test_the_flow_writer_never_writes_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    flow_root = tmp_path / "tree" / "flow"
    flow_root.mkdir(parents=True)
    os.symlink(outside, flow_root / "vid")
    with pytest.raises(ValueError, match=r"flow/vid is a symbolic link"):
        write_video_flow(str(flow_root / "vid"), np.zeros((2, 4, 4, 2), np.float32), bound=20)
    assert os.listdir(outside) == ["keep.txt"]
    assert os.path.islink(flow_root / "vid")


# ---------------------------------------------------------------------- benchmark trees
def test_each_benchmark_size_has_its_own_tree(monkeypatch, tmp_path):
    from aamn.data.synthetic import synthetic_tree_name
    from aamn.utils.io import synthetic_root

    assert synthetic_tree_name("default") == "synthetic"
    assert synthetic_tree_name("tiny") == "synthetic_tiny"
    script = load_script("datasets/prepare_synthetic.py")
    monkeypatch.setenv("AAMN_DATASETS", str(tmp_path))
    monkeypatch.delenv("AAMN_SYNTHETIC", raising=False)
    assert script.default_output("tiny") == str(tmp_path / "synthetic_tiny")
    assert script.default_output() == str(tmp_path / "synthetic")
    assert synthetic_root() == str(tmp_path / "synthetic")
    monkeypatch.setenv("AAMN_SYNTHETIC", str(tmp_path / "synthetic_tiny"))
    assert synthetic_root() == str(tmp_path / "synthetic_tiny")  # what the names then read


# ---------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-iteration run on the tiny benchmark (seed 0)."""
    datasets = tiny_synthetic(tmp_path_factory)
    out = tmp_path_factory.mktemp("run")
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1"))
    return datasets, out


@pytest.mark.slow
def test_evaluation_on_another_benchmark_than_the_models_is_refused(trained, tmp_path):
    from aamn.data.synthetic import generate

    datasets, out = trained
    weights = ["MODEL.WEIGHTS", str(out / "model_final.pth")]
    ok(train_net(datasets, tmp_path / "eval", *weights, args=["--eval-only"]))
    other = tmp_path / "other"
    generate(str(other / "synthetic"), "tiny", seed=1, workers=1)
    proc = train_net(str(other), tmp_path / "eval2", *weights, args=["--eval-only"])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        "size tiny and seed 1" in proc.stderr and "trained on size tiny and seed 0" in proc.stderr
    )
    assert "AAMN_SYNTHETIC=" in proc.stderr


def test_a_draw_named_by_its_seed_is_evaluated_and_a_wrong_tree_under_its_name_is_not(
    monkeypatch,
):
    """A model trained on the benchmark (seed 0) may be evaluated on the draw
    ``synthetic_seed1_*`` (its name says which benchmark it is); under that name a tree of another
    seed is refused, and a plain name's tree of another seed still is."""
    from aamn.data.datasets import provenance

    trees = {"synthetic_seed1_jhmdb_test": 1, "synthetic_jhmdb_test": 1}
    monkeypatch.setattr(provenance, "dataset_identity", lambda name: {
        "size": "default", "seed": trees[name], "tree": f"/data/{name}"})  # fmt: skip
    trained_on = {"synthetic_a2d_train": {"benchmark": "synthetic", "size": "default",
                                          "seed": 0, "tree": "/data/synthetic"}}  # fmt: skip
    provenance.check_evaluation_data(trained_on, ["synthetic_seed1_jhmdb_test"], "m.pth")
    with pytest.raises(provenance.DatasetMismatchError, match="trained on size default and seed 0"):
        provenance.check_evaluation_data(trained_on, ["synthetic_jhmdb_test"], "m.pth")
    trees["synthetic_seed1_jhmdb_test"] = 2
    with pytest.raises(provenance.DatasetMismatchError, match="prepare_synthetic.py --seed 1"):
        provenance.check_evaluation_data(trained_on, ["synthetic_seed1_jhmdb_test"], "m.pth")


@pytest.mark.slow
def test_resume_with_another_learning_rate_is_refused_before_anything_is_written(trained):
    datasets, out = trained
    config = (out / "config.yaml").read_text()
    proc = train_net(datasets, out, "SOLVER.MAX_ITER", "3", "SOLVER.BASE_LR", "0.5",
                     args=["--resume"])  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "SOLVER.BASE_LR" in proc.stderr and "-> 0.5" in proc.stderr
    assert (out / "config.yaml").read_text() == config  # the resumed run's config is kept


@pytest.mark.slow
def test_a_training_whose_disk_fills_stops_with_one_message(trained, tmp_path):
    datasets, _ = trained
    out = tmp_path / "full"
    # files of at most 300 kB: the log fits, a checkpoint of the tiny model (about 540 kB) not
    launcher = ["prlimit", "--fsize=300000", sys.executable]
    proc = train_net(datasets, out, "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1",
                     launcher=launcher)  # fmt: skip
    assert proc.returncode != 0
    assert "error: Cannot write the checkpoint" in proc.stderr and "disk full" in proc.stderr
    assert "--- Logging error ---" not in proc.stderr
    assert not list(out.glob("*.pth")) and not list(out.glob(".*.tmp-*"))


def test_solver_changes_a_resume_would_ignore_are_named():
    cfg = get_aamn_cfg(opts=["SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", "0.001"])
    resumed = ("model_0000009.pth", {"solver": solver_record(cfg)})
    check_resume_solver(cfg, resumed)  # the same settings: resumes
    check_resume_solver(cfg, ("old.pth", {}))  # a checkpoint that records none: resumes
    changed = get_aamn_cfg(opts=["SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.001"])
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER 'AdamW' -> 'SGD'"):
        check_resume_solver(changed, resumed)
    longer = get_aamn_cfg(opts=["SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", "0.001",
                                "SOLVER.MAX_ITER", "99999"])  # fmt: skip
    check_resume_solver(longer, resumed)  # a longer schedule applies as configured


def test_output_dir_links_files_and_second_runs_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    os.symlink(victim, out / "log.txt")
    with pytest.raises(ConfigError, match=r"symbolic links \(log\.txt\)"):
        claim_output_dir(str(out))
    os.remove(out / "log.txt")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"OUTPUT_DIR .*file is a file"):
        claim_output_dir(str(tmp_path / "file"))
    opts = ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(out)]
    args = SimpleNamespace(config_file="", opts=opts, resume=False)
    os.symlink(victim, out / "metrics.json")
    with pytest.raises(SystemExit, match=r"symbolic links \(metrics\.json\)"):
        setup_cfg(args)  # train_net's set-up, before detectron2 writes anything
    os.remove(out / "metrics.json")
    assert os.listdir(out) == []
    claim_output_dir(str(out))  # this process runs in it now
    claim_output_dir(str(out))  # again from the same process: fine
    code = "from aamn.engine.trainer import claim_output_dir as c; c(%r)" % str(out)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"in use by another run (process {os.getpid()})" in proc.stderr
    assert victim.read_text() == "mine"


def test_empty_data_sets_name_themselves(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from aamn.engine import Trainer

    DatasetCatalog.register("empty_rvos_split", lambda: [])
    MetadataCatalog.get("empty_rvos_split").set(evaluator_type="rvos")
    try:
        cfg = get_aamn_cfg(opts=["DATASETS.TEST", "('empty_rvos_split',)"])
        with pytest.raises(ConfigError, match="DATASETS.TEST names empty_rvos_split, which has no"):
            Trainer.test(cfg, torch.nn.Linear(1, 1))
        cfg = get_aamn_cfg(opts=["DATASETS.TRAIN", "('empty_rvos_split',)"])
        with pytest.raises(ConfigError, match="DATASETS.TRAIN names empty_rvos_split"):
            Trainer.build_train_loader(cfg)
    finally:
        DatasetCatalog.remove("empty_rvos_split")
        MetadataCatalog.remove("empty_rvos_split")


def _small_model():
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))


def test_a_checkpoint_on_a_full_disk_is_an_error_and_replaces_nothing(tmp_path):
    checkpointer = StreamCheckpointer(_small_model(), str(tmp_path))
    checkpointer.save("model_0000001")
    before = (tmp_path / "model_0000001.pth").read_bytes()
    with file_size_limit(4096):
        with pytest.raises(CheckpointFileError, match=r"model_0000002\.pth.*disk"):
            checkpointer.save("model_0000002")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_keep_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "a.json") as tmp, open(tmp, "w") as f:
            f.write("{}")
        plain = tmp_path / "b.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o666 & ~umask


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    import socket

    host = socket.gethostname().replace("-", "_")
    dead = tmp_path / f".out.mp4.tmp-{host}-99999999-0000abcd.mp4"  # a SIGKILLed demo's
    live = tmp_path / f".out.mp4.tmp-{host}-{os.getpid()}-0000abcd.mp4"
    for p in (dead, live):
        p.write_bytes(b"partial")
    with atomic_path(tmp_path / "out.mp4", suffix=".mp4") as tmp, open(tmp, "wb") as f:
        f.write(b"whole")
    assert not dead.exists() and live.exists() and (tmp_path / "out.mp4").read_bytes() == b"whole"
    # every writer's temporary (a file, the demo's PNG folder, infer.py's masks) is named alike: a
    # second writer of the same target keeps the first one's while it runs
    from aamn.utils.io import temporary_path

    first = temporary_path(str(tmp_path), ".frames.tmp-")
    os.makedirs(first)
    second = temporary_path(str(tmp_path), ".frames.tmp-")
    assert os.path.isdir(first) and second != first


# ---------------------------------------------------------------------- queries
def test_long_queries_warn_and_known_words_beyond_the_limit_are_named(checkpoints, caplog):
    predictor = VideoPredictor(_cfg(checkpoints, "CMDy", "INPUT.QUERY_MAX_LENGTH", "4"))
    with caplog.at_level(logging.WARNING, logger="aamn.engine.predictor"):
        (x,) = predictor.query_inputs(["a man is running to the left"])
    assert x["query_tokens"] == ["a", "man", "is", "running"]
    assert "reads the first 4 (INPUT.QUERY_MAX_LENGTH)" in caplog.text
    assert "'to the left'" in caplog.text
    with pytest.raises(QueryError, match=r"first 4 tokens.*\['man'\] lie beyond"):
        predictor.query_inputs(["zebra zebra zebra zebra man"])
    with pytest.raises(QueryError, match="nothing to ground"):
        predictor.query_inputs(["zebra zebra zebra zebra zebra"])


# ---------------------------------------------------------------------- proposals
def test_proposal_files_with_inverted_or_far_boxes_name_the_frame(tmp_path, checkpoints, video):
    path, _ = video
    pfile = str(tmp_path / "inverted.pkl")
    save_proposals(pfile, ["v/00001"], [np.array([[10, 10, 5, 20]], np.float32)], [[1.0]])
    with pytest.raises(ValueError, match=r"inverted\.pkl: the proposals of 'v/00001' hold 1 inv"):
        load_proposals(pfile)
    far = str(tmp_path / "far.pkl")
    ids = [proposal_id("squares", t + 1) for t in range(N_FRAMES)]
    boxes = [np.array([[4, 10, 18, 26]], np.float32)] * N_FRAMES
    boxes[5] = np.array([[1e9, 1e9, 2e9, 2e9]], np.float32)
    save_proposals(far, ids, boxes, [[1.0]] * N_FRAMES)
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), proposal_file=far)
    with pytest.raises(ValueError, match=r"far\.pkl, frame squares/00006: the box .* far outside"):
        predictor.predict(path, ["a man"])


def test_prepare_proposals_refuses_zero_boxes_or_batches(tmp_path, capsys):
    script = load_script("datasets/prepare_proposals.py")
    base = ["--config-file", "configs/synthetic/detector.yaml", "--dataset", "synthetic_a2d_test"]
    for flag in ("--topk", "--batch-size"):
        with pytest.raises(SystemExit) as e:
            script.main(base + [flag, "0", "--output-dir", str(tmp_path)])
        assert e.value.code == 2 and f"{flag}: must be at least 1, got 0" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- tools/demo.py
def _demo_args(checkpoints, name, video_path, out, *extra):
    cfg_path, weights = checkpoints[name]
    argv = ["--config-file", cfg_path, "--video", str(video_path), "--output", str(out)]
    return argv + ["--query", "a man is running", "--quiet", *extra, "MODEL.WEIGHTS", weights]


def _demo_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        _demo(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_the_demo_never_overwrites_its_input(checkpoints, tmp_path, capsys):
    frames = _square_frames()
    source = _write_mp4(tmp_path / "in.mp4", frames)
    before = open(source, "rb").read()
    err = _demo_error(capsys, _demo_args(checkpoints, "CMDy", source, source))
    assert "--output" in err and "is the input video" in err
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames[:4]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[..., ::-1])
    pngs = {p.name: p.read_bytes() for p in folder.iterdir()}
    argv = _demo_args(checkpoints, "CMDy", folder, tmp_path / "o.mp4", "--png-dir", str(folder))
    assert "is the input folder of frames" in _demo_error(capsys, argv)
    assert open(source, "rb").read() == before
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == pngs
    assert not (tmp_path / "o.mp4").exists()


def test_the_demo_checks_every_output_before_the_first_frame(checkpoints, tmp_path, capsys):
    source = _write_mp4(tmp_path / "in.mp4", _square_frames())
    folder = tmp_path / "a_folder"
    folder.mkdir()
    cases = [
        ((folder,), "--output", "is a folder"),
        ((tmp_path / "o.mp4", "--json", str(folder)), "--json", "is a folder"),
        (("/proc/self/o.mp4",), "--output", "cannot write into /proc/self"),
        ((tmp_path / "o.mp4", "--json", "/proc/self/o.json"), "--json", "cannot write into"),
        ((tmp_path / "o.mp4", "--png-dir", "/proc/self/frames"), "--png-dir", "cannot write"),
    ]
    for (out, *extra), flag, message in cases:
        err = _demo_error(capsys, _demo_args(checkpoints, "CMDy", source, out, *extra))
        assert flag in err and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["a_folder", "in.mp4"] and not os.listdir(folder)
    for fps in ("0", "-5", "nan"):
        argv = _demo_args(checkpoints, "CMDy", source, tmp_path / "o.mp4", "--fps", fps)
        assert "--fps must be a positive number" in _demo_error(capsys, argv)


def test_a_demo_that_cannot_write_a_frame_fails_and_leaves_no_partial_output(
    checkpoints, tmp_path, capsys, monkeypatch
):
    source = _write_mp4(tmp_path / "in.mp4", _square_frames())
    out, pngs = tmp_path / "out" / "o.mp4", tmp_path / "out" / "frames"
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import demo

    sys.path.pop(0)
    calls = []
    real = cv2.imwrite

    def imwrite(name, image):  # the 5th frame cannot be written (a disk that filled up)
        calls.append(name)
        return len(calls) != 5 and real(name, image)

    monkeypatch.setattr(demo.cv2, "imwrite", imwrite)
    argv = _demo_args(checkpoints, "CMDy", source, out, "--png-dir", str(pngs), "--json")
    argv.insert(argv.index("--json") + 1, str(tmp_path / "out" / "o.json"))
    err = _demo_error(capsys, argv)
    assert "--png-dir: cannot write" in err and "00005.png" in err
    assert sorted(os.listdir(tmp_path / "out")) == ["frames"] and os.listdir(pngs) == []


@pytest.mark.parametrize("writer", ["h264", "mp4v"])
def test_a_full_disk_never_leaves_a_truncated_video(
    checkpoints, tmp_path, capsys, monkeypatch, writer
):
    import av

    if writer == "mp4v":  # OpenCV's writer reports no write error: the written file is checked
        monkeypatch.setattr(av.codec, "Codec", lambda *a: (_ for _ in ()).throw(ValueError("no")))
    source = _write_mp4(tmp_path / "in.mp4", _square_frames())
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "o.mp4"
    with file_size_limit(3000):
        err = _demo_error(capsys, _demo_args(checkpoints, "CMDy", source, out))
    assert str(out) in err and "disk full" in err
    expected = "Cannot write the video" if writer == "h264" else "was not written whole"
    assert expected in err
    assert os.listdir(tmp_path / "out") == []


def test_sigterm_leaves_no_temporary_video(checkpoints, tmp_path):
    out = tmp_path / "o.mp4"
    argv = _demo_args(checkpoints, "CMDy", real_video_path(), out)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", "demo.py"), *argv],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.time()
    while not [n for n in os.listdir(tmp_path) if n.startswith(".o.mp4.tmp-")]:
        assert proc.poll() is None and time.time() - start < 120, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_tiny_and_damaged_videos_end_in_a_message(checkpoints, tmp_path, capsys):
    tiny = _write_mp4(tmp_path / "tiny.mp4", np.full((4, 2, 2, 3), 128, np.uint8))
    err = _demo_error(capsys, _demo_args(checkpoints, "CMDy", tiny, tmp_path / "o.mp4"))
    assert "tiny.mp4 is 2x2 (HxW); frames of at least 16x16" in err
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_square_frames(8)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[..., ::-1])
    (folder / "005.png").write_bytes(b"\x89PNG damaged")
    pngs = tmp_path / "drawn"
    argv = _demo_args(checkpoints, "CMDy", folder, tmp_path / "o.mp4", "--png-dir", str(pngs))
    err = _demo_error(capsys, argv)
    assert "005.png" in err and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists() and (not pngs.exists() or os.listdir(pngs) == [])
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_wrong_detector_weights_are_a_message(checkpoints, tmp_path, capsys):
    source = _write_mp4(tmp_path / "in.mp4", _square_frames())
    det_cfg, _ = checkpoints["detector"]
    _, cmdy_weights = checkpoints["CMDy"]
    argv = _demo_args(checkpoints, "AAMN", source, tmp_path / "o.mp4")
    argv[:0] = ["--detector-config", det_cfg, "--detector-weights", cmdy_weights]
    err = _demo_error(capsys, argv)
    assert "does not fit the model" in err and cmdy_weights in err
    assert os.listdir(tmp_path) == ["in.mp4"]


# ---------------------------------------------------------------------- tests a mutation run found
def test_the_safe_unpickler_admits_only_the_listed_names_of_a_module(tmp_path):
    from aamn.utils.safe_pickle import UnsafePickleError, safe_load

    marker = tmp_path / "ran"

    class Call:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    import builtins
    import collections

    payloads = {
        "builtins.eval": Call(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.exec": Call(builtins.exec, f"open({str(marker)!r}, 'w')"),
        "collections.namedtuple": Call(collections.namedtuple, "P", "x"),
        "numpy.load": Call(np.load, str(tmp_path / "x.npy")),
    }
    for name, payload in payloads.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps({"model": payload}))
        with pytest.raises(UnsafePickleError, match=name.replace(".", r"\.")):
            safe_load(path)
    assert not marker.exists()


def test_a_vocabulary_of_the_same_size_but_other_words_is_refused(tmp_path):
    from aamn.modeling.checkpoint import VocabularyMismatchError
    from aamn.modeling.vocabulary import VOCABULARY_KEY

    from modeling_helpers import tiny_cfg

    words = ["<pad>", "<unk>", "man", "dog", "running", "left"]
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(words))
    from detectron2.modeling import build_model

    model = build_model(tiny_cfg(str(path)))
    StreamCheckpointer(model, str(tmp_path)).save("model")
    data = torch.load(tmp_path / "model.pth", weights_only=True)
    assert data[VOCABULARY_KEY] == words
    data[VOCABULARY_KEY] = ["<pad>", "<unk>", "dog", "man", "running", "left"]  # same size
    torch.save(data, tmp_path / "swapped.pth")
    with pytest.raises(VocabularyMismatchError, match="first difference at id 2"):
        StreamCheckpointer(model).load(str(tmp_path / "swapped.pth"))


def test_linking_compares_the_previous_box_with_each_tubes_first_box(vocab_file):  # noqa: F811
    """Tubes that stay in the left half of the frame and jump to the right half in the clip's
    last frame: the previous clip's box (tube j's first box) matches the tubes' first boxes, and
    none of their last boxes."""
    from test_aamn_meta_arch import _batch, _model

    model = _model(vocab_file).eval()
    x = _batch(1, height=96, width=128)[0]
    T, K = x["proposal_boxes"].shape[:2]
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(K, 2, generator=g) * torch.tensor([30.0, 50.0])
    wh = 10 + torch.rand(K, 2, generator=g) * 20
    left = torch.cat([xy, xy + wh], dim=1)
    right = left + torch.tensor([64.0, 0.0, 64.0, 0.0])
    x["proposal_boxes"] = torch.cat([left[None].expand(T - 1, K, 4), right[None]])
    free = model([x])[0]
    k_free = int(free["tube_index"])
    first = free["all_tube_boxes"][:, 0]  # (K, 4) each tube's box in the clip's first frame
    iou_free = pairwise_iou(Boxes(first), Boxes(first[k_free][None]))[:, 0]
    j = int(iou_free.argmin())  # the tube starting furthest from the freely selected one
    assert float(iou_free[j]) < 0.5
    prev = first[j]
    assert float(prev[0]) < 64 and all(float(b[0]) >= 64 for b in free["all_tube_boxes"][:, -1])
    model.link_weight = 100.0  # the overlap with the first box decides
    iou = pairwise_iou(Boxes(first), Boxes(prev[None]))[:, 0]
    expected = int((free["tube_scores"].sigmoid() + 100.0 * iou).argmax())
    assert iou[expected] > 0.99 and expected != k_free
    assert int(model([{**x, "previous_box": prev}])[0]["tube_index"]) == expected


def test_the_mask_heads_fusion_is_1x1_and_its_deconvolution_is_followed_by_relu():
    from aamn.modeling.mask_head import AAMNMaskHead

    torch.manual_seed(0)
    head = AAMNMaskHead(in_channels=4, conv_dim=8, num_conv=0, use_flow=True).eval()
    rgb, flow = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    seen = []
    head.predictor.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    with torch.no_grad():
        base = head(rgb, flow)
        moved = rgb.clone()
        moved[0, :, 2, 3] += 5.0  # one cell of the RoI map
        out = head(moved, flow)
    changed = (out - base).abs()[0] > 1e-7  # (12, 12)
    # 1x1 fusion, 2x2 deconvolution of stride 2, 1x1 predictor: only that cell's 2x2 block moves
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[4:6, 6:8] = True
    assert changed[expected].any() and not changed[~expected].any()
    # the predictor sees the deconvolution's output through a ReLU
    assert all(float(t.min()) >= 0 for t in seen)
    assert all(float((t == 0).float().mean()) > 0.1 for t in seen)


def _average_buffers_rank(rank, init_file, out_dir):
    import torch.distributed as dist

    from aamn.engine.trainer import buffer_averaging_hook

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = torch.nn.BatchNorm1d(3)
    model.running_mean.fill_(float(rank + 1))  # rank 0: 1, rank 1: 2
    model.running_var.fill_(float(4 * rank + 1))
    hook = buffer_averaging_hook()
    hook.trainer = SimpleNamespace(model=model)
    hook.after_step()
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))
    dist.destroy_process_group()


def test_batchnorm_statistics_are_averaged_across_processes_after_each_step(tmp_path, monkeypatch):
    import torch.multiprocessing as mp
    from detectron2.engine import DefaultTrainer

    from aamn.engine import trainer as trainer_module

    mp.spawn(
        _average_buffers_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    states = [torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    for state in states:
        assert torch.equal(state["running_mean"], torch.full((3,), 1.5))
        assert torch.equal(state["running_var"], torch.full((3,), 3.0))
    # the trainer runs that hook first in a run of several processes, and not in a run of one
    monkeypatch.setattr(DefaultTrainer, "build_hooks", lambda self: ["detectron2's hooks"])
    trainer = trainer_module.Trainer.__new__(trainer_module.Trainer)
    assert trainer.build_hooks() == ["detectron2's hooks"]
    monkeypatch.setattr(trainer_module.comm, "get_world_size", lambda: 2)
    first, *rest = trainer.build_hooks()
    assert rest == ["detectron2's hooks"]
    model = torch.nn.BatchNorm1d(2)
    calls = []
    monkeypatch.setattr(trainer_module, "average_buffers", calls.append)
    first.trainer = SimpleNamespace(model=model)
    first.after_step()
    assert calls == [model]


# ---------------------------------------------------------------------- the demo, as detectron2's
def test_the_demo_takes_several_inputs_and_globs_and_loads_the_models_once(
    checkpoints, tmp_path, capsys, monkeypatch
):
    import aamn.engine.predictor as predictor_module

    videos = tmp_path / "videos"
    videos.mkdir()
    _write_mp4(videos / "a.mp4", _square_frames(5))
    _write_mp4(videos / "b.mp4", _square_frames(7))
    (videos / "c.mp4").write_bytes(b"not a video")  # fails; the others are kept
    built = []
    real_init = predictor_module.VideoPredictor.__init__

    def counting_init(self, *a, **k):
        built.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(predictor_module.VideoPredictor, "__init__", counting_init)
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "out"
    argv = ["--config-file", cfg_path, "--input", str(videos / "*.mp4"), "--output", str(out)]
    argv += ["--json", str(out), "--query", "a man", "--quiet", "--scale", "1"]
    argv += ["--opts", "MODEL.WEIGHTS", weights]
    assert _demo(argv) == 1  # c.mp4 failed
    err = capsys.readouterr().err
    assert "1 of 3 inputs failed" in err and "c.mp4" in err
    assert built == [1]
    assert sorted(os.listdir(out)) == ["a.json", "a.mp4", "b.json", "b.mp4"]
    for name, n in (("a", 5), ("b", 7)):
        cap = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == n and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 64
        assert len(json.loads((out / f"{name}.json").read_text())["frames"]) == n
    # --video is an alias of --input; a file --output for several inputs is an error
    argv = ["--config-file", cfg_path, "--video", str(videos / "a.mp4"), str(videos / "b.mp4")]
    argv += ["--output", str(tmp_path / "x.mp4"), "--query", "a man", "MODEL.WEIGHTS", weights]
    assert "names a file, but there are 2 inputs" in _demo_error(capsys, argv)
    argv = ["--config-file", cfg_path, "--input", str(videos / "*.avi"), "--output", str(out)]
    assert "matches no file" in _demo_error(capsys, argv + ["--query", "a man"])


def test_the_demo_webcam_without_a_camera_is_a_message(checkpoints, tmp_path, capsys):
    if os.path.exists("/dev/video0"):
        pytest.skip("this machine has a camera")
    cfg_path, weights = checkpoints["CMDy"]
    argv = ["--config-file", cfg_path, "--webcam", "--max-frames", "5", "--query", "a man"]
    argv += ["--output", str(tmp_path / "cam.mp4"), "MODEL.WEIGHTS", weights]
    assert "cannot open the camera 0" in _demo_error(capsys, argv)
    assert os.listdir(tmp_path) == []


def test_the_overlay_is_h264_and_drawn_at_a_readable_scale(checkpoints, tmp_path):
    from aamn.data.video import VideoWriter
    from aamn.utils.visualizer import display_scale

    assert display_scale(96, 128) == 4 and display_scale(144, 176) == 3
    assert display_scale(720, 1280) == 1
    source = _write_mp4(tmp_path / "in.mp4", _square_frames(6))
    for scale, size in (("auto", (512, 384)), ("1", (64, 48)), ("2.5", (160, 120))):
        out = tmp_path / f"o{scale}.mp4"
        assert _demo(_demo_args(checkpoints, "CMDy", source, out, "--scale", scale)) == 0
        cap = cv2.VideoCapture(str(out))
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == size
        assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"avc1", b"h264")
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    # odd sides: padded by one pixel for H.264's 4:2:0 sampling, every frame kept
    with VideoWriter(str(tmp_path / "odd.mp4"), 10.0, 63, 45) as writer:
        for _ in range(3):
            writer.write(np.zeros((45, 63, 3), np.uint8))
    cap = cv2.VideoCapture(str(tmp_path / "odd.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 46)
    assert writer.codec == "h264" and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3


def test_a_large_video_runs_at_the_models_size_and_answers_at_its_own(checkpoints):
    """Frames twice the model's size are resized once to it: the flow, the detector and the model
    see what they see on the small video, and masks and boxes come back at the large size."""
    from test_predictor import _detector

    small = _square_frames(7)  # 48 x 64: the model's test size
    large = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # 96 x 128
    for name in ("AAMN", "CMDy"):
        kwargs = {"detector": _detector(checkpoints)} if name == "AAMN" else {}
        predictor = VideoPredictor(_cfg(checkpoints, name), **kwargs)
        a = predictor.predict(small, ["a man is running"])
        b = predictor.predict(large, ["a man is running"])
        assert set(predictor.timings) >= {"decode", "resize", "model", "inputs"}
        for fa, fb in zip(a, b):
            ra, rb = fa["queries"][0], fb["queries"][0]
            assert rb["mask"].shape == (96, 128) and ra["mask"].shape == (48, 64)
            assert rb["score"] == pytest.approx(ra["score"], abs=1e-5)
            np.testing.assert_allclose(rb["box"], 2 * ra["box"], atol=0.05)
        full = VideoPredictor(_cfg(checkpoints, name, "TEST.VIDEO.RESIZE_FIRST", "False"), **kwargs)
        full.predict(large, ["a man is running"])
        assert "resize" not in full.timings  # flow and proposals at the video's resolution


def test_without_pyav_the_overlay_falls_back_to_mp4v(tmp_path, monkeypatch, caplog):
    import av

    from aamn.data.video import VideoWriter

    def no_encoder(name, mode):
        raise av.error.FFmpegError(0, f"no {name}")

    monkeypatch.setattr(av.codec, "Codec", no_encoder)
    with caplog.at_level(logging.WARNING, logger="aamn.data.video"):
        with VideoWriter(str(tmp_path / "o.mp4"), 10.0, 64, 48) as writer:
            for _ in range(4):
                writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.codec == "mp4v" and "writing mp4v" in caplog.text
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").lower() in (b"mp4v", b"fmp4")
