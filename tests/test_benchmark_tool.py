"""tools/benchmark.py: accuracy over runs (means and spread equal to a hand count), the JSON's form,
and BENCHMARKS.md's section replaced between its markers with the rest of the file kept."""

import ast
import importlib.util
import json
import os
import shutil
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
    assert res["accuracy_setting"]["command"] == "python tools/benchmark.py " + " ".join(argv)
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


def test_reuse_accuracy_keeps_the_accuracy_and_measures_the_speed_again(tmp_path, monkeypatch):
    """--reuse-accuracy: the accuracy, the runs and the chosen trials come from --output (here the
    project's own results file); the speed and the whole-video settings (of the chosen trials)
    are measured again."""
    import shutil

    import aamn.benchmark.speed as speed_module

    tool = load_tool()
    out = tmp_path / "synthetic.json"
    shutil.copy(os.path.join(REPO, "benchmarks", "results", "synthetic.json"), out)
    before = json.loads(out.read_text())
    speed = {"ms_per_clip": 12.0, "ms_per_frame": 4.0, "full_video_fps": 60.0}
    speed.update(train_iter_s=0.1, peak_mem_mb=900.0)
    seen = {}
    timed = {}

    def run_speed(args, chosen):
        timed.update(chosen)
        return {"AAMN": speed}, {}, {}

    monkeypatch.setattr(speed_module, "run_speed", run_speed)

    def whole_video(args, chosen):
        seen["chosen"] = chosen
        return {}

    monkeypatch.setattr(speed_module, "run_whole_video", whole_video)
    argv = ["--reuse-accuracy", "--runs", str(tmp_path / "elsewhere"), "--output", str(out)]
    doc = tmp_path / "B.md"
    doc.write_text(f"{tool.MARK_BEGIN}\n{tool.MARK_END}\n")
    assert tool.main(argv + ["--markdown", str(doc)]) == 0
    acc = before["accuracy_setting"]  # the section says which run the accuracy comes from
    assert f"kept from the run that trained and evaluated them (`{acc['command']}` on" in (
        doc.read_text()
    )
    res = json.loads(out.read_text())
    for key in ("val", "trials", "runs", "single_frame", "learning_curves", "compute"):
        assert res[key] == before[key]  # kept: the runs are not read
    assert res["speed"]["AAMN"]["full_video_fps"] == 60.0  # measured (the stand-in)
    assert seen["chosen"] == {m: before["val"][m]["trial"] for m in before["val"]}
    assert timed == seen["chosen"]  # the model speed of the compared trials too
    with pytest.raises(SystemExit):  # no results file to keep
        tool.main(["--reuse-accuracy", "--output", str(tmp_path / "absent.json"), "--markdown", ""])


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


def write_curve(folder, points, query_swap=None, test_p=None, threads=None, decayed=0):
    """A curve run: ``points`` = [(iterations, train_cpu_s, val P@0.5)], the last ``decayed`` of
    them within the learning-rate decay; the final model's test evaluations."""
    os.makedirs(folder)
    records = []
    for i, (it, cpu, p) in enumerate(points):
        results = {"segm": {"P@0.5": p, "mean_IoU": p / 2}}
        if query_swap is not None:
            results["query_swap"] = {"moved": query_swap, "pairs": 10.0}
        records.append({"iterations": it, "train_cpu_s": cpu, "train_wall_s": cpu / 2,
                        "results": results})  # fmt: skip
        if i >= len(points) - decayed:
            records[-1]["lr_factor"] = 0.1
    with open(os.path.join(folder, "learning_curve.json"), "w") as f:
        json.dump(records, f)
    with open(os.path.join(folder, "compute.json"), "w") as f:
        json.dump({"iterations": points[-1][0], "train_cpu_s": points[-1][1],
                   "train_wall_s": points[-1][1] / 2, **({"threads": threads} if threads else {})},
                  f)  # fmt: skip
    for name in ("eval_synthetic_a2d_test.json", "eval_synthetic_jhmdb_test.json"):
        with open(os.path.join(folder, name), "w") as f:
            json.dump({"segm": {m: test_p for m in METRICS}}, f)


def test_curves_compute_and_reference_levels_from_the_runs(tmp_path, tmp_path_factory, monkeypatch):
    """The results JSON's keys of the learning curves, against hand counts: the trial chosen on
    val, the total compute with the flow of the flow-reading system, the equal-compute point."""
    from detectron2.data import DatasetCatalog
    from training_helpers import tiny_synthetic

    from aamn.data.datasets.builtin import register_all_synthetic
    from aamn.utils.io import synthetic_root

    tool = load_tool()
    runs, main_job = tmp_path / "runs", tmp_path / "main_job"
    curves = runs / "curves"
    # CMDy (RGB): "base" ran one budget, "wide" two (two seeds); with the seed both ran, at the
    # iterations both reached (10), base is better (33 against 30), although wide ends higher
    # (38 over its seeds): base is chosen
    write_curve(str(curves / "CMDy" / "base" / "seed1"), [(10, 100.0, 33.0)],
                query_swap=5.0, test_p=18.0)  # fmt: skip
    write_curve(str(curves / "CMDy" / "wide" / "seed1"), [(10, 300.0, 30.0), (20, 600.0, 40.0)],
                query_swap=20.0, test_p=38.0)  # fmt: skip
    write_curve(str(curves / "CMDy" / "wide" / "seed2"), [(10, 320.0, 34.0), (20, 640.0, 36.0)],
                query_swap=30.0, test_p=36.0)  # fmt: skip
    write_curve(str(curves / "CMDy" / "stride8" / "seed1"), [(10, 90.0, 20.0)], test_p=1.0)
    # DynamicFilterSeg reads flow: the main job's first flow command counts
    write_curve(str(curves / "DynamicFilterSeg" / "base" / "seed1"), [(5, 50.0, 10.0)],
                query_swap=0.0, test_p=9.0, threads=1)  # fmt: skip
    # kept margin results: the proposal-conditioned run's file and a stream diagnosis
    (runs / "margin").mkdir(parents=True)
    kept = {"records": 7, "AAMN": {"P@0.5": 80.0, "mean_IoU": 70.0}}
    (runs / "margin" / "proposal_conditioned.json").write_text(json.dumps(kept))
    kept_final = {"records": 7, "AAMN": {"P@0.5": 90.0, "mean_IoU": 80.0}, "AAMN trial": "wide",
                  "CMDy (base)": {k: {"P@0.5": 60.0, "mean_IoU": 50.0} for k in
                                  ("own mask", "AAMN mask", "own mask in the box")}
                  | {"same tube as AAMN": 55.0,
                     "box IoU rule": {"AAMN mask": {"P@0.5": 70.0, "mean_IoU": 60.0},
                                      "own mask in the box": {"P@0.5": 65.0, "mean_IoU": 55.0},
                                      "same tube as AAMN": 45.0}}}  # fmt: skip
    (runs / "margin" / "proposal_conditioned_final.json").write_text(json.dumps(kept_final))
    diagnosis = runs / "margin" / "cmdy_streams" / "m" / "d" / "rgb"
    diagnosis.mkdir(parents=True)
    (diagnosis / "eval.json").write_text('{"segm": {"P@0.5": 50.0, "mean_IoU": 40.0}}')
    main_job.mkdir()
    (main_job / "main_job_compute.json").write_text(json.dumps({"flow": {
        "cpu_s": 70.0, "wall_s": 40.0, "commands": [{"cpu_s": 64.0, "wall_s": 35.0},
                                                    {"cpu_s": 6.0, "wall_s": 5.0}]}}))  # fmt: skip
    datasets = tiny_synthetic(tmp_path_factory)
    register_all_synthetic(os.path.join(datasets, "synthetic"))
    out, doc = tmp_path / "synthetic.json", tmp_path / "BENCHMARKS.md"
    doc.write_text(f"# B\n\n{tool.MARK_BEGIN}\nold\n{tool.MARK_END}\n")
    argv = ["--no-speed", "--runs", str(runs), "--output", str(out), "--markdown", str(doc)]
    from aamn.benchmark import comparison as curves_module

    evaluated = []  # --evaluate-test: each chosen trial's final models (their files exist here)
    monkeypatch.setattr(curves_module, "CURVE_MAX_BUDGETS", 1)  # every curve here is final
    monkeypatch.setattr(curves_module, "evaluate_test", lambda o, m, t: evaluated.append((m, t)))
    conditioned = []  # --proposal-conditioned final: run with the chosen trials (its file kept)
    monkeypatch.setattr("aamn.benchmark.report.run_proposal_conditioned",
                        lambda r, chosen, models: conditioned.append((models, chosen)))  # fmt: skip
    try:
        assert tool.main(argv + ["--main-job-output", str(main_job), "--proposal-conditioned"]) == 0
        assert tool.main(argv + ["--main-job-output", str(main_job), "--evaluate-test",
                                 "--proposal-conditioned", "final"]) == 0  # fmt: skip
        val_records = DatasetCatalog.get("synthetic_a2d_val")
    finally:
        register_all_synthetic(synthetic_root())
    res = json.loads(out.read_text())
    a = pytest.approx
    assert res["margin"]["proposal_conditioned"] == kept  # not lost by a rebuild
    assert res["margin"]["proposal_conditioned_final"] == kept_final
    chosen = {"CMDy": "base", "DynamicFilterSeg": "base"}  # the flag alone: the one-budget models
    assert conditioned == [("first_budget", chosen), ("final", chosen)]
    assert "--proposal-conditioned final`; the final models" in doc.read_text()
    assert "| CMDy (base) | 60.0 / 50.0 | 60.0 / 50.0 | 60.0 / 50.0 | 55.0 |" in doc.read_text()
    row = "| CMDy (base), box IoU rule | 60.0 / 50.0 | 70.0 / 60.0 | 65.0 / 55.0 | 45.0 |"
    assert row in doc.read_text()
    assert res["margin"]["cmdy_streams"] == {
        "models": {"m": {"d": {"rgb": {"P@0.5": 50.0, "mean_IoU": 40.0}}}},
        "flow_in_boxes": {},
    }
    assert sorted(evaluated) == [("CMDy", "base"), ("DynamicFilterSeg", "base")]
    assert res["val"]["CMDy"]["trial"] == "base"
    assert [t["trial"] for t in res["trials"]["CMDy"]] == ["base", "stride8", "wide"]
    assert res["trials"]["CMDy"][2]["val"]["P@0.5"] == a(38.0)  # wide's final, over 2 seeds
    assert res["trials"]["CMDy"][2]["chosen_on"] == {"iterations": 10, "seeds": [1], "P@0.5": 30}
    assert res["val"]["CMDy"]["P@0.5"] == a(33.0) and res["val_runs"]["CMDy"]["P@0.5"] == [33]
    assert res["query_swap"]["CMDy"] == a(0.05) and res["query_swap"]["DynamicFilterSeg"] == 0.0
    assert res["compute"]["CMDy"] == {
        "total_cpu_s": a(100.0), "parts": {"training": a(100.0)}, "training_wall_s": a(50.0),
        "total_wall_s": a(50.0), "parts_wall_s": {"training": a(50.0)},
        "iterations": [10], "threads": []}  # fmt: skip
    assert res["compute"]["DynamicFilterSeg"]["parts"] == {"flow": 64.0, "training": 50.0}
    assert res["compute"]["DynamicFilterSeg"]["total_cpu_s"] == a(114.0)
    assert res["compute"]["DynamicFilterSeg"]["total_wall_s"] == a(35.0 + 25.0)
    curve = res["learning_curves"]["DynamicFilterSeg"]
    assert curve == [{"iterations": 5, "train_cpu_s": 50.0, "total_cpu_s": 114.0,
                      "val": {"P@0.5": 10.0, "mean_IoU": 5.0, "query_swap": 0.0}}]  # fmt: skip
    # equal compute where every curve has been evaluated: DynamicFilterSeg's only point (114
    # CPU-s); CMDy's final curve ended below it (100) and stands at its end
    eq = res["equal_compute"]
    assert eq["CMDy"]["total_cpu_s"] == eq["DynamicFilterSeg"]["total_cpu_s"] == a(114.0)
    assert eq["CMDy"]["val"]["P@0.5"] == 33.0 and eq["DynamicFilterSeg"]["val"]["P@0.5"] == 10.0
    assert eq["DynamicFilterSeg"]["points"] == [[{"iterations": 5, "total_cpu_s": a(114.0)}]]
    assert res["test"]["CMDy"]["segm"]["P@0.5"] == [18.0]
    levels = res["reference_levels"]
    assert set(levels) == {"random_actor", "union_of_actors"}  # best_tube needs an AAMN curve
    assert levels["random_actor"]["P@0.5"] < 100.0 and len(val_records) > 0
    assert (tmp_path / "synthetic_curves.png").stat().st_size > 0
    text = doc.read_text()  # the converged table, with the reference levels beside it
    assert "| CMDy (base) | 1 | 10 (no) | 100 | 33.0 | 16.5 | 0.05 | 18.0 |" in text
    # flow + training, 1 thread
    assert "| DynamicFilterSeg | - | - | 64 (35) | 50 (25) | 114 (60) | 1 |" in text
    assert "| CMDy | wide | " in text
    assert "| 1, 2 | 20, 20 | 31.00 (-) | 30.0 at 10 it | 38.0 |" in text
    assert "| 1 | 10 | 9.00 (-) | 20.0 at 10 it | 20.0 |" in text  # stride8
    assert "| reference: a random actor of the frame (ground truth) |" in text
    assert "same training time" not in text and "Each system's config as it is" not in text


