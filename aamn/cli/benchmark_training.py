"""What the training levers give, measured in one run: data loading without and with the frame
cache, and the model's training step with torchvision's or the separable RoIAlign, AdamW's loop or
fused kernel, and the RPN's NMS in full or on a prefix first.

For a config whose training set exists (the main job's, e.g.), prints seconds per batch of
``SOLVER.IMS_PER_BATCH`` records:

- data loading (the training loader, ``DATALOADER.NUM_WORKERS`` as configured) with the frame
  cache off, then with it on after one pass over the training set (every later epoch's case);
- the training step (forward, backward, optimizer step) on the same real batches for each lever
  combination, models built from the same seed; the variants take turns (``--rounds``) and each
  one's median is reported, with its ratio to the old combination (all three off).

With ``--variant LABEL CONFIG [KEY VALUE ...]`` (repeated) the training steps compared are those
variants instead of the lever combinations: each its config file (``-`` for ``--config-file``)
with its overrides, all on the batches of ``--config-file``'s loader (a variant must read the same
inputs: the shared detector's AAMN against the separate one, a detector of another width).

Example::

    python tools/benchmark_training.py --config-file configs/synthetic/detector.yaml
    python tools/benchmark_training.py --config-file configs/synthetic/aamn.yaml --json out.json
    python tools/benchmark_training.py --config-file configs/synthetic/aamn_separate.yaml \\
        --variant separate - --variant shared configs/synthetic/aamn.yaml
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

import aamn  # noqa: F401  (registers data sets, models)
from aamn.config import get_aamn_cfg
from aamn.data.frame_cache import frame_cache
from detectron2.modeling import build_model

from aamn.engine import Trainer, build_optimizer
from aamn.modeling.vocabulary import resolve_vocabulary
from aamn.modeling.compile import compile_backbones
from aamn.benchmark.timing import time_training
from aamn.utils.cli import run_tool

# (label, MODEL.SEPARABLE_ROI_ALIGN, fused AdamW, the RPN's NMS on a prefix first: the detector's
# MODEL.PROPOSAL_GENERATOR.NAME "PrefixNMSRPN" instead of detectron2's "RPN")
VARIANTS = [
    ("torchvision RoIAlign, AdamW loop, full NMS (before)", False, False, False),
    ("separable RoIAlign", True, False, False),
    ("fused AdamW", False, True, False),
    ("the RPN's NMS on a prefix first", False, False, True),
    ("all three (now)", True, True, True),
]


def time_batches(loader, n):
    """Seconds per batch over the next ``n`` batches of ``loader`` (an iterator)."""
    start = time.perf_counter()
    for _ in range(n):
        next(loader)
    return (time.perf_counter() - start) / n


def profile_step(model, optimizer, batches, top):
    """``{op: ms per step}``: the ``top`` ops by self CPU time over ``len(batches)`` steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_training(model, optimizer, batches, len(batches), warmup=0)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return {e.key: e.self_cpu_time_total / 1e3 / len(batches) for e in ops}


