"""Accuracy over trained runs: ``<runs>/<method>/seed<S>/eval_*.json``, the missing ones trained
with the command a user runs, means with their spread."""

import json
import math
import os
import statistics
import subprocess
import sys

from .methods import A2D, JHMDB, METHODS, QUERY_TYPES, config_file


def run_dir(runs, method, seed):
    return os.path.join(runs, method, f"seed{seed}")


def train_missing(args, method, seed):
    """Train and evaluate one (method, seed) unless its evaluation JSONs exist."""
    out = run_dir(args.runs, method, seed)
    a2d_json = os.path.join(out, f"eval_{A2D}.json")
    jhmdb_json = os.path.join(out, f"eval_{JHMDB}.json")
    train = [sys.executable, "-m", "aamn.cli.train_net"]
    config = config_file(method)
    if not os.path.isfile(a2d_json):
        cmd = [*train, "--config-file", config, "--results-json", a2d_json]
        cmd += ["SEED", str(seed), "OUTPUT_DIR", out, "DATASETS.TEST", f"('{A2D}',)"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if not os.path.isfile(jhmdb_json):
        cmd = [*train, "--config-file", config, "--eval-only", "--results-json", jhmdb_json]
        cmd += ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", out]
        cmd += ["DATASETS.TEST", f"('{JHMDB}',)"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def spread(values):
    """mean, sample std, min, max, n of a list of numbers."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


def collect_accuracy(args):
    """``(sections, per_run, runs)``: sections[section][method][metric] = mean over the runs of
    ``<runs>/<method>/*/`` that hold both evaluation JSONs; per_run[section][method][metric] = the
    value of each run; runs[method] = the run folders' names."""
    per_run = {s: {} for s in ("single_frame", "loc", "full_video", "full_video_bbox", "jhmdb")}
    per_run["by_query_type"] = {}
    seeds_found = {}
    for method in METHODS:
        found = []
        folder = os.path.join(args.runs, method)
        for run in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            out = os.path.join(folder, run)
            paths = [os.path.join(out, f"eval_{d}.json") for d in (A2D, JHMDB)]
            if not all(os.path.isfile(p) for p in paths):
                continue
            with open(paths[0]) as f:
                a2d = json.load(f)
            with open(paths[1]) as f:
                jhmdb = json.load(f)
            found.append(run)
            tasks = {
                "single_frame": a2d["segm"],
                "loc": a2d.get("loc", {}),
                "full_video": a2d.get("segm_full_video", {}),
                "full_video_bbox": a2d.get("bbox_full_video", {}),
                "jhmdb": jhmdb["segm"],
            }
            for section, metrics in tasks.items():
                for k, v in metrics.items():
                    per_run[section].setdefault(method, {}).setdefault(k, []).append(v)
            for qt in QUERY_TYPES:
                for k, v in a2d.get(f"segm_{qt}", {}).items():
                    per_run["by_query_type"].setdefault(method, {}).setdefault(qt, {}).setdefault(
                        k, []
                    ).append(v)
        seeds_found[method] = found
    sections = {}
    for section, by_method in per_run.items():
        sections[section] = {}
        for method, metrics in by_method.items():
            if section == "by_query_type":
                sections[section][method] = {
                    qt: {k: spread(v)["mean"] for k, v in m.items()} for qt, m in metrics.items()
                }
            else:
                sections[section][method] = {k: spread(v)["mean"] for k, v in metrics.items()}
    return sections, per_run, seeds_found