def test_only_the_trial_chosen_on_val_is_evaluated_on_test(tmp_path, monkeypatch):
    """``evaluate_chosen_on_test`` (``--evaluate-test``, before ``collect_curves``) evaluates on
    the test splits the final models of each system's chosen trial, every seed of it, and no
    other trial's; a curve still to be extended (neither converged and decayed nor at the largest
    budget count) is not evaluated."""
    from aamn.benchmark import comparison as curves_module

    runs = tmp_path / "runs"
    for trial, p in (("base", 30.0), ("wide", 35.0), ("stride8", 20.0)):
        for seed in (1, 2):  # flat: converged at its third evaluation, then one decayed budget
            write_curve(str(runs / "curves" / "CMDy" / trial / f"seed{seed}"),
                        [(10, 1.0, p), (20, 2.0, p), (30, 3.0, p), (40, 4.0, p + 1)],
                        decayed=1)  # fmt: skip
    # wide's third seed rises by 2.5 points a budget: not converged, and 3 of 10 budgets
    write_curve(str(runs / "curves" / "CMDy" / "wide" / "seed3"),
                [(10, 1.0, 33.0), (20, 2.0, 35.5), (30, 3.0, 38.0)])  # fmt: skip
    evaluated = []
    monkeypatch.setattr(
        curves_module, "evaluate_test", lambda out, m, t: evaluated.append((m, t, out[-5:]))
    )
    curves_module.evaluate_chosen_on_test(str(runs), str(tmp_path / "no_main_job"))
    res = curves_module.collect_curves(str(runs), str(tmp_path / "no_main_job"))
    assert res["val"]["CMDy"]["trial"] == "wide"
    assert evaluated == [("CMDy", "wide", "seed1"), ("CMDy", "wide", "seed2")]
    evaluated.clear()
    monkeypatch.setattr(curves_module, "CURVE_MAX_BUDGETS", 3)  # now the third seed's is final
    curves_module.evaluate_chosen_on_test(str(runs), str(tmp_path / "no_main_job"))
    assert ("CMDy", "wide", "seed3") in evaluated
    evaluated.clear()
    curves_module.collect_curves(str(runs), str(tmp_path / "no_main_job"))  # a report only
    assert evaluated == []


def test_a_seed_still_being_extended_moves_no_mean_no_choice_and_no_test(tmp_path, monkeypatch):
    """A second seed's curve shorter than the first's and not converged is in progress: it counts
    in no mean and is not evaluated on test; a shorter curve that met the stop rule is finished.
    The trials are compared with the seeds all of them ran: with seed 2's 20 at 10 iterations
    averaged in, wide (32) would lose to base (30 against 26)."""
    from aamn.benchmark import comparison as curves_module

    runs = tmp_path / "runs" / "curves" / "CMDy"
    write_curve(str(runs / "base" / "seed1"), [(10, 1.0, 30.0), (20, 2.0, 31.0)])
    # rises by 2.5 a budget (more than the stop rule's 2): final at the largest budget count
    write_curve(str(runs / "wide" / "seed1"), [(10, 1.0, 32.0), (20, 2.0, 34.5), (30, 3.0, 37.0),
                                               (40, 4.0, 39.5)], query_swap=10.0)  # fmt: skip
    write_curve(str(runs / "wide" / "seed2"), [(10, 1.0, 20.0)], query_swap=50.0)
    # converged at 30: the last two evaluations add 0.2 and 0.3 over the 36.0 before them; then
    # one decayed budget
    write_curve(str(runs / "wide" / "seed3"), [(10, 1.0, 36.0), (20, 2.0, 36.2), (30, 3.0, 36.3),
                                               (40, 4.0, 37.0)], query_swap=20.0,
                decayed=1)  # fmt: skip
    evaluated = []
    monkeypatch.setattr(
        curves_module, "evaluate_test", lambda out, m, t: evaluated.append((t, out[-5:]))
    )
    monkeypatch.setattr(curves_module, "CURVE_MAX_BUDGETS", 4)  # seed 1's curve ends at 40
    curves_module.evaluate_chosen_on_test(str(tmp_path / "runs"), str(tmp_path / "none"))
    res = curves_module.collect_curves(str(tmp_path / "runs"), str(tmp_path / "none"))
    val = res["val"]["CMDy"]
    assert val["trial"] == "wide" and val["in_progress"] == {"2": 10}
    wide = [t for t in res["trials"]["CMDy"] if t["trial"] == "wide"][0]
    assert wide["chosen_on"] == {"iterations": 20, "seeds": [1], "P@0.5": 34.5}
    assert wide["seeds"] == [1, 3] and wide["iterations"] == [40, 40]
    assert val["P@0.5"] == pytest.approx(38.25) and res["val_runs"]["CMDy"]["P@0.5"] == [39.5, 37]
    assert val["converged"] == [False, True]
    assert res["query_swap"]["CMDy"] == pytest.approx(0.15)
    assert evaluated == [("wide", "seed1"), ("wide", "seed3")]
    assert res["test"]["CMDy"]["seeds"] == [1, 3]
    assert res["compute"]["CMDy"]["iterations"] == [40, 40]
    from aamn.benchmark.report import curves_markdown

    text = "\n".join(curves_markdown(res))
    assert "| CMDy (wide) | 2 (in progress: seed 2 at 10 it) | 40 (no), 40 (yes) |" in text
    # the protocol as run, where the trials were compared and whether a third seed is wanted
    assert "until 2 evaluations in a row add less than 2 P@0.5" in text
    assert val["ranked_at_fraction"] == 0.5 and val["third_seed"]["seeds"] == 2
    assert ("- CMDy: trials compared at 50% of the chosen trial's converged length; its seeds 2.5 "
            "apart, its lead 3.5: two seeds suffice." in text)  # fmt: skip
    old_protocol = "\n".join(curves_markdown(dict(res, protocol={})))
    assert "add less than 0.5 P@0.5 or 10 budgets are reached, without a learning-rate decay" in (
        old_protocol)  # fmt: skip


