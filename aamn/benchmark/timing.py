"""Timing the project's models: random clips, training and inference steps, whole videos, and the
share of each part (``tools/benchmark.py``, ``tools/benchmark_model.py``,
``tools/benchmark_video.py``).

Every function measures model time on this process (CUDA synchronised when on a GPU); inputs are
made up front so that building them is not timed.
"""

import statistics
import time
from collections import defaultdict
from typing import Dict, Iterable, List

import torch

__all__ = [
    "BENCHMARK_WORDS",
    "ModuleTimer",
    "build_optimizer_for",
    "median",
    "synthetic_clip",
    "time_inference",
    "time_training",
    "time_video",
]

BENCHMARK_WORDS = (
    "a the man woman person dog cat bird ball car baby adult is running walking jumping climbing "
    "rolling flying eating crawling left right red blue small big in on of with"
).split()


def synthetic_clip(
    g: torch.Generator, T: int, K: int, h: int, w: int, flow: bool, max_words: int, i: int
) -> Dict:
    """One mapper-like input dict with random content (``docs/interfaces.md``): ``T`` frames of
    ``h x w``, ``K`` proposals per frame, a query of 3..``max_words`` random words."""
    from detectron2.structures import BitMasks, Boxes, Instances

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
    tokens = [
        BENCHMARK_WORDS[int(j)] for j in torch.randint(0, len(BENCHMARK_WORDS), (n,), generator=g)
    ]
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
    """The optimizer ``tools/train_net.py`` would build (``aamn.engine.build_optimizer``)."""
    from ..engine.trainer import build_optimizer

    return build_optimizer(cfg, model)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training(model, optimizer, batches: List[List[Dict]], iters: int, warmup: int = 2):
    """Seconds per training iteration (forward, backward, optimizer step) for each of ``iters``
    timed iterations after ``warmup``, cycling over ``batches``."""
    device = next(model.parameters()).device
    model.train()
    out = []
    for it in range(warmup + iters):
        batch = batches[it % len(batches)]
        _sync(device)
        start = time.perf_counter()
        losses = model(batch)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        if it >= warmup:
            out.append(time.perf_counter() - start)
    return out


@torch.no_grad()
def time_inference(model, batches: Iterable[List[Dict]], repeat: int = 1, warmup: int = 2):
    """Seconds of each inference call ``model(batch)`` over ``batches`` (``repeat`` times each),
    after ``warmup`` untimed calls on the first batch."""
    batches = list(batches)
    device = next(model.parameters()).device
    model.eval()
    for _ in range(warmup):
        model(batches[0])
    out = []
    for _ in range(repeat):
        for batch in batches:
            _sync(device)
            start = time.perf_counter()
            model(batch)
            _sync(device)
            out.append(time.perf_counter() - start)
    return out


class ModuleTimer:
    """Wall time spent inside named submodules (forward hooks), e.g. the two backbones::

        with ModuleTimer(model, ["backbone", "flow_backbone"]) as t:
            model(batch)
        t.seconds  # {"backbone": s, "flow_backbone": s}

    Nested timed modules are counted in each (name modules that do not contain each other).
    """

    def __init__(self, model, names: Iterable[str]):
        self.model, self.names = model, list(names)
        self.seconds = defaultdict(float)
        self._handles, self._start = [], {}

    def __enter__(self):
        modules = dict(self.model.named_modules())
        for name in self.names:
            module = modules.get(name)
            if module is None:
                continue
            device = next(module.parameters(), torch.zeros(())).device

            def pre(mod, inputs, name=name, device=device):
                _sync(device)
                self._start[name] = time.perf_counter()

            def post(mod, inputs, output, name=name, device=device):
                _sync(device)
                self.seconds[name] += time.perf_counter() - self._start.pop(name)

            self._handles += [
                module.register_forward_pre_hook(pre),
                module.register_forward_hook(post),
            ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []


def time_video(predictor, video, queries, backbones: bool = False) -> Dict[str, float]:
    """``{frames, seconds, model, proposals, flow}`` of one whole-video run of an
    ``aamn.engine.VideoPredictor`` (seconds; the predictor's own stage timings); with
    ``backbones``, also ``model_backbones`` (the model's RGB and Flow backbones) and
    ``proposal_backbone`` (the detector's)."""
    from ..data.video import VideoStream

    timers = []
    if backbones:
        timers.append(ModuleTimer(predictor.model, ["backbone", "flow_backbone"]))
        if predictor.detector is not None:
            timers.append(ModuleTimer(predictor.detector.model, ["backbone"]))
    try:
        for t in timers:
            t.__enter__()
        start = time.perf_counter()
        n = sum(1 for _ in predictor(VideoStream(video), queries))
        seconds = time.perf_counter() - start
    finally:
        for t in timers:
            t.__exit__()
    stages = predictor.timings
    out = {"frames": n, "seconds": seconds, **{k: stages.get(k, 0.0) for k in STAGES}}
    if backbones:
        out["model_backbones"] = sum(timers[0].seconds.values())
        out["proposal_backbone"] = sum(timers[1].seconds.values()) if len(timers) > 1 else 0.0
    return out


# The predictor's stages time_video reports.
STAGES = ("model", "proposals", "flow")


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")
