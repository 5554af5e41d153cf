"""Time the model of a config (AAMN or a comparison system) on synthetic random clips (no data set
needed).

Prints milliseconds per training iteration (forward + backward + optimizer step on a batch of
``SOLVER.IMS_PER_BATCH`` clips) and per inference clip (one clip-query, masks pasted into all
``2L+1`` frames).  Clips have ``2 * INPUT.CLIP.HALF_LENGTH + 1`` frames of ``--height`` x
``--width`` pixels and ``INPUT.CLIP.NUM_PROPOSALS`` random proposals per frame; queries are random
words.  When ``MODEL.LANGUAGE.VOCAB_FILE`` is empty a small temporary vocabulary is used, so the
data sets named by the config need not exist.

Example::

    python tools/benchmark_model.py --config-file configs/synthetic/aamn.yaml --threads 2
"""

import argparse
import sys
import os
import statistics
import tempfile

import torch

from aamn.config import get_aamn_cfg
from aamn.data.text import Vocabulary
from detectron2.modeling import build_model
from aamn.benchmark.timing import (
    BENCHMARK_WORDS,
    build_optimizer_for,
    synthetic_clip,
    time_inference,
    time_training,
)
from aamn.utils.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument(
        "--batch", type=int, default=0, help="clips per training batch (0: SOLVER.IMS_PER_BATCH)"
    )
    parser.add_argument("--iters", type=int, default=10, help="timed training iterations")
    parser.add_argument("--clips", type=int, default=20, help="timed inference clips")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = get_aamn_cfg(args.config_file, args.opts)
    tmp = tempfile.TemporaryDirectory()
    if not cfg.MODEL.LANGUAGE.VOCAB_FILE:
        path = os.path.join(tmp.name, "vocab.json")
        Vocabulary.build([BENCHMARK_WORDS]).save(path)
        cfg.MODEL.LANGUAGE.VOCAB_FILE = path
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()

    torch.manual_seed(0)
    model = build_model(cfg)
    device = torch.device(cfg.MODEL.DEVICE)
    T = 2 * cfg.INPUT.CLIP.HALF_LENGTH + 1
    K = cfg.INPUT.CLIP.NUM_PROPOSALS
    B = args.batch or cfg.SOLVER.IMS_PER_BATCH
    flow = cfg.INPUT.FLOW.ENABLED
    g = torch.Generator().manual_seed(0)

    def make(i):
        return synthetic_clip(g, T, K, args.height, args.width, flow, cfg.INPUT.QUERY_MAX_LENGTH, i)

    n_params = sum(p.numel() for p in model.parameters())

    optimizer = build_optimizer_for(cfg, model)
    batches = [[make(i * B + j) for j in range(B)] for i in range(2)]
    train_ms = [1000 * t for t in time_training(model, optimizer, batches, args.iters, args.warmup)]
    clips = [[make(10_000 + i)] for i in range(min(args.clips, 8))]
    repeat = -(-args.clips // len(clips))
    infer_ms = [1000 * t for t in time_inference(model, clips, repeat, args.warmup)][: args.clips]

    print(f"config: {args.config_file}  device: {device}  threads: {torch.get_num_threads()}")
    print(
        f"model: {n_params / 1e6:.2f} M parameters; clips of T={T} frames of "
        f"{args.height}x{args.width}, K={K}"
    )
    print(
        f"training: {statistics.median(train_ms):.1f} ms / iteration (batch of {B} clips; median "
        "of "
        f"{len(train_ms)}, mean {statistics.mean(train_ms):.1f})"
    )
    print(
        f"inference: {statistics.median(infer_ms):.1f} ms / clip (median of {len(infer_ms)}, mean "
        f"{statistics.mean(infer_ms):.1f})"
    )
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(run_tool(main))