def test_trials_compared_before_half_the_converged_length_are_asked_for_more_budgets(tmp_path):
    """The chosen trial converged at 6 budgets (seed 1), the trials were compared at 2: a third of
    its length, so the trials are wanted at 3 budgets (a longer seed 2 counts only in the
    all-seeds fraction); once they are extended the comparison moves to 3 budgets, at half."""
    from aamn.benchmark import comparison as curves_module
    from aamn.benchmark.report import curves_markdown

    runs = tmp_path / "runs" / "curves" / "CMDy"
    flat = [(i * 10, float(i), 40.0 + min(i, 4) * 3.0) for i in range(1, 7)]  # 43 .. 52, 52
    write_curve(str(runs / "wide" / "seed1"), flat + [(70, 7.0, 54.0)], decayed=1)
    write_curve(str(runs / "wide" / "seed2"),
                [(i * 10, float(i), 40.0 + min(i, 6) * 3.0) for i in range(1, 9)]
                + [(90, 9.0, 60.0)], decayed=1)  # fmt: skip
    write_curve(str(runs / "base" / "seed1"), [(10, 1.0, 30.0), (20, 2.0, 44.0)])
    res = curves_module.collect_curves(str(tmp_path / "runs"), str(tmp_path / "none"))
    val = res["val"]["CMDy"]
    assert val["trial"] == "wide" and val["ranked_at_budgets"] == 2
    assert val["ranked_at_fraction"] == pytest.approx(20 / 60)
    assert val["ranked_at_fraction_all_seeds"] == pytest.approx(20 / 80)
    assert val["rank_budgets_wanted"] == 3
    text = "\n".join(curves_markdown(res))
    assert ("- CMDy: trials compared at 33% of the chosen trial's converged length (25% of its "
            "longest seed's): half of it wants the trials at 3 budgets (`tools/benchmark.py "
            "--curves --methods CMDy --seeds 1 --max-budgets 3`)") in text  # fmt: skip
    # base extended to 3 budgets overtakes wide there (55 against 49)
    shutil.rmtree(runs / "base" / "seed1")
    write_curve(str(runs / "base" / "seed1"), [(10, 1.0, 30.0), (20, 2.0, 44.0), (30, 3.0, 55.0)])
    res = curves_module.collect_curves(str(tmp_path / "runs"), str(tmp_path / "none"))
    val = res["val"]["CMDy"]
    assert val["trial"] == "base" and val["ranked_at_budgets"] == 3
    wide = [t for t in res["trials"]["CMDy"] if t["trial"] == "wide"][0]
    assert wide["chosen_on"] == {"iterations": 30, "seeds": [1], "P@0.5": 49.0}
    assert "half of it wants" not in "\n".join(curves_markdown(res))


def test_a_system_started_from_the_detector_counts_the_detector(tmp_path, monkeypatch):
    """The ``detector_init`` trial: its command loads the main job's detector, its compute counts
    the detector's training (for a comparison system too), and its test evaluation loads the
    run's own final model, not the detector."""
    from aamn.benchmark import comparison as curves_module

    main_job = tmp_path / "main_job"
    (main_job / "detector").mkdir(parents=True)
    (main_job / "detector" / "compute.json").write_text(
        json.dumps({"train_cpu_s": 500.0, "train_wall_s": 300.0})
    )
    overrides = curves_module.TRIALS["CMDy"]["detector_init"]
    assert curves_module.fixed_parts("CMDy", str(main_job), overrides) == {"detector": 500.0}
    assert curves_module.fixed_parts("CMDy", str(main_job), []) == {}
    with pytest.raises(FileNotFoundError, match="run the main job"):
        curves_module.trial_overrides("CMDy", "detector_init", str(main_job))
    weights = main_job / "detector" / "model_final.pth"
    weights.write_bytes(b"")
    cmd = curves_module.curve_command("CMDy", "detector_init", 1, str(tmp_path), 2, str(main_job))
    assert cmd[cmd.index("MODEL.WEIGHTS") + 1] == str(weights)
    assert curves_module.DETECTOR_WEIGHTS not in cmd
    assert "MODEL.WEIGHTS" not in curves_module.curve_command("CMDy", "base", 1, str(tmp_path), 2)

    run = tmp_path / "runs" / "curves" / "CMDy" / "detector_init" / "seed1"
    write_curve(str(run), [(10, 100.0, 33.0)])
    res = curves_module.collect_curves(str(tmp_path / "runs"), str(main_job))
    assert res["compute"]["CMDy"]["parts"] == {"detector": 500.0, "training": 100.0}
    assert res["compute"]["CMDy"]["total_cpu_s"] == pytest.approx(600.0)

    commands = []
    monkeypatch.setattr(curves_module.subprocess, "run", lambda c, **k: commands.append(c))
    for name in ("eval_synthetic_a2d_test.json", "eval_synthetic_jhmdb_test.json"):
        os.remove(run / name)
    (run / "model_final.pth").write_bytes(b"")
    curves_module.evaluate_test(str(run), "CMDy", "detector_init")
    assert len(commands) == 2
    for c in commands:
        assert [c[i + 1] for i, a in enumerate(c) if a == "MODEL.WEIGHTS"] == [
            os.path.join(str(run), "model_final.pth")
        ]


def test_the_best_tube_level_is_computed_again_for_an_extended_curve(tmp_path, monkeypatch):
    """The cached best-of-K level belongs to the final model it was computed with: a curve run
    extended since (another iteration count) is not given the shorter curve's level."""
    from aamn.benchmark import comparison as curves_module
    from aamn.benchmark.methods import config_file
    from aamn.engine import Trainer

    out = tmp_path / "run"
    out.mkdir()
    (out / "compute.json").write_text(json.dumps({"iterations": 10}))
    (out / "model_final.pth").write_bytes(b"")
    cache = out / f"best_tube_{curves_module.VAL}.json"
    cache.write_text(json.dumps({"iterations": 10, "level": {"P@0.5": 91.0}}))
    config = config_file("AAMN")

    def rebuilt(cfg):
        raise RuntimeError("computed again")

    monkeypatch.setattr(Trainer, "build_model", staticmethod(rebuilt))
    assert curves_module.best_tube_cached(str(out), config, []) == {"P@0.5": 91.0}
    (out / "compute.json").write_text(json.dumps({"iterations": 20}))  # the curve went on
    with pytest.raises(RuntimeError, match="computed again"):
        curves_module.best_tube_cached(str(out), config, [])


def test_every_part_of_every_systems_compute_is_counted(tmp_path):
    """The fairness of the comparison's compute, part by part, for every trial of every system
    (hand rules, not the code's): AAMN counts its detector's training and the proposal stage;
    a system started from the detector counts the detector; a system reading flow counts the
    flow; nothing else is added; a system's total is its parts plus its training."""
    from aamn.benchmark import comparison as curves_module

    main_job = tmp_path / "main_job"
    (main_job / "detector").mkdir(parents=True)
    (main_job / "detector" / "compute.json").write_text(
        json.dumps({"train_cpu_s": 500.0, "train_wall_s": 300.0})
    )
    commands = [{"cpu_s": 30.0, "wall_s": 20.0}, {"cpu_s": 10.0, "wall_s": 5.0}]
    flow = {"cpu_s": 40.0, "wall_s": 25.0, "commands": commands}
    stages = {"detector": {"cpu_s": 900.0, "wall_s": 600.0},
              "proposals": {"cpu_s": 70.0, "wall_s": 40.0}, "flow": flow}  # fmt: skip
    (main_job / "main_job_compute.json").write_text(json.dumps(stages))
    reads_flow = {
        "AAMN": lambda trial: trial != "rgb",
        "DynamicFilterSeg": lambda trial: trial != "rgb",
        "CMDy": lambda trial: trial.startswith("two_stream"),
    }
    for method, trials in curves_module.TRIALS.items():
        for trial, overrides in trials.items():
            expected = {}
            if method == "AAMN" or trial == "detector_init":
                expected["detector"] = 500.0  # its training, not the main job's whole stage
            if method == "AAMN":
                expected["proposals"] = 70.0
            if reads_flow[method](trial):
                expected["flow"] = 30.0  # the A2D tree's flow, the stage's first command
            parts = curves_module.fixed_parts(method, str(main_job), overrides, trial=trial)
            assert parts == expected, (method, trial)
    # the chosen trial's total: its parts plus its training
    write_curve(str(tmp_path / "runs" / "curves" / "AAMN" / "base" / "seed1"), [(10, 200.0, 50.0)])
    res = curves_module.collect_curves(str(tmp_path / "runs"), str(main_job))
    assert res["compute"]["AAMN"]["parts"] == {
        "detector": 500.0, "proposals": 70.0, "flow": 30.0, "training": 200.0}  # fmt: skip
    assert res["compute"]["AAMN"]["total_cpu_s"] == pytest.approx(800.0)
    assert res["learning_curves"]["AAMN"][0]["total_cpu_s"] == pytest.approx(800.0)


