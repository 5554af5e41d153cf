"""The command-line tools held to the project's rules (docs/reliability.md, rows 104 on): every
error in one line unless a traceback is asked for, configs bounded before detectron2 reads them,
values and names no run can use refused with their key, inference that never writes into a
training folder, a webcam demo that keeps what it segmented when stopped with Ctrl-C."""

import json
import logging
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aamn.config import ConfigError, get_aamn_cfg
from aamn.utils.cli import run_tool

from fixtures import load_script
from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import REPO, _demo, _square_frames, _write_mp4, checkpoints  # noqa: F401


# ------------------------------------------------------------------------------ one error line
def test_every_tool_ends_an_error_in_one_line_unless_debugging(monkeypatch, capsys):
    def main(argv):
        if argv == ["ctrl-c"]:
            raise KeyboardInterrupt
        raise KeyError("data set 'x' is not registered")

    monkeypatch.delenv("AAMN_DEBUG", raising=False)
    assert run_tool(main, ["go"], prog="tool.py") == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "tool.py: error: data set 'x' is not registered  (--debug or AAMN_DEBUG=1 shows the "
        "traceback)"
    ]
    assert run_tool(main, ["ctrl-c"], prog="tool.py") == 130
    assert capsys.readouterr().err.strip() == "tool.py: interrupted"
    with pytest.raises(KeyError):
        run_tool(main, ["go", "--debug"])
    monkeypatch.setenv("AAMN_DEBUG", "1")
    with pytest.raises(KeyError):
        run_tool(main, ["go"])
    assert run_tool(lambda argv: None, []) == 0


def test_a_weights_url_that_cannot_be_fetched_ends_the_demo_in_one_line(checkpoints, tmp_path):
    """As a user runs it: a refused connection, no traceback."""
    source = _write_mp4(tmp_path / "in.mp4", _square_frames(4))
    cfg_path, _ = checkpoints["CMDy"]
    cmd = [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config-file", cfg_path]
    cmd += ["--input", source, "--query", "a man", "--output", str(tmp_path / "o.mp4")]
    cmd += ["MODEL.WEIGHTS", "http://127.0.0.1:9/nowhere/model.pth"]
    env = {k: v for k, v in os.environ.items() if k != "AAMN_DEBUG"}
    env["FVCORE_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert "http://127.0.0.1:9/nowhere/model.pth" in line and "place the file at" in line
    assert not (tmp_path / "o.mp4").exists()


# ---------------------------------------------------------------------------------- configs
def test_a_config_of_nested_aliases_is_refused_before_it_expands(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 600
    with pytest.raises(ConfigError, match=r"bomb\.yaml: its YAML aliases expand to \d+ values"):
        get_aamn_cfg(str(bomb))
    # an alias used a few times, as configs do, is read
    fine = tmp_path / "fine.yaml"
    fine.write_text("MODEL:\n  PIXEL_MEAN: &m [1.0, 2.0, 3.0]\n  PIXEL_STD: *m\n")
    assert list(get_aamn_cfg(str(fine)).MODEL.PIXEL_STD) == [1.0, 2.0, 3.0]


def test_a_config_larger_than_the_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2000 + "\nMODEL:\n  DEVICE: cpu\n")
    monkeypatch.setenv("AAMN_CONFIG_MAX_BYTES", "1000")
    with pytest.raises(ConfigError, match=r"big\.yaml: \d+ bytes; a config file may hold at most"):
        get_aamn_cfg(str(big))
    monkeypatch.setenv("AAMN_CONFIG_MAX_BYTES", "100000")
    assert get_aamn_cfg(str(big)).MODEL.DEVICE == "cpu"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("SOLVER.CHECKPOINT_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD must be a whole number"),
        ("TEST.VIDEO.LINK_WEIGHT", "-5.0", "TEST.VIDEO.LINK_WEIGHT must be a number of at least 0"),
    ],
)
def test_values_that_would_fail_late_or_silently_name_their_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_aamn_cfg(opts=[key, value])


def test_train_net_refuses_process_counts_and_batches_no_run_can_use(capsys):
    train_net = load_script("tools/train_net.py")
    cfg = os.path.join(REPO, "configs", "synthetic", "aamn.yaml")
    cases = [
        (["--num-gpus", "0"], "--num-gpus must be at least 1"),
        (["--num-machines", "2", "--machine-rank", "2"], "--machine-rank must be in [0, 2)"),
        (
            ["--num-gpus", "2", "SOLVER.IMS_PER_BATCH", "3"],
            "SOLVER.IMS_PER_BATCH 3 cannot be split",
        ),
    ]
    for extra, message in cases:
        args = train_net.argument_parser().parse_args(["--config-file", cfg] + extra)
        with pytest.raises(SystemExit) as e:
            train_net.check_launch(args)
        assert message in str(e.value)


