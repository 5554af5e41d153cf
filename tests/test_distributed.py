"""Several processes on CPU (gloo), as a user starts them: ``tools/train_net.py --num-gpus 2`` and
``torchrun --nproc_per_node 2 tools/train_net.py``.  A 2-process run trains one model (identical
weights on both ranks, one set of outputs) and evaluates exactly as one process does."""

import json
import os
import re
import sys

import pytest
import torch

from training_helpers import ok, results, tiny_synthetic, train_net

pytestmark = pytest.mark.slow

SHA = re.compile(r"Weights identical on 2 processes \(sha1 ([0-9a-f]{40})\)")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory)


@pytest.fixture(scope="module")
def two_process_run(datasets, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    args = ["--num-gpus", "2", "--results-json", str(out / "final_eval.json")]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "4", args=args))
    return out


def rank_digests(out):
    logs = {name: (out / name).read_text() for name in ("log.txt", "log.txt.rank1")}
    return {name: SHA.findall(text) for name, text in logs.items()}


def test_two_processes_end_with_identical_weights_and_one_set_of_outputs(two_process_run):
    out = two_process_run
    digests = rank_digests(out)
    assert len(digests["log.txt"]) == 1 and digests["log.txt"] == digests["log.txt.rank1"]
    # The digest is the weights rank 0 wrote.
    state = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert state and all(torch.isfinite(v.float()).all() for v in state.values())
    # One set of outputs: rank 1 writes only its log.
    assert len(list(out.glob("model_final*.pth"))) == 1
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert {p.name for p in out.glob("log.txt*")} == {"log.txt", "log.txt.rank1"}
    with open(out / "metrics.json") as f:
        iterations = [line for line in f if '"iteration"' in line]
    assert len(iterations) == len(
        {line.split('"iteration": ')[1].split(",")[0] for line in iterations}
    )


def test_two_process_evaluation_equals_the_one_process_one(datasets, two_process_run, tmp_path):
    weights = str(two_process_run / "model_final.pth")
    for n in ("1", "2"):
        ok(
            train_net(
                datasets,
                tmp_path / f"eval{n}",
                "MODEL.WEIGHTS",
                weights,
                args=[
                    "--eval-only",
                    "--num-gpus",
                    n,
                    "--results-json",
                    str(tmp_path / f"{n}.json"),
                ],
            )
        )
    one, two = results(tmp_path / "1.json"), results(tmp_path / "2.json")
    assert one == two and one["segm"]["mean_IoU"] >= 0
    # ... and equals the evaluation the 2-process training ended with.
    assert results(two_process_run / "final_eval.json") == one


def test_torchrun_starts_one_run_not_two(datasets, two_process_run, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(29500 + os.getpid() % 1000)]  # fmt: skip
    out = tmp_path / "torchrun"
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "4", launcher=torchrun))
    digests = rank_digests(out)
    # Same seed, same data, same processes: the same weights as the --num-gpus 2 run.
    assert (
        digests["log.txt"] == digests["log.txt.rank1"] == rank_digests(two_process_run)["log.txt"]
    )


def test_a_bad_config_fails_once_before_any_process_starts(datasets, tmp_path):
    proc = train_net(datasets, tmp_path / "bad", "MODEL.NO_SUCH_KEY", "1", args=["--num-gpus", "2"])
    assert proc.returncode != 0
    assert proc.stderr.count("unknown config key MODEL.NO_SUCH_KEY") == 1
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()


def test_two_multi_process_runs_at_once_on_one_machine(datasets, tmp_path):
    """Each run's processes meet through their own file: detectron2's default URL (one fixed port
    per user) made the second run fail with "address already in use"."""
    runs = [
        train_net(
            datasets,
            tmp_path / f"run{i}",
            "SOLVER.MAX_ITER",
            "2",
            args=["--num-gpus", "2"],
            wait=False,
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=600) for p in runs] == [0, 0]
    for i in range(2):
        assert (tmp_path / f"run{i}" / "model_final.pth").exists()


def test_a_converged_curve_stops_every_process_at_once(datasets, tmp_path):
    """The main process alone has the evaluation's results: its stop decision is every
    process's, so the two processes end together at the converged evaluation (no process is
    left waiting for the other's gradients)."""
    out = tmp_path / "stop"
    opts = ["DATASETS.TEST", "('synthetic_a2d_val',)", "TEST.EVAL_PERIOD", "2"]
    opts += ["TEST.CURVE.STOP_PATIENCE", "1", "TEST.CURVE.STOP_MIN_GAIN", "1000.0"]
    opts += ["SOLVER.CHECKPOINT_PERIOD", "1"]  # a checkpoint after every step, main process only
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "20", *opts, args=["--num-gpus", "2"]))
    with open(out / "learning_curve.json") as f:
        curve = json.load(f)
    assert [r["iterations"] for r in curve] == [2, 4]
    with open(out / "compute.json") as f:
        compute = json.load(f)
    assert compute["iterations"] == 4 and compute["processes"] == 2
    # the checkpoints' curve state (saved by the main process alone, no collective) counts both
    # processes' CPU seconds, the other's as of the step before (the main process's alone would
    # be about half of the evaluation's count at the same iteration)
    states = [torch.load(out / f"model_{i:07d}.pth", weights_only=False)["trainer"]["hooks"]
              ["LearningCurveHook"] for i in (1, 3)]  # fmt: skip
    assert [s["iterations"] for s in states] == [2, 4]
    assert 0.75 * curve[1]["train_cpu_s"] < states[1]["train_cpu_s"] <= curve[1]["train_cpu_s"]