def test_whole_video_settings_interleaved_best_of_rounds_and_tables(tmp_path):
    """run_whole_video times each system's base config, its chosen trial (the trial's
    initialisation left out) and AAMN's shared model, in rounds that interleave the settings,
    and keeps each setting's fastest run; the main job's stages come from its compute record."""
    from types import SimpleNamespace

    from aamn.benchmark.report import main_job_stages, whole_video_markdown
    from aamn.benchmark.speed import run_whole_video

    main = tmp_path / "main"
    (main / "aamn").mkdir(parents=True)
    (main / "aamn" / "model_final.pth").write_bytes(b"")
    args = SimpleNamespace(repeat=2, video="v.mp4", threads=2, device="cpu",
                           detector_config="d.yaml", detector_weights="d.pth",
                           main_job_output=str(main))  # fmt: skip
    order, seconds = [], iter([2.0, 1.0, 4.0, 3.0, 5.0, 1.5, 0.5, 2.0, 4.0, 2.5, 6.0, 2.0])

    def child(cmd, threads):
        config = cmd[cmd.index("--config") + 1]
        opts = cmd[cmd.index("--opts") + 1 :]
        order.append((os.path.basename(config), tuple(opts), cmd[cmd.index("--weights") + 1]))
        return {"frames": 100, "seconds": next(seconds), "model": 0.5, "proposals": 0.1,
                "flow": 0.2}  # fmt: skip

    chosen = {"AAMN": "detector_init", "CMDy": "two_stream", "DynamicFilterSeg": "base"}
    out = run_whole_video(args, chosen, child=child)
    labels = list(out)
    assert labels == [
        "AAMN (base)",
        "AAMN (detector_init, chosen on val)",
        "DynamicFilterSeg (base)",
        "CMDy (base)",
        "CMDy (two_stream, chosen on val)",
        "AAMN (shared backbone: aamn.yaml, the main job's)",
    ]
    assert order[:6] == order[6:]  # round 2 repeats round 1's order: interleaved
    assert order[1] == ("aamn_separate.yaml", (), "")  # the trial's MODEL.WEIGHTS left out
    assert order[4][1] == ("MODEL.CMDY.STREAMS", "['rgb', 'flow']", "INPUT.FLOW.ENABLED", "True")
    assert order[5] == ("aamn.yaml", (), str(main / "aamn" / "model_final.pth"))
    # the fastest of the two rounds: 2.0 / 0.5 s for the first setting, 1.5 / 2.0 for the last
    assert out["AAMN (base)"]["frames_per_s"] == pytest.approx(100 / 0.5)
    assert out[labels[-1]]["frames_per_s"] == pytest.approx(100 / 1.5)
    ms = out["AAMN (base)"]["ms_per_frame"]
    assert ms["total"] == pytest.approx(5.0) and ms["rest"] == pytest.approx(5.0 - 8.0)
    (main / "main_job_compute.json").write_text(json.dumps({
        "data": {"wall_s": 30.0, "cpu_s": 50.0}, "aamn": {"wall_s": 90.0, "cpu_s": 170.0},
        "cpu_count": 2}))  # fmt: skip
    stages = main_job_stages(str(main))
    assert list(stages) == ["data", "aamn"]
    text = "\n".join(whole_video_markdown({"whole_video": out, "main_job_stages": stages}))
    assert "| AAMN (base) | 200.0 | 5.00 | 5.00 | 1.00 | 2.00 | -3.00 | 0.33x |" in text
    assert "| **total** | **120** (2.0 min) | 220 |" in text
    assert main_job_stages(str(tmp_path / "nothing")) == {}


def test_weak_proposal_runs_commands_and_their_summary(tmp_path, monkeypatch):
    """--margin: each level trains the detector that long (its decay scaled, its box AP on val
    frames), writes its train and val proposals, and trains AAMN on exactly those files,
    evaluated on val; the summary is sorted by recall, with means equal to a hand count, and a
    level without an evaluated seed is left out."""
    from aamn.benchmark import margin

    runs = str(tmp_path / "runs")
    ran = []

    def run(cmd):
        ran.append(cmd)
        out = cmd[cmd.index("OUTPUT_DIR") + 1] if "OUTPUT_DIR" in cmd else None
        if "aamn.cli.prepare_proposals" in cmd:
            folder = cmd[cmd.index("--output-dir") + 1]
            os.makedirs(folder, exist_ok=True)
            for split in (margin.TRAIN, margin.VAL):
                open(os.path.join(folder, f"{split}.pkl"), "w").close()
        elif "--results-json" in cmd:
            os.makedirs(out, exist_ok=True)
            p = 50.0 if "detector_30" in out else 80.0 + int(out[-1])
            with open(cmd[cmd.index("--results-json") + 1], "w") as f:
                json.dump({"segm": {"P@0.5": p, "P@0.7": p - 10, "mean_IoU": p - 5,
                                    "overall_IoU": p - 6}}, f)  # fmt: skip
        else:  # the detector
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "model_final.pth"), "w").close()

    recalls = iter([{"top-1": 10.0, "top-3": 30.0, "top-6": 40.0, "top-20": 60.0},
                    {"top-1": 30.0, "top-3": 80.0, "top-6": 96.0, "top-20": 99.0}])  # fmt: skip
    monkeypatch.setattr(margin, "proposal_recall_of", lambda path: next(recalls))
    margin.run_weak_proposals(runs, [30, 1500], [1, 2], run=run)
    detector, proposals, *aamn = ran[:2] + ran[2:4]
    assert detector[detector.index("SOLVER.MAX_ITER") + 1] == "30"
    assert detector[detector.index("SOLVER.STEPS") + 1] == "(24,)"
    assert detector[detector.index("DATASETS.TEST") + 1] == "('synthetic_a2d_val_frames',)"
    level = margin.level_dir(runs, 30)
    assert proposals[proposals.index("MODEL.WEIGHTS") + 1] == os.path.join(level, "model_final.pth")
    assert proposals.count("--dataset") == 2
    assert len(ran) == 8  # each level: the detector, its proposals, two seeds of AAMN
    first = aamn[0]
    assert first[first.index("DATASETS.PROPOSAL_FILES_TRAIN") + 1] == (
        f"('{os.path.join(level, 'proposals', margin.TRAIN)}.pkl',)"
    )
    assert first[first.index("DATASETS.PROPOSAL_FILES_TEST") + 1] == (
        f"('{os.path.join(level, 'proposals', margin.VAL)}.pkl',)"
    )
    assert first[first.index("DATASETS.TEST") + 1] == "('synthetic_a2d_val',)"
    full = ran[4]
    assert full[full.index("SOLVER.MAX_ITER") + 1] == "1500"
    ran.clear()
    margin.run_weak_proposals(runs, [30, 1500], [1, 2], run=run)
    assert ran == []  # everything made: nothing runs again
    os.makedirs(margin.level_dir(runs, 60))  # no recall, no run: left out
    weak = margin.collect_weak_proposals(runs)
    assert [e["level"] for e in weak] == [30, 1500]
    assert weak[0]["recall"] == 40.0 and weak[0]["AAMN"]["P@0.5"] == 50.0
    assert weak[1]["AAMN_runs"]["P@0.5"] == [81.0, 82.0]
    assert weak[1]["AAMN"]["mean_IoU"] == pytest.approx(76.5)
    result = {"margin": {"weak_proposals": weak}, "val": {"CMDy": {"trial": "two_stream",
              "P@0.5": 45.1, "converged": [True, True]}, "DynamicFilterSeg": {"trial": "wide",
              "P@0.5": 30.0, "converged": [True, False]}},
              "equal_compute": {"CMDy": {"val": {"P@0.5": 36.9}}}}  # fmt: skip
    text = "\n".join(margin.margin_markdown(result))
    assert "| 1,500 iterations | 30.0 | 96.0 | 81.5 ± 0.7 | 76.5 ± 0.7 | 2 | - |" in text
    assert "CMDy (two_stream) 36.9 at equal compute, 45.1 converged" in text
    assert "DynamicFilterSeg (wide) - at equal compute, 30.0 at its latest point, not conv" in text
    assert os.path.isfile(margin.plot_margin(result, str(tmp_path)))

    # --margin-curves: AAMN's curves on each level's own proposals (the level's detector and
    # proposals exist: nothing else runs), the final protocol's trainer with those files last
    trained = []

    def train(runs_, method, trial, seed, max_budgets, out=None, extra=()):
        trained.append((method, trial, seed, max_budgets, out, list(extra)))

    margin.run_weak_proposal_curves(runs, [1500], [1, 2], 4, train=train)
    assert [t[:4] for t in trained] == [("AAMN", "base", 1, 4), ("AAMN", "base", 2, 4)]
    full = margin.level_dir(runs, 1500)
    assert trained[0][4] == margin.weak_curve_dir(runs, 1500, 1)
    assert trained[0][5] == [
        "DATASETS.PROPOSAL_FILES_TRAIN",
        f"('{os.path.join(full, 'proposals', margin.TRAIN)}.pkl',)",
        "DATASETS.PROPOSAL_FILES_TEST",
        f"('{os.path.join(full, 'proposals', margin.VAL)}.pkl',)",
    ]
    # seed 1 converged and decayed, seed 2 still at its constant rate: only seed 1 counts
    write_curve(margin.weak_curve_dir(runs, 1500, 1), [(10, 1.0, 84.0), (20, 2.0, 88.0)], decayed=1)
    write_curve(margin.weak_curve_dir(runs, 1500, 2), [(10, 1.0, 70.0)])
    conv = margin.collect_weak_proposals(runs)[1]["converged"]
    assert conv["seeds"] == [1] and conv["iterations"] == [20] and conv["AAMN"]["P@0.5"] == 88.0
    assert margin.collect_weak_proposals(runs)[0]["converged"] is None
    text = "\n".join(margin.margin_markdown({"margin": {"weak_proposals": [
        margin.collect_weak_proposals(runs)[1]]}}))  # fmt: skip
    assert "| 81.5 ± 0.7 | 76.5 ± 0.7 | 2 | 88.0 (20 it) |" in text


