#!/usr/bin/env python
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
import os
import statistics
import tempfile
import time

import torch

from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import BitMasks, Boxes, Instances

from aamn.config import get_aamn_cfg
from aamn.data.text import Vocabulary

WORDS = (
    "a the man woman person dog cat bird ball car baby adult is running walking jumping climbing "
    "rolling flying eating crawling left right red blue small big in on of with"
).split()


def synthetic_clip(
    g: torch.Generator, T: int, K: int, h: int, w: int, flow: bool, max_words: int, i: int
):
    """One mapper-like input dict with random content (``docs/interfaces.md``)."""
    xy = torch.rand((T, K, 2), generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = 8 + torch.rand((T, K, 2), generator=g) * torch.tensor([w * 0.3, h * 0.3])
    boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], dim=-1)
    key = T // 2
    gt = boxes[key, 0].clone()
    mask = torch.zeros((1, h, w), dtype=torch.bool)
    x1, y1, x2, y2 = gt.round().long().tolist()
    mask[0, y1:y2, x1:x2] = True
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(gt[None])
    inst.gt_masks = BitMasks(mask)
    inst.gt_classes = torch.zeros(1, dtype=torch.long)
    inst.gt_instance_ids = torch.ones(1, dtype=torch.long)
    n = int(torch.randint(3, max_words + 1, (1,), generator=g))
    tokens = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (n,), generator=g)]
    out = {
        "image_id": f"bench{i}/00001",
        "video_id": f"bench{i}",
        "instance_id": 1,
        "height": h,
        "width": w,
        "query": " ".join(tokens),
        "query_tokens": tokens,
        "image": torch.randint(0, 256, (T, 3, h, w), generator=g, dtype=torch.uint8),
        "proposal_boxes": boxes,
        "proposal_scores": torch.randn((T, K), generator=g).sort(dim=1, descending=True).values,
        "instances": inst,
        "referred_idx": 0,
    }
    if flow:
        out["flow"] = torch.randn((T, 3, h, w), generator=g) * 3
    return out


def build_optimizer_for(cfg, model):
    if cfg.SOLVER.get("OPTIMIZER", "SGD") == "AdamW":
        return torch.optim.AdamW(
            model.parameters(), lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )
    return build_optimizer(cfg, model)


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
        Vocabulary.build([WORDS]).save(path)
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

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    optimizer = build_optimizer_for(cfg, model)
    batches = [[make(i * B + j) for j in range(B)] for i in range(2)]
    train_ms = []
    for it in range(args.warmup + args.iters):
        batch = batches[it % len(batches)]
        sync()
        start = time.perf_counter()
        losses = model(batch)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()
        if it >= args.warmup:
            train_ms.append(1000 * (time.perf_counter() - start))

    model.eval()
    clips = [make(10_000 + i) for i in range(min(args.clips, 8))]
    infer_ms = []
    with torch.no_grad():
        for i in range(args.warmup + args.clips):
            sync()
            start = time.perf_counter()
            model([clips[i % len(clips)]])
            sync()
            if i >= args.warmup:
                infer_ms.append(1000 * (time.perf_counter() - start))

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
    main()
