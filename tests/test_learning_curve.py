"""Learning curves and compute records of trainings (aamn.engine.learning_curve): evaluations on the
validation split every TEST.EVAL_PERIOD iterations, the stop of a converged curve, a curve
extended by resuming, and the training's CPU seconds with its evaluations left out."""

import json

import pytest
import torch

from aamn.engine.learning_curve import converged, curve_metric
from training_helpers import ok, tiny_synthetic, train_net


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory)


def read(path):
    with open(path) as f:
        return json.load(f)


def test_converged_needs_each_of_the_last_evaluations_to_gain_less_than_the_minimum():
    assert not converged([10.0], 0.5, 2)
    assert not converged([10.0, 10.2], 0.5, 2)  # too few evaluations for a patience of 2
    assert converged([10.0, 10.2, 10.4], 0.5, 2)
    assert not converged([10.0, 10.2, 11.0], 0.5, 2)  # the last one gained 1.0
    assert not converged([10.0, 11.0, 10.2], 0.5, 2)  # 11.0 gained 1.0 over the 10.0 before it
    assert converged([10.0, 12.0, 11.0, 12.3], 0.5, 2)  # measured against the best before them
    assert converged([12.0, 5.0, 6.0], 0.5, 2)  # falling counts as no gain
    assert not converged([10.0, 10.0, 10.0], 0.5, 0)  # patience 0: never stops


def test_curve_metric_reads_a_section_and_name_of_one_or_several_data_sets():
    one = {"segm": {"P@0.5": 40.0}}
    assert curve_metric(one, "segm/P@0.5") == 40.0
    assert curve_metric({"synthetic_a2d_val": one}, "segm/P@0.5") == 40.0
    assert curve_metric(one, "segm/mean_IoU") is None and curve_metric({}, "segm/P@0.5") is None


def test_a_curve_on_val_stops_when_converged_and_extends_on_resume(datasets, tmp_path):
    out = tmp_path / "curve"
    val = ["DATASETS.TEST", "('synthetic_a2d_val',)", "TEST.EVAL_PERIOD", "2"]
    # A gain of 1000 points is never reached: the curve has converged at its second evaluation.
    stop = ["TEST.CURVE.STOP_PATIENCE", "1", "TEST.CURVE.STOP_MIN_GAIN", "1000.0"]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "10", *val, *stop))
    curve = read(out / "learning_curve.json")
    assert [r["iterations"] for r in curve] == [2, 4]
    for r in curve:
        assert 0.0 <= r["results"]["segm"]["P@0.5"] <= 100.0
    assert 0 < curve[0]["train_cpu_s"] < curve[1]["train_cpu_s"]
    assert 0 < curve[0]["train_wall_s"] < curve[1]["train_wall_s"]
    compute = read(out / "compute.json")
    assert compute["iterations"] == 4 and compute["eval_cpu_s"] > 0
    # the last point's compute and the final one differ by the saving of model_final, far less
    # than the evaluations they both leave out
    assert curve[1]["train_cpu_s"] <= compute["train_cpu_s"]
    assert compute["train_cpu_s"] - curve[1]["train_cpu_s"] < 0.5 * compute["eval_cpu_s"]
    # the model of the iteration reached, which resuming goes on from
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 3
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert max(m["iteration"] for m in metrics) < 9

    # Extended: two more evaluations, the earlier records kept and the compute counted on.
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "8", *val, args=["--resume"]))
    longer = read(out / "learning_curve.json")
    assert [r["iterations"] for r in longer] == [2, 4, 6, 8]
    assert longer[:2] == curve
    assert longer[1]["train_cpu_s"] < longer[2]["train_cpu_s"] < longer[3]["train_cpu_s"]
    assert read(out / "compute.json")["iterations"] == 8