def test_the_lead_split_between_the_proposals_and_the_rest_is_a_hand_count(tmp_path, monkeypatch):
    """margin.lead_split: AAMN on the weak-proposal levels read at an A2D-like recall (linear
    between the two levels around it) against the full detector's level gives the proposals'
    share; the rest of each system's lead is what AAMN keeps at that recall.  One budget: the
    first evaluations' means over seeds; final: the val levels (a system not converged is said
    so).  Without levels around the recall there is no split."""
    from aamn.benchmark import margin

    def level(recall, one_budget, final):
        return {"recall": recall, "AAMN": {"P@0.5": one_budget},
                "converged": {"AAMN": {"P@0.5": final}} if final is not None else None}  # fmt: skip

    def first(*values):
        return {str(i): [{"val": {"P@0.5": v}}, {"val": {"P@0.5": v + 5}}]
                for i, v in enumerate(values, 1)}  # fmt: skip

    weak = [level(80.0, 70.0, 80.0), level(60.0, 50.0, 60.0), level(96.0, 81.0, 88.0),
            level(90.0, 75.0, None)]  # fmt: skip
    result = {
        "learning_curve_runs": {"AAMN": first(80.0, 82.0), "CMDy": first(50.0, 54.0)},
        "val": {"AAMN": {"P@0.5": 90.0, "converged": [True, True]},
                "CMDy": {"P@0.5": 60.0, "converged": [True, False]}},
    }  # fmt: skip
    # the results JSON's margin entries, the weak-proposal levels as read from the runs
    monkeypatch.setattr(margin, "collect_weak_proposals", lambda runs: weak)
    split = margin.add_margin(result, str(tmp_path))["margin"]["lead_split"]
    assert result["margin"]["weak_proposals"] == weak
    one = split["one_budget"]
    # at 69 %: 50 + (70 - 50) * 9 / 20 = 59; the full detector (96 %) 81: 22 from the proposals
    assert one["AAMN_at_recall"] == pytest.approx(59.0)
    assert one["AAMN_full"] == 81.0 and one["from_proposals"] == pytest.approx(22.0)
    assert one["AAMN"] == pytest.approx(81.0)  # (80 + 82) / 2
    assert one["systems"]["CMDy"]["lead"] == pytest.approx(81.0 - 52.0)
    assert one["systems"]["CMDy"]["lead_at_recall"] == pytest.approx(29.0 - 22.0)
    final = split["final"]  # the converged curves: 60 + 20 * 9 / 20 = 69, 88 - 69 = 19
    assert final["from_proposals"] == pytest.approx(19.0)
    assert final["systems"]["CMDy"] == pytest.approx(
        {"P@0.5": 60.0, "lead": 30.0, "lead_at_recall": 11.0, "converged": False})  # fmt: skip
    text = "\n".join(margin.lead_split_markdown(result))
    assert "AAMN's lead at one budget" in text and "over CMDy 29.0 points, 7.0 of them" in text
    assert "over CMDy 30.0 points, 11.0 of them left at that recall (CMDy at its latest" in text
    # the full detector's curve not converged: no final split, though 60 % and 80 % are
    result["margin"]["weak_proposals"] = weak[:2] + [level(96.0, 81.0, None)]
    assert set(margin.lead_split(result)) == {"recall", "one_budget"}
    # no level below the recall: no split
    result["margin"]["weak_proposals"] = [w for w in weak if w["recall"] > 70]
    assert margin.lead_split(result) == {}


def test_proposal_recall_is_a_hand_count():
    """Top-k recall of the annotated instances (each frame once) at IoU 0.5: frame 1's two
    actors are covered by its 1st and 3rd proposals, frame 2's one actor by none; a record
    repeated for another query counts once, a frame without proposals is skipped."""
    from aamn.cli.prepare_proposals import proposal_recall
    from aamn.data.proposals import proposal_id

    a = {"bbox": [0, 0, 10, 10]}
    b = {"bbox": [20, 20, 40, 40]}
    records = [
        {"video_id": "v", "frame_idx": 1, "annotations": [a, b]},
        {"video_id": "v", "frame_idx": 1, "annotations": [a, b]},  # another query
        {"video_id": "v", "frame_idx": 2, "annotations": [a]},
        {"video_id": "w", "frame_idx": 1, "annotations": [a]},  # no proposals: not counted
    ]
    boxes = {
        proposal_id("v", 1): [[0, 0, 10, 11], [50, 50, 60, 60], [21, 21, 40, 40]],
        proposal_id("v", 2): [[5, 5, 15, 15]],  # IoU 25 / 175 with a
    }
    assert proposal_recall(records, boxes, ks=(1, 3)) == {1: 1 / 3, 3: 2 / 3}


def test_proposal_conditioned_ranking_and_run(tmp_path_factory, tmp_path):
    """A comparison system ranks AAMN's tubes by its mean probability inside each key-frame box
    (hand counts), its own mask is cut to the chosen box; a run on the square tree with tiny
    untrained models scores every record, and the system's "own mask" is its own evaluation."""
    import numpy as np
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from aamn.benchmark import margin
    from aamn.config import get_aamn_cfg
    from aamn.engine import Trainer
    from aamn.evaluation.metrics import compute_rvos_metrics
    from aamn.modeling import StreamCheckpointer
    from aamn.modeling.checkpoint import build_trained_model
    from fixtures import register_square
    from modeling_helpers import baseline_opts, make_vocab, seed_all, tiny_cfg

    probs = np.zeros((10, 20), np.float32)
    probs[2:6, 4:10] = 1.0
    boxes = [[4, 2, 10, 6], [0, 0, 20, 10], [30, 8, 40, 9], [5, 3, 7, 5]]
    ranks = margin.rank_tubes(probs, boxes)
    assert ranks == [1.0, pytest.approx(24 / 200), 0.0, 1.0]  # the third lies outside the map
    # the soft IoU with the box: the 2 x 2 box inside the mask covers 4 of its 24 pixels
    ranks = margin.rank_tubes(probs, boxes, "box IoU")
    assert ranks == pytest.approx([1.0, 24 / 200, 0.0, 4 / 24])
    with pytest.raises(ValueError, match="unknown ranking rule 'max'"):
        margin.rank_tubes(probs, boxes, "max")
    inside = margin.mask_inside_box(np.ones((10, 20), bool), [4.5, 2, 10, 6.2])
    assert inside.sum() == 6 * 5 and inside[2:7, 4:10].all()

    _, name, _, _ = register_square(tmp_path_factory, (2, 4))
    vocab = str(tmp_path / "vocab.json")
    make_vocab().save(vocab)
    specs = {}
    for arch, cfg in (("AAMN", tiny_cfg(vocab)),
                      ("CMDy", get_aamn_cfg(opts=baseline_opts("CMDy", vocab)))):  # fmt: skip
        seed_all(3)
        folder = tmp_path / arch
        StreamCheckpointer(build_model(cfg), str(folder)).save("model")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.LANGUAGE.VOCAB_FILE = ""
        (folder / "config.yaml").write_text(cfg.dump())
        specs[arch] = (str(folder / "config.yaml"), ["MODEL.WEIGHTS", str(folder / "model.pth")])
    res = margin.proposal_conditioned(specs["AAMN"], {"CMDy": specs["CMDy"]}, dataset=name)
    records = DatasetCatalog.get(name)
    assert res["records"] == len(records) == 2
    assert set(res["CMDy"]) == {"AAMN mask", "own mask in the box", "own mask",
                                "same tube as AAMN", "box IoU rule"}  # fmt: skip
    assert set(res["CMDy"]["box IoU rule"]) == {"AAMN mask", "own mask in the box",
                                                "same tube as AAMN"}  # fmt: skip
    assert res["CMDy"]["same tube as AAMN"] in (0.0, 50.0, 100.0)
    # "own mask": CMDy's masks as its own evaluation scores them
    cfg = get_aamn_cfg(specs["CMDy"][0], [*specs["CMDy"][1], "DATASETS.TEST", f"('{name}',)"])
    model, _, _ = build_trained_model(cfg)
    from pycocotools import mask as mask_util

    own, gts = [], []
    for record, inputs in zip(records, Trainer.build_test_loader(cfg, name)):
        own.append(model(inputs)[0]["instances"].pred_masks[0].numpy())
        ref = next(a for a in record["annotations"] if a["instance_id"] == record["instance_id"])
        gts.append(mask_util.decode(ref["segmentation"]).astype(bool))
    assert res["CMDy"]["own mask"] == compute_rvos_metrics(own, gts)
    # a system that always prefers the last tube: AAMN's masks of that tube, and "same tube" where
    # AAMN itself chose it
    margin_ranks = margin.rank_tubes
    try:  # the mean rule prefers the last tube, the box IoU rule the first
        margin.rank_tubes = lambda probs, boxes, rule: (
            [0.0] * (len(boxes) - 1) + [1.0] if rule == "mean" else [1.0] + [0.0] * (len(boxes) - 1)
        )
        res = margin.proposal_conditioned(specs["AAMN"], {"CMDy": specs["CMDy"]}, dataset=name)
    finally:
        margin.rank_tubes = margin_ranks
    cfg = get_aamn_cfg(specs["AAMN"][0], [*specs["AAMN"][1], "DATASETS.TEST", f"('{name}',)"])
    aamn, _, _ = build_trained_model(cfg)
    last, own_last, first, own_first = [], [], [], []
    for inputs in Trainer.build_test_loader(cfg, name):
        free = aamn(inputs)[0]
        k = len(free["tube_scores"]) - 1
        last.append(aamn([{**inputs[0], "tube_choice": k}])[0]["instances"].pred_masks[0].numpy())
        own_last.append(free["tube_index"] == k)
        first.append(aamn([{**inputs[0], "tube_choice": 0}])[0]["instances"].pred_masks[0].numpy())
        own_first.append(free["tube_index"] == 0)
    assert not all(own_last)  # the case where AAMN's own masks would not do
    assert res["CMDy"]["AAMN mask"] == compute_rvos_metrics(last, gts)
    assert res["CMDy"]["same tube as AAMN"] == 100.0 * sum(own_last) / len(gts)
    box_iou = res["CMDy"]["box IoU rule"]
    assert box_iou["AAMN mask"] == compute_rvos_metrics(first, gts)
    assert box_iou["same tube as AAMN"] == 100.0 * sum(own_first) / len(gts)