def test_a_mistyped_data_set_name_is_named_with_the_closest_ones(tmp_path):
    from aamn.engine.trainer import setup_cfg

    args = SimpleNamespace(
        config_file=os.path.join(REPO, "configs", "synthetic", "aamn.yaml"),
        opts=["DATASETS.TRAIN", "('synthetic_a2d_trian',)", "OUTPUT_DIR", str(tmp_path / "o")],
        resume=False,
        eval_only=False,
    )
    with pytest.raises(SystemExit) as e:
        setup_cfg(args)
    message = str(e.value)
    assert "DATASETS.TRAIN names the data set 'synthetic_a2d_trian'" in message
    assert "did you mean 'synthetic_a2d_train'" in message and "coco_2017_train" not in message
    assert not (tmp_path / "o").exists()


def test_an_empty_datasets_variable_is_the_default_with_a_warning(monkeypatch, caplog):
    from aamn.utils.io import datasets_root, synthetic_root

    monkeypatch.setenv("AAMN_DATASETS", "  ")
    monkeypatch.delenv("AAMN_SYNTHETIC", raising=False)
    with caplog.at_level(logging.WARNING):
        assert datasets_root() == "datasets"
        assert synthetic_root() == os.path.join("datasets", "synthetic")
    assert "$AAMN_DATASETS is set but empty" in caplog.text


# ------------------------------------------------------------------ inference and its outputs
def test_inference_never_builds_a_vocabulary_into_a_training_folder(checkpoints, tmp_path, capsys):
    """A checkpoint without its vocabulary: the demo names VOCAB_FILE and writes nothing (before,
    it built one from DATASETS.TRAIN over the trained model's vocab.json)."""
    cfg_path, weights = checkpoints["CMDy"]
    data = torch.load(weights, weights_only=True)
    data.pop("vocabulary")
    train = tmp_path / "train"
    train.mkdir()
    torch.save(data, train / "model_final.pth")
    (train / "vocab.txt").write_text("the trained model's")
    source = _write_mp4(tmp_path / "in.mp4", _square_frames(4))
    argv = ["--config-file", cfg_path, "--input", source, "--query", "a man", "--output"]
    argv += [str(tmp_path / "o.mp4"), "MODEL.WEIGHTS", str(train / "model_final.pth")]
    argv += ["OUTPUT_DIR", str(train), "DATASETS.TRAIN", "('synthetic_a2d_train',)"]
    with pytest.raises(SystemExit):
        _demo(argv)
    assert "name the vocabulary the model was trained with in MODEL.LANGUAGE.VOCAB_FILE" in (
        capsys.readouterr().err
    )
    assert sorted(os.listdir(train)) == ["model_final.pth", "vocab.txt"]
    assert not (tmp_path / "o.mp4").exists()


def test_the_demo_refuses_its_input_named_by_a_link_or_a_relative_path(
    checkpoints, tmp_path, monkeypatch, capsys
):
    source = _write_mp4(tmp_path / "in.mp4", _square_frames(4))
    before = open(source, "rb").read()
    os.symlink(source, tmp_path / "link.mp4")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    cfg_path, weights = checkpoints["CMDy"]
    for out in (str(tmp_path / "link.mp4"), os.path.join("..", "in.mp4")):
        argv = ["--config-file", cfg_path, "--input", source, "--query", "a man", "--output", out]
        with pytest.raises(SystemExit):
            _demo(argv + ["MODEL.WEIGHTS", weights])
        assert "is the input video" in capsys.readouterr().err, out
    assert open(source, "rb").read() == before


def _stop_after(monkeypatch, frames, how):
    """Ctrl-C arrives while the predictor makes the frame of index ``frames`` (``how``:
    "signal", a real SIGINT to this process; "raise", KeyboardInterrupt inside the predictor)."""
    from aamn.engine.predictor import VideoPredictor

    real = VideoPredictor.__call__

    def call(self, video, queries, progress=False):
        for i, item in enumerate(real(self, video, queries, progress)):
            if i == frames:
                if how == "raise":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGINT)
            yield item

    monkeypatch.setattr(VideoPredictor, "__call__", call)


