"""The runs' records kept in the repository (aamn.benchmark.records, ``tools/benchmark.py
--save-records``): the report built from them alone equals the report of the runs; checkpoints,
logs, the evaluators' dumps and large files stay behind; records further along than a new run
are not replaced."""

import json
import os

import pytest
from fixtures import load_script
from test_benchmark_tool import write_curve

from aamn.benchmark import comparison
from aamn.benchmark.records import MAX_RECORD_BYTES, save_records


def make_runs(tmp_path):
    """Curve runs of two systems (one with checkpoints, logs and a large per-sample file) and
    a main job's compute records."""
    runs, main_job = tmp_path / "runs", tmp_path / "main_job"
    (main_job / "detector").mkdir(parents=True)
    (main_job / "detector" / "compute.json").write_text(
        json.dumps({"train_cpu_s": 500.0, "train_wall_s": 300.0})
    )
    flow = {"cpu_s": 40.0, "wall_s": 25.0, "commands": [{"cpu_s": 30.0, "wall_s": 20.0}]}
    stages = {"detector": {"cpu_s": 900.0, "wall_s": 600.0},
              "proposals": {"cpu_s": 70.0, "wall_s": 40.0}, "flow": flow}  # fmt: skip
    (main_job / "main_job_compute.json").write_text(json.dumps(stages))
    (main_job / "detector" / "model_final.pth").write_bytes(b"weights")
    aamn = runs / "curves" / "AAMN" / "base" / "seed1"
    write_curve(str(aamn), [(10, 200.0, 50.0), (20, 400.0, 60.0), (30, 600.0, 61.0)], decayed=1)
    write_curve(str(runs / "curves" / "CMDy" / "base" / "seed1"), [(12, 300.0, 30.0)])
    (aamn / "model_final.pth").write_bytes(b"weights")
    (aamn / "model_0000009.pth").write_bytes(b"weights")
    (aamn / "last_checkpoint").write_text("model_final.pth")
    (aamn / "metrics.json").write_text('{"iteration": 1}\n')
    (aamn / "log.txt").write_text("log")
    (aamn / "config.yaml").write_text("SEED: 1\n")
    (aamn / "inference").mkdir()
    (aamn / "inference" / "rvos_per_sample.json").write_text("[]")  # the evaluator's dump
    (aamn / "large.json").write_text("[" + " " * MAX_RECORD_BYTES + "]")
    return runs, main_job


def files_under(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


def test_the_report_of_the_records_is_the_report_of_the_runs(tmp_path):
    runs, main_job = make_runs(tmp_path)
    records = tmp_path / "records"
    saved = save_records({"benchmark": str(runs), "synthetic": str(main_job)}, str(records))
    seed = os.path.join("benchmark", "curves", "AAMN", "base", "seed1")
    cmdy = os.path.join("benchmark", "curves", "CMDy", "base", "seed1")
    curve_files = ["compute.json", "eval_synthetic_a2d_test.json",
                   "eval_synthetic_jhmdb_test.json", "learning_curve.json"]  # fmt: skip
    kept = [os.path.join(seed, f) for f in curve_files + ["config.yaml"]]
    kept += [os.path.join(cmdy, f) for f in curve_files]
    kept += [os.path.join("synthetic", "detector", "compute.json"),
             os.path.join("synthetic", "main_job_compute.json")]  # fmt: skip
    # checkpoints, logs, the last checkpoint's name, the evaluator's dump and the large file
    # stay behind
    assert files_under(records) == sorted(kept)
    assert sorted(saved.written) == sorted(os.path.join(str(records), k) for k in kept)
    assert saved.too_large == [str(runs / "curves" / "AAMN" / "base" / "seed1" / "large.json")]
    assert saved.behind == []
    of_runs = comparison.collect_curves(str(runs), str(main_job))
    of_records = comparison.collect_curves(str(records / "benchmark"), str(records / "synthetic"))
    assert of_records == of_runs
    assert of_records["compute"]["AAMN"]["total_cpu_s"] == pytest.approx(500 + 70 + 30 + 600)
    # saved again: nothing new to write; a changed record is written again
    assert save_records({"benchmark": str(runs)}, str(records)).written == []
    (runs / "curves" / "CMDy" / "base" / "seed1" / "compute.json").write_text("{}")
    again = save_records({"benchmark": str(runs)}, str(records))
    assert again.written == [str(records / cmdy / "compute.json")]


def test_records_further_along_are_not_replaced_by_a_shorter_run(tmp_path):
    runs, main_job = make_runs(tmp_path)
    records = tmp_path / "records"
    save_records({"benchmark": str(runs)}, str(records))
    kept = records / "benchmark" / "curves" / "AAMN" / "base" / "seed1" / "learning_curve.json"
    before = kept.read_text()
    # the machine is lost; the curve is trained again from nothing, one point so far
    seed = runs / "curves" / "AAMN" / "base" / "seed1"
    (seed / "learning_curve.json").write_text(json.dumps([{"iterations": 10, "results": {}}]))
    (seed / "compute.json").write_text(json.dumps({"iterations": 10}))
    saved = save_records({"benchmark": str(runs)}, str(records))
    assert saved.behind == [str(seed)] and saved.written == []
    assert kept.read_text() == before
    # once it has come as far, it is the record
    write_curve(str(tmp_path / "new"), [(10, 1.0, 1.0), (20, 2.0, 2.0), (30, 3.0, 3.0)])
    (seed / "learning_curve.json").write_text(
        (tmp_path / "new" / "learning_curve.json").read_text()
    )
    saved = save_records({"benchmark": str(runs)}, str(records))
    assert saved.behind == [] and str(kept) in saved.written
    assert json.loads(kept.read_text())[-1]["results"]["segm"]["P@0.5"] == 3.0


def test_a_root_name_is_one_folder_name(tmp_path):
    for name in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="one plain folder name"):
            save_records({name: str(tmp_path)}, str(tmp_path / "records"))


def test_the_tool_saves_the_records_and_a_run_kept_as_records_is_not_evaluated(tmp_path, capsys):
    runs, main_job = make_runs(tmp_path)
    records = tmp_path / "records"
    tool = load_script("tools/benchmark.py")
    argv = ["--save-records", str(records), "--runs", str(runs), "--main-job-output", str(main_job)]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote 11 records under" in out and "large.json" in out
    assert tool.main(argv) == 0
    assert "wrote 0 records" in capsys.readouterr().out
    # the records have no model: a missing test evaluation or best-tube level is a clear error
    kept = records / "benchmark" / "curves" / "CMDy" / "base" / "seed1"
    os.remove(kept / "eval_synthetic_jhmdb_test.json")
    with pytest.raises(FileNotFoundError, match="no model_final.pth to evaluate"):
        comparison.evaluate_test(str(kept), "CMDy", "base")
    with pytest.raises(FileNotFoundError, match="best-tube level needs the run's final model"):
        comparison.best_tube_cached(str(kept), comparison.trial_config("CMDy", "base"), [])