def test_proposal_conditioned_uses_the_one_budget_models_of_the_chosen_trials(
    tmp_path, monkeypatch
):
    """--proposal-conditioned: AAMN of the weak-proposal runs' main level with its val proposals,
    each comparison system's chosen trial (its own overrides, its initialisation left out) at the
    checkpoint of its first budget; a missing model is an error naming the command."""
    from aamn.benchmark import margin
    from aamn.benchmark.comparison import budget_of, curve_dir

    runs = str(tmp_path)
    chosen = {"AAMN": "wide", "CMDy": "two_stream", "DynamicFilterSeg": "detector_init"}
    with pytest.raises(FileNotFoundError, match="--margin-iterations 1500"):
        margin.run_proposal_conditioned(runs, chosen)
    main = margin.level_dir(runs, 1500)
    os.makedirs(os.path.join(main, "aamn", "seed1"))
    open(os.path.join(main, "aamn", "seed1", "model_final.pth"), "w").close()
    with pytest.raises(FileNotFoundError, match="--trials two_stream --seeds 1 --max-budgets 1"):
        margin.run_proposal_conditioned(runs, chosen)
    for method, trial in (("CMDy", "two_stream"), ("DynamicFilterSeg", "detector_init")):
        folder = curve_dir(runs, method, trial, 1)
        os.makedirs(folder)
        open(os.path.join(folder, f"model_{budget_of(method) - 1:07d}.pth"), "w").close()
    seen = {}

    def conditioned(aamn, systems, limit=0):
        seen.update(aamn=aamn, systems=systems)
        return {"records": 3, "AAMN": {"P@0.5": 80.0}}

    monkeypatch.setattr(margin, "proposal_conditioned", conditioned)
    assert margin.collect_proposal_conditioned(runs) is None
    margin.run_proposal_conditioned(runs, chosen)
    # kept on disk, so that a results file rebuilt without --proposal-conditioned keeps it
    assert margin.collect_proposal_conditioned(runs) == {"records": 3, "AAMN": {"P@0.5": 80.0}}
    assert seen["aamn"][1][1].endswith(os.path.join("detector_1500", "aamn", "seed1",
                                                    "model_final.pth"))  # fmt: skip
    assert "synthetic_a2d_val.pkl" in seen["aamn"][1][3]
    cmdy = seen["systems"]["CMDy (two_stream)"][1]
    assert cmdy[:4] == ["MODEL.CMDY.STREAMS", "['rgb', 'flow']", "INPUT.FLOW.ENABLED", "True"]
    assert cmdy[-2:] == [
        "MODEL.WEIGHTS",
        os.path.join(
            curve_dir(runs, "CMDy", "two_stream", 1), f"model_{budget_of('CMDy') - 1:07d}.pth"
        ),
    ]
    dfs = seen["systems"]["DynamicFilterSeg (detector_init)"][1]
    assert dfs.count("MODEL.WEIGHTS") == 1  # the trial's initialisation left out
    table = "\n".join(margin.conditioned_markdown({"margin": {"proposal_conditioned": {
        "records": 10, "AAMN": {"P@0.5": 80.0, "mean_IoU": 70.0},
        "CMDy (two_stream)": {k: {"P@0.5": p, "mean_IoU": p - 10} for k, p in
                              (("own mask", 40.0), ("AAMN mask", 75.0),
                               ("own mask in the box", 50.0))} | {"same tube as AAMN": 90.0},
    }}}))  # fmt: skip
    assert "| CMDy (two_stream) | 40.0 / 30.0 | 75.0 / 65.0 | 50.0 / 40.0 | 90.0 |" in table


def test_proposal_conditioned_final_uses_the_final_models_of_the_chosen_trials(
    tmp_path, monkeypatch
):
    """--proposal-conditioned final: every system's chosen trial at the final model of its seed-1
    curve (AAMN with its trial's config and the val proposals its curve was evaluated with); a
    curve that is not final (no decay, short of its last budget) is an error naming the
    command, and the result is kept in its own file beside the one-budget models' one."""
    from aamn.benchmark import margin
    from aamn.benchmark.comparison import curve_dir

    runs = str(tmp_path)
    chosen = {"AAMN": "detector_init", "CMDy": "two_stream"}
    seen = {}

    def conditioned(aamn, systems, limit=0):
        seen.update(aamn=aamn, systems=systems)
        return {"records": 3, "AAMN": {"P@0.5": 87.0}}

    monkeypatch.setattr(margin, "proposal_conditioned", conditioned)
    with pytest.raises(ValueError, match="expected one of"):
        margin.run_proposal_conditioned(runs, chosen, models="last")

    def point(iterations, decayed):
        p = {"iterations": iterations, "train_cpu_s": 1.0, "results": {"segm": {"P@0.5": 1.0}}}
        return p | ({"lr_factor": 0.1} if decayed else {})

    for method, trial in chosen.items():
        folder = curve_dir(runs, method, trial, 1)
        os.makedirs(folder)
        open(os.path.join(folder, "model_final.pth"), "w").close()
        with open(os.path.join(folder, "learning_curve.json"), "w") as f:
            json.dump([point(10, False), point(20, False)], f)  # two budgets, no decay
    with pytest.raises(FileNotFoundError, match="--methods AAMN --trials detector_init --seeds 1`"):
        margin.run_proposal_conditioned(runs, chosen, models="final")
    for method, trial in chosen.items():
        with open(os.path.join(curve_dir(runs, method, trial, 1), "learning_curve.json"), "w") as f:
            json.dump([point(10, False), point(20, True)], f)  # its decay ran: final
    margin.run_proposal_conditioned(runs, chosen, models="final")
    config, opts = seen["aamn"]
    assert config.endswith("aamn_separate.yaml")  # detector_init's config, its init left out
    final = os.path.join(curve_dir(runs, "AAMN", "detector_init", 1), "model_final.pth")
    assert opts == ["MODEL.WEIGHTS", final]
    cmdy = seen["systems"]["CMDy (two_stream)"][1]
    assert cmdy[:4] == ["MODEL.CMDY.STREAMS", "['rgb', 'flow']", "INPUT.FLOW.ENABLED", "True"]
    assert cmdy[-1] == os.path.join(curve_dir(runs, "CMDy", "two_stream", 1), "model_final.pth")
    assert margin.collect_proposal_conditioned(runs, "final") == {
        "records": 3, "AAMN": {"P@0.5": 87.0}, "AAMN trial": "detector_init"}  # fmt: skip
    assert margin.collect_proposal_conditioned(runs) is None  # the one-budget file is apart


def test_stream_diagnosis_is_collected_with_its_mask_sizes(tmp_path, monkeypatch):
    """collect_stream_diagnosis: each variant's P@0.5 and mean IoU, and its masks' box areas over
    the ground truth's (hand counts: 0.5, 0.4 and 1.0 of a 10 x 10 box); the flow statistics of a
    registered data set computed once, then read from the file kept beside the runs."""
    from detectron2.data import DatasetCatalog

    from aamn.benchmark import margin

    folder = tmp_path / "margin" / "cmdy_streams" / "two_stream_8800it" / "jhmdb" / "fused"
    (folder / "inference" / "jhmdb").mkdir(parents=True)
    (folder / "eval.json").write_text('{"segm": {"P@0.5": 79.4, "mean_IoU": 59.4, "mAP": 1.0}}')
    gt = [0.0, 0.0, 10.0, 10.0]
    rows = [{"box": b, "gt_box": gt} for b in ([0, 0, 5, 10], [2, 0, 6, 10], [0, 0, 10, 10])]
    (folder / "inference" / "jhmdb" / "rvos_per_sample.json").write_text(json.dumps(rows))
    assert margin.mask_box_ratios(rows) == [0.5, 0.4, 1.0]
    got = margin.collect_stream_diagnosis(str(tmp_path))
    entry = got["models"]["two_stream_8800it"]["jhmdb"]["fused"]
    assert entry == {"P@0.5": 79.4, "mean_IoU": 59.4, "box_ratio_median": 0.5,
                     "below_half_box": pytest.approx(100 / 3)}  # fmt: skip
    assert got["flow_in_boxes"] == {}  # "jhmdb" is no registered data set
    # the sizes are kept beside eval.json: a report without the per-sample file (the runs'
    # records) gives the same entry; a new evaluation's sizes are computed again
    os.remove(folder / "inference" / "jhmdb" / "rvos_per_sample.json")
    assert margin.collect_stream_diagnosis(str(tmp_path))["models"] == got["models"]
    (folder / "eval.json").write_text('{"segm": {"P@0.5": 80.0, "mean_IoU": 60.0}}')
    (folder / "inference" / "jhmdb" / "rvos_per_sample.json").write_text(json.dumps(rows[2:]))
    again = margin.collect_stream_diagnosis(str(tmp_path))["models"]["two_stream_8800it"]
    assert again["jhmdb"]["fused"] == {"P@0.5": 80.0, "mean_IoU": 60.0, "box_ratio_median": 1.0,
                                       "below_half_box": 0.0}  # fmt: skip
    computed = []
    monkeypatch.setattr(margin, "flow_in_boxes",
                        lambda d: computed.append(d) or {"inside": 1.5, "frames": 2})  # fmt: skip
    DatasetCatalog.register("test_diagnosis_set", list)
    try:
        other = folder.parent.parent / "test_diagnosis_set" / "fused"
        other.mkdir(parents=True)
        (other / "eval.json").write_text('{"segm": {"P@0.5": 1.0, "mean_IoU": 2.0}}')
        for _ in range(2):
            got = margin.collect_stream_diagnosis(str(tmp_path))
            assert got["flow_in_boxes"] == {"test_diagnosis_set": {"inside": 1.5, "frames": 2}}
    finally:
        DatasetCatalog.remove("test_diagnosis_set")
    assert computed == ["test_diagnosis_set"]  # once: the second report read the kept file
    kept = json.loads((tmp_path / "margin" / "cmdy_streams" / "flow_in_boxes.json").read_text())
    assert kept == {"test_diagnosis_set": {"inside": 1.5, "frames": 2}}