def variant_config(cfg, args, *how):
    """The config of one compared step: a lever combination of ``VARIANTS`` (separable RoIAlign,
    fused AdamW, prefix NMS) on ``cfg``, or a ``--variant`` (its config file and overrides)."""
    if len(how) == 1:  # --variant LABEL CONFIG [KEY VALUE ...]
        _, config, *opts = how[0]
        c = get_aamn_cfg(args.config_file if config == "-" else config, [*args.opts, *opts])
        c.defrost()
        c.MODEL.DEVICE, c.OUTPUT_DIR = "cpu", cfg.OUTPUT_DIR
        c.MODEL.LANGUAGE.VOCAB_FILE = cfg.MODEL.LANGUAGE.VOCAB_FILE
        return c
    separable, _, prefix = how
    c = cfg.clone()
    c.defrost()
    c.MODEL.SEPARABLE_ROI_ALIGN = separable
    if c.MODEL.PROPOSAL_GENERATOR.NAME in ("RPN", "PrefixNMSRPN"):
        c.MODEL.PROPOSAL_GENERATOR.NAME = "PrefixNMSRPN" if prefix else "RPN"
    return c


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--iters", type=int, default=8, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-batches", type=int, default=40, help="timed loader batches")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument(
        "--profile", type=int, default=0, help="also list the N most costly ops of the step (now)"
    )
    parser.add_argument("--json", default="", help="also write the numbers to this file")
    parser.add_argument(
        "--variant",
        dest="variants",
        nargs="+",
        action="append",
        default=[],
        metavar="LABEL CONFIG [KEY VALUE]",
        help="compare these training steps instead of the levers (CONFIG '-': --config-file)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    for v in args.variants:
        if len(v) < 2 or len(v) % 2:
            raise SystemExit(
                f"error: --variant {' '.join(v)}: LABEL CONFIG [KEY VALUE ...] expected"
            )

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    cfg = get_aamn_cfg(args.config_file, args.opts)
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    tmp = tempfile.TemporaryDirectory()
    cfg.OUTPUT_DIR = tmp.name  # AAMN writes the vocabulary it builds from the training set there
    resolve_vocabulary(cfg, build=True)  # one vocabulary for every variant
    budget = int(cfg.DATALOADER.FRAME_CACHE_MB)
    batch = cfg.SOLVER.IMS_PER_BATCH
    records = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)
    epoch = -(-records // batch)
    result = {"config": args.config_file, "threads": torch.get_num_threads(), "batch": batch}

    # -------------------------------------------------------------- data loading
    cfg.DATALOADER.FRAME_CACHE_MB = 0
    cold = iter(Trainer.build_train_loader(cfg))
    next(cold)
    result["data_s_no_cache"] = time_batches(cold, args.data_batches)
    cfg.DATALOADER.FRAME_CACHE_MB = budget
    cfg.freeze()
    frame_cache.clear()
    warm = iter(Trainer.build_train_loader(cfg))
    for _ in range(epoch):  # one pass over the training set fills the cache
        next(warm)
    result["data_s_cache"] = time_batches(warm, args.data_batches)
    result["cache"] = {"frames": len(frame_cache), "mb": frame_cache.nbytes / 2**20}
    batches = [next(warm) for _ in range(4)]

    # -------------------------------------------------------------- the training step
    variants = VARIANTS if not args.variants else [(v[0], v) for v in args.variants]
    times = {label: [] for label, *_ in variants}
    with EventStorage(0):
        for _, (label, *how) in itertools.product(range(args.rounds), variants):
            c = variant_config(cfg, args, *how)
            torch.manual_seed(0)
            model = build_model(c)
            if c.MODEL.COMPILE_BACKBONES:  # compiled in the warm-up steps, outside the timing
                compile_backbones(model)
            optimizer = build_optimizer(c, model, fused=how[1] if len(how) == 3 else True)
            times[label] += time_training(model, optimizer, batches, args.iters, warmup=2)
        if args.profile:  # where the step's time goes now (the last variant's model)
            result["profile_ms"] = profile_step(model, optimizer, batches, args.profile)
    base = statistics.median(times[variants[0][0]])
    result["step_s"] = {label: statistics.median(t) for label, t in times.items()}

    print(
        f"\n{args.config_file}: {records} training records, {batch} per batch, "
        f"{result['threads']} threads"
    )
    print("| what | s / batch | against before |\n|---|---|---|")
    print(f"| data loading, no frame cache | {result['data_s_no_cache']:.4f} | 1.00 |")
    print(
        f"| data loading, frame cache after one epoch ({result['cache']['frames']} frames, "
        f"{result['cache']['mb']:.0f} MB) | {result['data_s_cache']:.4f} | "
        f"{result['data_s_cache'] / result['data_s_no_cache']:.2f} |"
    )
    for label, value in result["step_s"].items():
        print(f"| training step, {label} | {value:.4f} | {value / base:.2f} |")
    if args.profile:
        step = 1000 * result["step_s"][variants[-1][0]]
        print(f"\nThe step now ({step:.0f} ms), the costliest ops (ms per step, self time):")
        print("| op | ms | share |\n|---|---|---|")
        for name, ms in result["profile_ms"].items():
            print(f"| `{name}` | {ms:.1f} | {100 * ms / step:.0f} % |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    sys.exit(run_tool(lambda argv: 0 if main(argv) else 1))