def test_the_webcam_demo_keeps_what_it_segmented_when_stopped_with_ctrl_c(
    checkpoints, tmp_path, monkeypatch, capsys
):
    from aamn.data.video import VideoStream

    source = _write_mp4(tmp_path / "cam.mp4", _square_frames(12))
    monkeypatch.setattr(
        VideoStream, "from_camera", classmethod(lambda cls, i, max_frames: cls(source))
    )
    _stop_after(monkeypatch, 5, "signal")
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "out"
    argv = ["--config-file", cfg_path, "--webcam", "--query", "a man", "--quiet", "--output"]
    argv += [str(out / "cam.mp4"), "--json", str(out / "cam.json"), "MODEL.WEIGHTS", weights]
    assert _demo(argv) == 0
    # the frame at hand when Ctrl-C came is finished: 6 of the camera's 12
    assert "stopped with Ctrl-C: the 6 frames segmented until then are kept" in (
        capsys.readouterr().out
    )
    info = json.loads((out / "cam.json").read_text())
    assert info["num_frames"] == len(info["frames"]) == 6
    import cv2

    cap = cv2.VideoCapture(str(out / "cam.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back


def test_ctrl_c_during_a_file_demo_is_one_line_and_leaves_nothing(
    checkpoints, tmp_path, monkeypatch, capsys
):
    source = _write_mp4(tmp_path / "in.mp4", _square_frames(8))
    _stop_after(monkeypatch, 3, "raise")
    cfg_path, weights = checkpoints["CMDy"]
    out = tmp_path / "out"
    argv = ["--config-file", cfg_path, "--input", source, "--query", "a man", "--quiet"]
    argv += ["--output", str(out / "o.mp4"), "--png-dir", str(out / "png"), "--json"]
    argv += [str(out / "o.json"), "MODEL.WEIGHTS", weights]
    demo = load_script("tools/demo.py")
    assert run_tool(demo.main, argv, prog="demo.py") == 130
    assert capsys.readouterr().err.strip().endswith("demo.py: interrupted")
    assert [f for _, _, files in os.walk(out) for f in files] == []


# ---------------------------------------------------------------------- proposals, main job
def test_proposal_files_without_boxes(tmp_path, caplog):
    from aamn.data.proposals import load_proposals, save_proposals

    empty = np.zeros((0, 4), np.float32)
    box = np.array([[1, 2, 10, 12]], np.float32)
    none = str(tmp_path / "none.pkl")
    save_proposals(none, ["v/00001", "v/00002"], [empty, empty], [np.zeros(0), np.zeros(0)])
    with pytest.raises(ValueError, match=r"none\.pkl holds no box in any of its 2 frames"):
        load_proposals(none)
    some = str(tmp_path / "some.pkl")
    save_proposals(some, ["v/00001", "v/00002"], [box, empty], [np.ones(1), np.zeros(0)])
    with caplog.at_level(logging.WARNING):
        assert len(load_proposals(some)["v/00002"][0]) == 0
    assert "some.pkl: 1 of 2 frames hold no box (e.g. v/00002)" in caplog.text


def test_the_main_job_lists_only_the_pictures_it_made(tmp_path, capsys):
    from aamn.engine.main_job import report

    job = SimpleNamespace(aamn_dir=str(tmp_path / "aamn"), det_dir=str(tmp_path / "det"))
    os.makedirs(os.path.join(job.aamn_dir, "tubes"))
    report(job)  # stopped after the flow stage: nothing drawn
    out = capsys.readouterr().out
    assert "No picture yet" in out and "training_curves.png" not in out
    open(os.path.join(job.aamn_dir, "tubes", "a.png"), "wb").close()
    open(os.path.join(job.aamn_dir, "training_curves.png"), "wb").close()
    report(job)
    out = capsys.readouterr().out
    assert "tubes/  (1 PNG)" in out and "visualizations" not in out
    assert os.path.join(job.aamn_dir, "training_curves.png") in out
    assert os.path.join(job.det_dir, "training_curves.png") not in out


def test_every_tool_takes_the_config_limits_as_flags(tmp_path, monkeypatch, capsys):
    """``--config-max-bytes`` / ``--config-max-nodes`` (any tool, through ``run_tool``) set the
    limits the config reader enforces, for the tool and the processes it starts."""
    for name in ("AAMN_CONFIG_MAX_BYTES", "AAMN_CONFIG_MAX_NODES"):
        monkeypatch.setenv(name, "1")  # recorded, so the test leaves the environment as it was
        monkeypatch.delenv(name)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2000 + "\nMODEL:\n  DEVICE: cpu\n")
    seen = []

    def main(argv):
        seen.append(argv)
        get_aamn_cfg(str(big))

    assert run_tool(main, ["--config-max-bytes", "1000", "--x"], prog="tool.py") == 2
    assert seen == [["--x"]] and "may hold at most 1000" in capsys.readouterr().err
    assert run_tool(main, ["--config-max-bytes=100000", "--config-max-nodes", "50"]) == 0
    assert os.environ["AAMN_CONFIG_MAX_NODES"] == "50"
    assert run_tool(main, ["--config-max-nodes", "0"], prog="tool.py") == 2
    assert "--config-max-nodes needs a whole number" in capsys.readouterr().err