def test_a_run_stopped_after_an_evaluation_is_finished_by_resuming_at_that_iteration(
    datasets, tmp_path
):
    """A curve run killed after its evaluation and checkpoint at iteration 4 (no model_final):
    resumed with SOLVER.MAX_ITER 4 it saves that model as model_final without evaluating again."""
    out = tmp_path / "stopped"
    opts = ["DATASETS.TEST", "('synthetic_a2d_val',)", "TEST.EVAL_PERIOD", "2"]
    opts += ["SOLVER.CHECKPOINT_PERIOD", "2"]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "4", *opts))
    curve = read(out / "learning_curve.json")
    (out / "model_final.pth").unlink()  # killed before it was written
    (out / "last_checkpoint").write_text("model_0000003.pth")
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "4", *opts, args=["--resume"]))
    assert read(out / "learning_curve.json") == curve  # not evaluated again
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    kept = torch.load(out / "model_0000003.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 3 and final["trainer"]["iteration"] == 3  # a resume starts at 4
    assert final["trainer"]["hooks"]["LearningCurveHook"]["iterations"] == 4
    assert all(torch.equal(final["model"][k], kept["model"][k]) for k in kept["model"])
    resumed = read(out / "compute.json")
    assert resumed["iterations"] == 4 and resumed["eval_cpu_s"] > 0  # the evaluations before


def test_every_training_records_its_compute_without_its_evaluation(datasets, tmp_path):
    out = tmp_path / "plain"
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "3", "TEST.EVAL_PERIOD", "0"))
    compute = read(out / "compute.json")
    assert compute["iterations"] == 3 and compute["processes"] == 1
    assert compute["train_cpu_s"] > 0 and compute["eval_cpu_s"] > 0
    # the final evaluation is the curve's one point
    assert [r["iterations"] for r in read(out / "learning_curve.json")] == [3]


def test_a_converged_curve_decays_its_learning_rate_for_its_last_periods(datasets, tmp_path):
    """TEST.CURVE.DECAY_PERIODS 2: a curve not converged two periods before SOLVER.MAX_ITER ends
    there at its constant rate; extended, it converges at 4, runs two periods at a tenth of the
    learning rate and ends at 8; resumed within its decay, the rate stays decayed."""
    out = tmp_path / "decay"
    opts = ["DATASETS.TEST", "('synthetic_a2d_val',)", "TEST.EVAL_PERIOD", "2"]
    opts += ["SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.BASE_LR", "0.01"]
    opts += ["TEST.CURVE.STOP_PATIENCE", "1", "TEST.CURVE.STOP_MIN_GAIN", "1000.0"]
    opts += ["TEST.CURVE.DECAY_PERIODS", "2", "TEST.CURVE.DECAY_FACTOR", "0.1"]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "6", *opts))
    assert [r["iterations"] for r in read(out / "learning_curve.json")] == [2]
    assert "decay_from" not in read(out / "compute.json")

    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "12", *opts, args=["--resume"]))
    curve = read(out / "learning_curve.json")
    assert [r["iterations"] for r in curve] == [2, 4, 6, 8]
    assert [r.get("lr_factor") for r in curve] == [None, None, 0.1, 0.1]
    assert [r["lr"] for r in curve] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    compute = read(out / "compute.json")
    assert compute["decay_from"] == 4 and compute["iterations"] == 8
    assert torch.load(out / "model_final.pth", weights_only=False)["iteration"] == 7

    # Stopped after its checkpoint and evaluation at 6, within the decay: resumed from there for
    # one step (evaluated at the end, the learning rate of that first step recorded).
    (out / "learning_curve.json").write_text(json.dumps(curve[:3]))
    (out / "compute.json").write_text(json.dumps(dict(compute, iterations=6)))
    (out / "model_final.pth").unlink()
    (out / "last_checkpoint").write_text("model_0000005.pth")
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "7", *opts, args=["--resume"]))
    resumed = read(out / "learning_curve.json")
    assert [r["iterations"] for r in resumed] == [2, 4, 6, 7]
    assert resumed[3]["lr"] == pytest.approx(0.001) and resumed[3]["lr_factor"] == 0.1