def test_flow_in_boxes_is_a_hand_count(tmp_path):
    """flow_in_boxes: the flow's magnitude inside the annotated boxes and outside them (a flow of
    (3, 4) pixels, magnitude 5, in one 4 x 4 box of an 8 x 8 frame; none elsewhere; quantised with
    bound 20, so read back within a quantisation step)."""
    import numpy as np
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from aamn.benchmark.margin import flow_in_boxes
    from aamn.data.flow import write_video_flow

    flow = np.zeros((2, 8, 8, 2), np.float32)
    flow[1, 2:6, 2:6] = (3.0, 4.0)
    write_video_flow(str(tmp_path / "flow" / "v"), flow, 20.0)
    name = "test_flow_in_boxes"
    records = [{"video_id": "v", "frame_idx": 2, "annotations": [{"bbox": [2, 2, 6, 6]}]},
               {"video_id": "v", "frame_idx": 2, "annotations": []}]  # fmt: skip
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(root=str(tmp_path))
    try:
        got = flow_in_boxes(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert got["frames"] == 1
    assert got["inside"] == pytest.approx(5.0, abs=0.15) and got["outside"] == pytest.approx(0.0)


def _points(rows, decayed=0):
    """Curve points [(iterations, total_cpu_s, val P@0.5)], the last ``decayed`` decayed."""
    out = [{"iterations": i, "train_cpu_s": c, "total_cpu_s": c, "val": {"P@0.5": p}}
           for i, c, p in rows]  # fmt: skip
    for q in out[len(out) - decayed :]:
        q["decayed"] = True
    return out


def test_equal_compute_interpolates_each_curve_at_the_same_cpu_seconds():
    """The level is the least compute at which every curve has been evaluated (the largest first
    point, CMDy seed 2's 130); each curve is read there, interpolated between the evaluations
    around it (hand counts); a curve that has not reached it is None, a final curve that ended
    below it stands at its end."""
    from aamn.benchmark.comparison import _equal_compute, value_at

    aamn = {1: _points([(10, 100.0, 80.0), (20, 200.0, 90.0)]), 2: _points([(10, 120.0, 82.0)])}
    cmdy = {1: _points([(5, 60.0, 30.0), (10, 160.0, 40.0)]),  # 30 + 0.7 * 10
            2: _points([(5, 130.0, 20.0)])}  # fmt: skip
    final = _points([(5, 50.0, 10.0), (10, 90.0, 12.0), (15, 110.0, 14.0)], decayed=1)
    assert value_at(final, 120.0, "P@0.5") == 14.0  # ended (decayed) before the level
    assert value_at(final[:2], 120.0, "P@0.5") is None  # still to be extended
    assert value_at(cmdy[1], 50.0, "P@0.5") is None  # starts above the level
    eq = _equal_compute({"AAMN": aamn, "CMDy": cmdy, "DynamicFilterSeg": {1: final}})
    assert {m: e["total_cpu_s"] for m, e in eq.items()} == {
        "AAMN": 130.0, "CMDy": 130.0, "DynamicFilterSeg": 130.0}  # fmt: skip
    assert eq["AAMN"]["val"]["P@0.5"] == pytest.approx(83.0)  # 80 + 0.3 * 10; seed 2 not reached
    assert eq["AAMN"]["points"][1] is None
    assert eq["CMDy"]["val"]["P@0.5"] == pytest.approx((37.0 + 20.0) / 2)
    assert eq["CMDy"]["points"][0] == [{"iterations": 5, "total_cpu_s": 60.0},
                                       {"iterations": 10, "total_cpu_s": 160.0}]  # fmt: skip
    assert eq["CMDy"]["points"][1] == [{"iterations": 5, "total_cpu_s": 130.0}]
    assert eq["DynamicFilterSeg"]["val"]["P@0.5"] == 14.0


def test_trials_are_ranked_at_their_constant_rate_and_a_third_seed_is_asked_when_needed():
    """Decayed points compare with none; the trials are compared where the shortest curve that
    has not converged ends (a converged one stands at its last constant point); the chosen
    trial's two seeds differing by more than its lead ask for a third."""
    from aamn.benchmark.comparison import TrialRuns, choose_trial, finished_points, seeds_wanted

    def trial(name, curves):
        return TrialRuns({"trial": name}, {}, curves, {}, finished_points(curves), [])

    # a: converged at 30 (gains under 2), then decayed to 50 and 40 at 40; b: rising to 40
    a = trial(
        "a",
        {
            1: _points([(10, 1, 40.0), (20, 2, 41.0), (30, 3, 41.5), (40, 4, 50.0)], 1),
            2: _points([(10, 1, 30.0), (20, 2, 31.0), (30, 3, 31.0), (40, 4, 40.0)], 1),
        },
    )
    b = trial(
        "b",
        {
            1: _points([(10, 1, 30.0), (20, 2, 35.0), (30, 3, 40.0), (40, 4, 42.0)]),
            2: _points([(10, 1, 30.0), (20, 2, 34.0), (30, 3, 38.0), (40, 4, 40.0)]),
        },
    )
    chosen = choose_trial([a, b])  # at 40: a's decayed 45 would win; its constant 36.25 does not
    assert a.entry["chosen_on"] == {"iterations": 40, "seeds": [1, 2], "P@0.5": 36.25}
    assert b.entry["chosen_on"]["P@0.5"] == 41.0 and chosen is b
    # b's seeds end 2 apart, its lead is 4.75: two seeds are enough
    assert seeds_wanted(b, [a, b]) == {"spread": 2.0, "lead": 4.75, "seeds": 2}
    # a's seeds end 10 apart (50 and 40), more than its lead: a third seed
    assert seeds_wanted(a, [a, b])["seeds"] == 3


def test_curve_commands_of_the_final_protocol(tmp_path):
    """Every curve has room for its decay after its last budget, the stop rule and the decay in
    its options, and the shared trial trains the main job's config."""
    from aamn.benchmark import comparison as c

    cmd = c.curve_command("AAMN", "shared", 1, str(tmp_path / "run"), 4)
    config = cmd[cmd.index("--config-file") + 1]
    assert config.endswith(os.path.join("synthetic", "aamn.yaml"))
    budget = c.budget_of("AAMN", "shared")
    assert cmd[cmd.index("SOLVER.MAX_ITER") + 1] == str(5 * budget)
    for key, value in zip(c.STOP[::2], c.STOP[1::2]):
        assert cmd[cmd.index(key) + 1] == value
    assert c.STOP_RULE[0] >= 2.0 and c.DECAY == (0.1, 1)
    other = c.curve_command("CMDy", "two_stream_stride8", 1, str(tmp_path / "run2"), 4)
    assert other[other.index("--config-file") + 1].endswith("cmdy.yaml")
    assert other[other.index("MODEL.CLIP_ENCODER.IN_FEATURE") + 1] == "res3"
    assert other[other.index("MODEL.CMDY.STREAMS") + 1] == "['rgb', 'flow']"
    # four checkpoints a budget, the last at its evaluation (the first-budget models' file)
    period = int(other[other.index("SOLVER.CHECKPOINT_PERIOD") + 1])
    assert period * 4 == c.budget_of("CMDy") and c.checkpoint_period(2201) == 2201


def test_data_scale_runs_commands_and_their_summary(tmp_path, monkeypatch):
    """--data-scale 2: a missing draw is an error naming the command that writes it; then the
    scale's detector trains on both training sets, its proposals cover them and val, and every
    chosen trial's curve trains on both sets (AAMN on the scale's proposal files, the shared
    model from the scale's detector); the summary puts each scale beside the comparison's own
    curve, with AAMN's lead a hand count."""
    from aamn.benchmark import data_scale as ds
    from aamn.data.datasets.builtin import register_all_synthetic, register_synthetic_draws
    from aamn.data.synthetic import generate
    from aamn.utils.io import datasets_root, synthetic_root

    root, runs = tmp_path / "datasets", str(tmp_path / "runs")
    chosen = {"AAMN": "shared", "CMDy": "base"}  # CMDy's base reads no flow
    generate(str(root / "synthetic"), "tiny", seed=0, workers=1)
    register_all_synthetic(str(root / "synthetic"))
    register_synthetic_draws(str(root))
    try:
        with pytest.raises(FileNotFoundError, match="prepare_synthetic.py --seed 1"):
            ds.run_data_scale(runs, [2], chosen, run=lambda cmd: None)
        generate(str(root / "synthetic_seed1"), "tiny", seed=1, workers=1)
        with pytest.raises(FileNotFoundError, match="prepare_flow.py --dataset-root"):
            ds.run_data_scale(runs, [2], {"AAMN": "shared"}, run=lambda cmd: None)
        tree = root / "synthetic_seed1" / "a2d_sentences"
        os.makedirs(tree / "flow")
        (tree / "flow" / ".complete").write_text("")
        ran, curves = [], []

        def run(cmd):
            ran.append(cmd)
            if "aamn.cli.prepare_proposals" in cmd:
                folder = cmd[cmd.index("--output-dir") + 1]
                os.makedirs(folder, exist_ok=True)
                for i, arg in enumerate(cmd):
                    if arg == "--dataset":
                        open(os.path.join(folder, f"{cmd[i + 1]}.pkl"), "w").close()
            else:
                out = cmd[cmd.index("OUTPUT_DIR") + 1]
                os.makedirs(out, exist_ok=True)
                open(os.path.join(out, "model_final.pth"), "w").close()
            return {"cpu_s": 7.0, "wall_s": 5.0}

        def train_curve(runs_, method, trial, seed, budgets, main_job, out, extra):
            curves.append((method, trial, out, list(extra)))
            if not os.path.isdir(out):  # (the real one skips a finished curve): AAMN's decayed
                p = 60.0 if method == "AAMN" else 30.0
                write_curve(out, [(10, 50.0, p - 5), (20, 100.0, p)], decayed=int(method == "AAMN"))

        monkeypatch.setattr(ds, "train_curve", train_curve)
        ds.run_data_scale(runs, [2], chosen, run=run)
        train = "('synthetic_a2d_train', 'synthetic_seed1_a2d_train')"
        detector, proposals = ran
        # the detector trains on the annotated frames of both training sets, names registered
        frames = detector[detector.index("DATASETS.TRAIN") + 1]
        assert frames == "('synthetic_a2d_train_frames', 'synthetic_seed1_a2d_train_frames')"
        from detectron2.data import DatasetCatalog

        assert set(ast.literal_eval(frames)) <= set(DatasetCatalog.list())
        assert [proposals[i + 1] for i, a in enumerate(proposals) if a == "--dataset"] == [
            "synthetic_a2d_train", "synthetic_seed1_a2d_train", "synthetic_a2d_val"]  # fmt: skip
        scale = ds.scale_dir(runs, 2)
        (method, trial, out, extra), cmdy = curves
        assert out == os.path.join(scale, "curves", "AAMN", "shared", "seed1")
        assert extra[extra.index("DATASETS.TRAIN") + 1] == train
        files = extra[extra.index("DATASETS.PROPOSAL_FILES_TRAIN") + 1]
        assert files == repr(
            tuple(
                os.path.join(scale, "proposals", f"{d}.pkl")
                for d in ("synthetic_a2d_train", "synthetic_seed1_a2d_train")
            )
        )
        assert extra[extra.index("MODEL.WEIGHTS") + 1] == os.path.join(
            scale, "detector", "model_final.pth")  # fmt: skip
        assert cmdy[3] == ["DATASETS.TRAIN", train]
        ran.clear()
        ds.run_data_scale(runs, [2], chosen, run=run)
        assert ran == []  # the detector and proposals are made once
        own = {"AAMN": {"trial": "shared", "points": [
                   {"iterations": 5, "train_cpu_s": 0.5, "val": {"P@0.5": 45.0}},
                   {"iterations": 10, "train_cpu_s": 1.0, "total_cpu_s": 1001.0,
                    "val": {"P@0.5": 50.0}, "decayed": True}]},
               "CMDy": {"trial": "base", "points": [
                   {"iterations": 5, "train_cpu_s": 0.5, "val": {"P@0.5": 35.0}},
                   {"iterations": 10, "train_cpu_s": 1.0, "val": {"P@0.5": 40.0},
                    "decayed": True}]}}  # fmt: skip
        main_job = tmp_path / "main_job"
        main_job.mkdir()
        (main_job / "main_job_compute.json").write_text(json.dumps({
            "detector": {"cpu_s": 900.0, "wall_s": 600.0},
            "proposals": {"cpu_s": 70.0, "wall_s": 40.0}, "flow": {"cpu_s": 30.0}}))  # fmt: skip
        (tmp_path / "runs" / "data_scale" / "x2" / "detector" / "compute.json").write_text(
            json.dumps({"train_cpu_s": 300.0}))  # fmt: skip
        rows = ds.collect_data_scale(runs, own, str(main_job))
        one, videos = ds.train_videos(1), ds.train_videos(2)  # the benchmark's, and the draw's too
        assert videos == 2 * one > 0
        assert [(r["train_videos"], r["val"]["P@0.5"]) for r in rows["AAMN"]] == [
            (one, 50.0), (videos, 60.0)]  # fmt: skip
        # counted once and kept beside the scale's runs: the draws are not needed again
        kept = json.loads(
            (tmp_path / "runs" / "data_scale" / "x2" / "train_videos.json").read_text()
        )
        assert kept["train_videos"] == videos
        info = root / "synthetic_seed1" / "synthetic_info.json"
        os.rename(info, str(info) + ".away")
        assert ds.collect_data_scale(runs, own, str(main_job)) == rows
        os.rename(str(info) + ".away", info)
        # the scale's detector (300) and proposals (7), the main job's flow (30), training 100
        assert rows["AAMN"][1]["total_cpu_s"] == pytest.approx(437.0)
        # at 1x the comparison's own curve, its fixed parts counted as in its points
        assert rows["AAMN"][0]["total_cpu_s"] == pytest.approx(1001.0)
        # CMDy's scale curve is still at its constant rate: its point is shown, no lead taken
        assert [r["final"] for r in rows["CMDy"]] == [True, False]
        assert ds.mean_gap(rows) == {one: {"CMDy": 10.0}}
        text = "\n".join(ds.data_scale_markdown({"margin": {"data_scale": rows}}))
        assert f"| system | {one} training videos | {videos} training videos |" in text
        assert (
            "| CMDy (base) | 40.0 / - (10 it, not converged) | 30.0 / 15.0 (20 it, in progress) |"
            in text
        )
        assert "| AAMN's lead over CMDy (P@0.5) | 10.0 | - |" in text
        rows["CMDy"][1]["final"] = True  # at its largest budget
        assert ds.mean_gap(rows) == {one: {"CMDy": 10.0}, videos: {"CMDy": 30.0}}
    finally:
        register_synthetic_draws(datasets_root())
        register_all_synthetic(synthetic_root())


def test_a_curve_is_finished_after_its_decay_or_at_its_largest_budget(tmp_path):
    """``curve_finished`` (whether ``train_curve`` trains again): a curve that ran its decayed
    budget, or reached ``max_budgets`` at its constant rate, with its model_final; not one still
    rising below them, nor one without model_final."""
    from aamn.benchmark.comparison import curve_finished

    rising = str(tmp_path / "rising")
    write_curve(rising, [(10, 1.0, 30.0), (20, 2.0, 34.0)])
    open(os.path.join(rising, "model_final.pth"), "w").close()
    assert not curve_finished(rising, 3, 10) and curve_finished(rising, 2, 10)
    decayed = str(tmp_path / "decayed")
    write_curve(decayed, [(10, 1.0, 30.0), (20, 2.0, 30.5), (30, 3.0, 30.2), (40, 4.0, 33.0)],
                decayed=1)  # fmt: skip
    assert not curve_finished(decayed, 10, 10)  # no model_final yet
    open(os.path.join(decayed, "model_final.pth"), "w").close()
    assert curve_finished(decayed, 10, 10)


def test_the_model_speed_of_the_compared_trials(monkeypatch, capsys):
    """The speed worker builds a trial's own model (CMDy's wide trial: more parameters than its
    config), without the whole video; run_speed times each system's config, then each chosen
    trial that is not a config, as rows of their own in the speed table."""
    import io
    from types import SimpleNamespace

    from aamn.benchmark import speed as sp
    from aamn.benchmark.report import markdown

    def worker(*argv):
        sp._main(["CMDy", *argv, "--iters", "1", "--repeat", "1", "--threads", "1"])
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    base, wide = worker(), worker("--trial", "wide")
    assert wide["parameters"] > base["parameters"] and "full_video_fps" not in wide
    cmds = []

    class Child:
        def __init__(self, cmd, env, stdout, text):
            cmds.append(cmd)
            self.pid = len(cmds)
            res = {"ms_per_clip": 10.0 * self.pid, "frames_per_clip": 1, "train_iter_s": 0.1,
                   "parameters": self.pid, "profile_model": {}, "scaling": {}}  # fmt: skip
            self.stdout = io.StringIO(json.dumps(res) + "\n")

    monkeypatch.setattr(sp.subprocess, "Popen", Child)
    monkeypatch.setattr(sp.os, "wait4", lambda pid, o: (pid, 0, SimpleNamespace(ru_maxrss=2048)))
    args = SimpleNamespace(runs="none", threads=1, device="cpu", iters=1, repeat=1, video="")
    speed, _, _ = sp.run_speed(args, {"AAMN": "base", "CMDy": "wide"})
    assert [c[c.index("--trial") + 1] for c in cmds] == ["base"] * len(sp.METHODS) + ["wide"]
    label = "CMDy (wide, chosen on val)"
    assert list(speed) == [*sp.METHODS, label]
    assert speed[label]["method"] == "CMDy" and speed[label]["trial"] == "wide"
    assert speed[label]["ms_per_clip"] == 10.0 * (len(sp.METHODS) + 1)
    opts = SimpleNamespace(argv=[], threads=1, device="cpu")
    text = markdown({"speed": speed}, {}, {}, opts)
    assert f"| {label} | {10.0 * (len(sp.METHODS) + 1):.1f} |" in text


def test_every_number_of_a_report_is_looked_up_in_its_results(tmp_path, capsys):
    """tools/check_numbers.py: a number of the text (outside code, dates, metric names, small
    counts) is found when a value of the JSON rounds to it at the decimals shown, a numeric
    list's mean / sample std / range and a fraction's percentage included; the others are
    listed with their lines, and the exit status says whether there were any."""
    from aamn.benchmark.numbers import numbers_in, section, unmatched
    from aamn.cli.check_numbers import main

    text = ("# Report\n\n## Results\n\nAAMN 87.0 ± 0.2 val P@0.5 over 1,214 records, 3 seeds,\n"
            "33 % of its length, a lead of 26.2 (`--max-budgets 300`, 2026-12-07).\n"
            "```\npython x.py --iters 500\n```\n## Next\n\n55.5 and 12\n")  # fmt: skip
    found = [(n.text, n.line) for n in numbers_in(text)]
    assert found == [("87.0", 5), ("0.2", 5), ("1,214", 5), ("33", 6), ("26.2", 6), ("55.5", 12),
                     ("12", 12)]  # fmt: skip
    results = {"val": {"P@0.5": [86.8, 87.1, 87.2]}, "records": 1214, "fraction": 0.3333,
               "lead": 26.21, "flag": True}  # fmt: skip
    # the mean 87.03 -> 87.0, its sample std 0.208 -> 0.2, 1214, 33.33 % -> 33, 26.21 -> 26.2
    assert unmatched(section(text, "Results")[1], results) == []
    results["lead"] = 26.26  # 26.3 now
    assert [n.text for n in unmatched(text, results)] == ["26.2", "55.5", "12"]
    assert section(text, lines=(12, 12)) == (12, "55.5 and 12")
    with pytest.raises(ValueError, match="no heading starting with 'Missing'"):
        section(text, "Missing")
    doc, res = tmp_path / "R.md", tmp_path / "r.json"
    doc.write_text(text)
    res.write_text(json.dumps(results))
    assert main([str(doc), "--json", str(res), "--section", "Results"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{doc}:6: 26.2"]
    assert main([str(doc), "--json", str(res), "--lines", "5-5"]) == 0
    for argv, said in (([str(doc), "--json", str(tmp_path / "none.json")], "no file"),
                       ([str(doc), "--json", str(res), "--lines", "5"], "expected A-B"),
                       ([str(doc), "--json", str(res), "--lines", "5-99"], "the text has 12"),
                       ([str(doc), "--json", str(doc)], "is not JSON")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err
