"""tools/benchmark.py: accuracy over runs (means and spread equal to a hand count), the JSON's form,
and BENCHMARKS.md's section replaced between its markers with the rest of the file kept."""

import importlib.util
import json
import os
import statistics

import pytest
from fixtures import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool():
    return load_script("tools/benchmark.py")


METRICS = ["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_IoU", "mean_IoU"]


def write_run(folder, base):
    os.makedirs(folder)
    a2d = {"segm": {m: base + i for i, m in enumerate(METRICS)}, "loc": {"P@0.5": base + 1}}
    a2d["segm_full_video"] = {m: base - 1 for m in METRICS}
    a2d["bbox_full_video"] = {m: base - 2 for m in METRICS}
    for q, d in (("needs_action", 3), ("needs_appearance", 4), ("needs_location", 5)):
        a2d[f"segm_{q}"] = {"P@0.5": base + d, "mean_IoU": base - d}
    a2d["speed"] = {"ms_per_clip_query": 1.0}
    with open(os.path.join(folder, "eval_synthetic_a2d_test.json"), "w") as f:
        json.dump(a2d, f)
    with open(os.path.join(folder, "eval_synthetic_jhmdb_test.json"), "w") as f:
        json.dump({"segm": {m: base / 2 for m in METRICS}}, f)


def test_accuracy_tables_json_and_section(tmp_path):
    tool = load_tool()
    runs = tmp_path / "runs"
    values = {"AAMN": [80.0, 84.0, 85.0], "DynamicFilterSeg": [10.0, 12.0], "CMDy": [20.0]}
    for method, bases in values.items():
        for i, base in enumerate(bases):
            write_run(str(runs / method / f"seed{i + 1}"), base)
    os.makedirs(runs / "CMDy" / "unfinished")  # no evaluation: not counted
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"# B\n\nbefore\n\n{tool.MARK_BEGIN}\nold\n{tool.MARK_END}\n\nafter\n")
    out = tmp_path / "results" / "synthetic.json"
    argv = ["--no-speed", "--runs", str(runs), "--output", str(out), "--markdown", str(doc)]
    assert tool.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["single_frame"]["AAMN"]["P@0.5"] == pytest.approx(83.0)
    assert res["single_frame"]["AAMN"]["mean_IoU"] == pytest.approx(83.0 + 7)
    assert res["full_video"]["DynamicFilterSeg"]["P@0.5"] == pytest.approx(10.0)
    assert res["jhmdb"]["CMDy"]["mean_IoU"] == pytest.approx(10.0)
    assert res["by_query_type"]["AAMN"]["needs_location"]["P@0.5"] == pytest.approx(88.0)
    assert res["runs"]["seeds"] == {
        "AAMN": ["seed1", "seed2", "seed3"],
        "DynamicFilterSeg": ["seed1", "seed2"],
        "CMDy": ["seed1"],
    }
    assert res["papers_reported"]["rows"]["AAMN, RGB + Flow"]["a2d"][0] == 68.9
    text = doc.read_text()
    assert text.startswith("# B\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old" not in text and text.count(tool.MARK_BEGIN) == 1
    std = statistics.stdev(values["AAMN"])
    assert f"| AAMN | 83.0 ± {std:.1f} |" in text  # P@0.5 mean ± sample std
    assert "| CMDy | 20.0 ± 0.0 |" in text
    assert (tmp_path / "results" / "synthetic_accuracy.png").stat().st_size > 0


def test_no_run_is_a_clear_error(tmp_path, capsys):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(["--no-speed", "--runs", str(tmp_path), "--markdown", ""])
    assert "no evaluated run under" in capsys.readouterr().err


def test_reused_speed_tables_sort_their_sizes_as_numbers(tmp_path):
    tool = load_tool()
    runs = tmp_path / "runs"
    write_run(str(runs / "AAMN" / "seed1"), 80.0)
    out = tmp_path / "synthetic.json"
    speed = {"ms_per_clip": 12.0, "ms_per_frame": 4.0, "full_video_fps": 60.0}
    speed.update(train_iter_s=0.1, peak_mem_mb=900.0)
    scaling = {"L": {"0": 7.0, "1": 9.0}, "K": {"10": 11.0, "2": 8.0, "4": 9.5}, "queries": {}}
    out.write_text(
        json.dumps({"speed": {"AAMN": speed}, "scaling": scaling, "speed_setting": {"threads": 2}})
    )
    argv = ["--reuse-speed", "--runs", str(runs), "--output", str(out), "--markdown", ""]
    assert tool.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["speed"]["AAMN"]["full_video_fps"] == 60.0  # kept, not re-measured
    assert res["single_frame"]["AAMN"]["P@0.5"] == 80.0
    assert tool.scaling_table("K", "ms", res["scaling"]["K"])[0] == "| K | 2 | 4 | 10 |"


def test_training_levers_tool_on_the_tiny_benchmark(tmp_path_factory, tmp_path):
    """tools/benchmark_training.py as a user runs it: the detector of the tiny benchmark, every
    lever combination timed, the frame cache filled by one epoch."""
    import subprocess
    import sys

    from training_helpers import tiny_synthetic

    datasets = tiny_synthetic(tmp_path_factory)
    out = tmp_path / "levers.json"
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "benchmark_training.py"),
        "--config-file",
        os.path.join(REPO, "configs", "synthetic", "detector.yaml"),
        *("--iters", "1", "--rounds", "1", "--data-batches", "2", "--profile", "3"),
        *("--json", str(out), "SOLVER.IMS_PER_BATCH", "2", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "50"),
    ]
    env = dict(os.environ, AAMN_DATASETS=datasets, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["data_s_no_cache"] > 0 and res["data_s_cache"] > 0
    assert res["cache"]["frames"] > 0 and res["cache"]["mb"] > 0
    assert len(res["step_s"]) == 5 and all(v > 0 for v in res["step_s"].values())
    assert len(res["profile_ms"]) == 3
    assert "| training step, all three (now) |" in proc.stdout