def test_a_run_killed_during_an_evaluation_evaluates_first_when_resumed(datasets, tmp_path):
    """Killed during its evaluation at 4 (the checkpoint of iteration 4 saved, the curve without
    that point, compute.json of another iteration): resumed, it counts on from the checkpoint's
    own curve state, evaluates at 4 first (the same model, so the same results) and keeps the
    points before; where that evaluation ends a converged curve, the run ends there, its
    checkpoint saved as model_final; a checkpoint without a curve state whose files end at
    another iteration is refused, naming both."""
    out = tmp_path / "killed"
    opts = ["DATASETS.TEST", "('synthetic_a2d_val',)", "TEST.EVAL_PERIOD", "2"]
    opts += ["SOLVER.CHECKPOINT_PERIOD", "2"]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "6", *opts))
    curve = read(out / "learning_curve.json")
    assert [r["iterations"] for r in curve] == [2, 4, 6]
    ckpt = torch.load(out / "model_0000003.pth", map_location="cpu", weights_only=False)
    state = ckpt["trainer"]["hooks"]["LearningCurveHook"]
    assert state["iterations"] == 4 and [r["iterations"] for r in state["records"]] == [2]
    assert curve[0]["train_cpu_s"] < state["train_cpu_s"] <= curve[1]["train_cpu_s"]

    def killed_at_4():
        (out / "learning_curve.json").write_text(json.dumps(curve[:1]))
        (out / "compute.json").write_text(json.dumps({"iterations": 2, "train_cpu_s": 0.1}))
        for name in ("model_final.pth", "model_0000005.pth"):
            if (out / name).exists():
                (out / name).unlink()
        (out / "last_checkpoint").write_text("model_0000003.pth")

    killed_at_4()
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "6", *opts, args=["--resume"]))
    resumed = read(out / "learning_curve.json")
    assert [r["iterations"] for r in resumed] == [2, 4, 6]
    assert resumed[0] == curve[0]
    accuracy = [
        {k: v for k, v in r["results"].items() if k != "speed"} for r in (resumed[1], curve[1])
    ]
    assert accuracy[0] == accuracy[1]  # the model of iteration 4 again
    # counted on from the checkpoint's compute (nothing trained before that evaluation)
    assert state["train_cpu_s"] <= resumed[1]["train_cpu_s"] < state["train_cpu_s"] + 0.5
    assert resumed[2]["train_cpu_s"] > resumed[1]["train_cpu_s"]
    assert read(out / "compute.json")["iterations"] == 6

    # converged at that evaluation (a gain of 1000 is never reached): ended at once, its
    # checkpoint replacing the model_final an earlier, shorter run of the curve had left
    stale = (out / "model_final.pth").read_bytes()  # of iteration 5
    killed_at_4()
    (out / "model_final.pth").write_bytes(stale)
    stop = ["TEST.CURVE.STOP_PATIENCE", "1", "TEST.CURVE.STOP_MIN_GAIN", "1000.0"]
    ok(train_net(datasets, out, "SOLVER.MAX_ITER", "20", *opts, *stop, args=["--resume"]))
    assert [r["iterations"] for r in read(out / "learning_curve.json")] == [2, 4]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    kept = torch.load(out / "model_0000003.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 3 and final["trainer"]["iteration"] == 3
    assert all(torch.equal(final["model"][k], kept["model"][k]) for k in kept["model"])
    assert read(out / "compute.json")["iterations"] == 4

    # a checkpoint of before the curve state, its files at another iteration: refused
    killed_at_4()
    del ckpt["trainer"]["hooks"]["LearningCurveHook"]
    torch.save(ckpt, out / "model_0000003.pth")
    proc = train_net(datasets, out, "SOLVER.MAX_ITER", "6", *opts, args=["--resume"])
    assert proc.returncode != 0
    assert "compute.json ends at iteration 2, the checkpoint resumed from at 4" in proc.stderr
    assert read(out / "learning_curve.json") == curve[:1]  # nothing lost
    assert read(out / "compute.json") == {"iterations": 2, "train_cpu_s": 0.1}


def test_a_checkpoint_state_counts_every_process_without_a_collective(monkeypatch):
    """With several processes the checkpointer runs in the main process alone, so the curve state
    it saves cannot gather (the others would never join): their CPU seconds are gathered before
    each step whose end saves a checkpoint (or ends the training), and the state adds them."""
    from types import SimpleNamespace

    import detectron2.utils.comm as comm

    from aamn.engine import learning_curve as lc

    hook = lc.LearningCurveHook(0, lambda: {}, "/nonexistent", checkpoint_period=4)
    hook.trainer = SimpleNamespace(iter=0, max_iter=20)
    hook._cpu_start, hook._wall_start = 0.0, 1.0
    monkeypatch.setattr(lc, "process_cpu_s", lambda: 10.0)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    gathers = []
    monkeypatch.setattr(comm, "all_gather", lambda x: gathers.append(x) or [x, 30.0])
    for it in (0, 1, 2):  # no checkpoint at the end of these steps: nothing gathered
        hook.trainer.iter = it
        hook.before_step()
    assert gathers == [] and hook.state_dict()["train_cpu_s"] == 10.0
    hook.trainer.iter = 3  # its end saves the checkpoint of iteration 4
    hook.before_step()
    assert gathers == [10.0]
    state = hook.state_dict()  # no collective here
    assert gathers == [10.0] and state["train_cpu_s"] == 40.0 and state["iterations"] == 4
    hook.trainer.iter = 18  # the last step (the training's end saves model_final)
    hook.before_step()
    hook.trainer.iter = 19
    hook.before_step()
    assert gathers == [10.0, 10.0]
