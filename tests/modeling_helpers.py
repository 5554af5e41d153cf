"""Shared helpers of the modelling tests: a tiny AAMN config and synthetic mapper-like clips."""

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances

from aamn.modeling.meta_arch.aamn_config import add_aamn_config
from aamn.data.text import Vocabulary

WORDS = [
    "a",
    "man",
    "woman",
    "dog",
    "ball",
    "is",
    "running",
    "walking",
    "jumping",
    "left",
    "right",
    "red",
]
QUERIES = [
    ["a", "man", "is", "running"],
    ["a", "red", "dog", "is", "jumping"],
    ["woman", "walking", "left"],
    ["a", "ball", "is", "rolling", "right"],
]


def make_vocab():
    return Vocabulary.build([WORDS])


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    """A ``vocab.json`` of ``WORDS`` (test modules activate the fixture by importing it)."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    make_vocab().save(path)
    return str(path)


def tiny_model(vocab_file, seed=0, **overrides):
    """``build_model`` of ``tiny_cfg`` after seeding."""
    from detectron2.modeling import build_model

    seed_all(seed)
    return build_model(tiny_cfg(vocab_file, **overrides))


def tiny_cfg(vocab_file: str, **aamn_overrides):
    """A CPU-sized AAMN config (tiny backbone at stride 8, widths of 8-32)."""
    cfg = add_aamn_config(get_cfg())
    sizes = {
        "MODEL.META_ARCHITECTURE": "AAMN",
        "MODEL.DEVICE": "cpu",
        "MODEL.WEIGHTS": "",
        "OUTPUT_DIR": "",
        "MODEL.BACKBONE.NAME": "build_tiny_backbone",
        "MODEL.TINY.STEM_CHANNELS": 8,
        "MODEL.TINY.STAGE_CHANNELS": [8, 16, 16, 16],
        "MODEL.TINY.OUT_FEATURES": ["res3"],
        "MODEL.AAMN.IN_FEATURES": ["res3"],
        "INPUT.CLIP.NUM_PROPOSALS": 4,
        "INPUT.CLIP.HALF_LENGTH": 1,
        "MODEL.AAMN.ROI_FC_DIM": 32,
        "MODEL.AAMN.TUBE_DIM": 32,
        "MODEL.AAMN.MATCH_DIM": 16,
        "MODEL.AAMN.FUSION_DIM": 16,
        "MODEL.AAMN.CONTEXT_HIDDEN_DIM": 16,
        "MODEL.AAMN.MASK_HEAD.CONV_DIM": 8,
        "MODEL.FLOW_PIXEL_STD": [5.0, 5.0, 5.0],
        "MODEL.LANGUAGE.EMBED_DIM": 16,
        "MODEL.LANGUAGE.HIDDEN_DIM": 8,
        "MODEL.LANGUAGE.VOCAB_FILE": str(vocab_file),
    }
    aamn_overrides = {**sizes, **aamn_overrides}
    for key, value in aamn_overrides.items():
        node, name = cfg, key
        *path, name = key.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, name, value)
    return cfg


def baseline_opts(arch: str, vocab_file: str = "") -> list:
    """Config overrides of a CPU-sized comparison system (``DynamicFilterSeg`` two-stream, or
    ``CMDy`` RGB-only), tiny backbone at stride 16, no proposals."""
    opts = [
        "MODEL.META_ARCHITECTURE", arch, "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.NAME", "build_tiny_backbone", "MODEL.BACKBONE.FREEZE_AT", "0",
        "MODEL.TINY.STEM_CHANNELS", "8", "MODEL.TINY.STAGE_CHANNELS", "[8, 8, 16, 16]",
        "MODEL.TINY.OUT_FEATURES", "['res4']", "MODEL.CLIP_ENCODER.IN_FEATURE", "res4",
        "MODEL.LANGUAGE.EMBED_DIM", "8", "MODEL.LANGUAGE.HIDDEN_DIM", "6",
        "MODEL.LANGUAGE.VOCAB_FILE", vocab_file, "MODEL.FLOW_PIXEL_STD", "[5.0, 5.0, 5.0]",
        "MODEL.DYNAMIC_FILTER.DECODER_DIMS", "[8, 4]",
        "MODEL.CMDY.DECON_DIM", "8", "MODEL.CMDY.GROUPS", "4",
        "INPUT.CLIP.HALF_LENGTH", "1", "INPUT.CLIP.LOAD_PROPOSALS", "False",
    ]  # fmt: skip
    if arch == "DynamicFilterSeg":
        return opts + ["MODEL.LANGUAGE.NAME", "Conv1dMaxEncoder"]
    return opts + ["MODEL.LANGUAGE.NAME", "BiGRUMaxEncoder", "INPUT.FLOW.ENABLED", "False"]


def make_clip(
    seed: int = 0,
    T: int = 3,
    K: int = 4,
    h: int = 48,
    w: int = 64,
    query_tokens=None,
    video_id: str = "v0",
    instance_id: int = 1,
    gt_in_proposals: bool = True,
    height: int = None,
    width: int = None,
    flow: bool = True,
):
    """A mapper-like dict: a bright actor box moving right over noise, K proposals per frame (the
    first one on the actor when ``gt_in_proposals``), the key frame's GT (two instances, the
    referred one at row 1)."""
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand((T, 3, h, w), generator=g) * 60).to(torch.uint8)
    actor = []
    for t in range(T):
        x1, y1 = 8 + 4 * t + seed % 5, 10 + seed % 7
        box = [x1, y1, x1 + 20, y1 + 22]
        actor.append(box)
        image[t, :, box[1] : box[3], box[0] : box[2]] = 200
    boxes = torch.zeros((T, K, 4))
    for t in range(T):
        for k in range(K):
            if k == 0 and gt_in_proposals:
                boxes[t, k] = torch.tensor(actor[t], dtype=torch.float32) + torch.rand(
                    4, generator=g
                )
            else:
                x1 = (
                    30 + float(torch.rand(1, generator=g)) * (w - 45) if gt_in_proposals else 40 + k
                )
                y1 = float(torch.rand(1, generator=g)) * (h - 14) if gt_in_proposals else h - 14
                boxes[t, k] = torch.tensor([x1, y1, min(x1 + 12, w - 1), y1 + 12])
    scores = torch.linspace(3.0, 0.0, K).repeat(T, 1)
    key = T // 2
    masks = torch.zeros((2, h, w), dtype=torch.bool)
    masks[0, 2:8, 50:60] = True
    a = actor[key]
    masks[1, a[1] : a[3], a[0] + 2 : a[2] - 2] = True
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor([[50.0, 2.0, 60.0, 8.0], [float(v) for v in a]]))
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = torch.tensor([1, 0])
    inst.gt_instance_ids = torch.tensor([7, instance_id])
    out = {
        "image_id": f"{video_id}/{seed:05d}",
        "video_id": video_id,
        "frame_idx": 5,
        "instance_id": instance_id,
        "height": height or h,
        "width": width or w,
        "query": " ".join(query_tokens or QUERIES[seed % len(QUERIES)]),
        "query_tokens": list(query_tokens or QUERIES[seed % len(QUERIES)]),
        "frame_indices": torch.arange(T) + 4,
        "image": image,
        "proposal_boxes": boxes,
        "proposal_scores": scores,
        "instances": inst,
        "referred_idx": 1,
    }
    if flow:
        fl = torch.zeros((T, 3, h, w))
        for t in range(T):
            b = actor[t]
            fl[t, 0, b[1] : b[3], b[0] : b[2]] = 4.0
            fl[t, 2, b[1] : b[3], b[0] : b[2]] = 4.0
        out["flow"] = fl + 0.1 * torch.randn((T, 3, h, w), generator=g)
    return out


def loss_curve(model, batch, optimizer, steps: int):
    """Train ``model`` on one batch for ``steps`` steps; the summed losses before each step."""
    model.train()
    totals = []
    for _ in range(steps):
        loss = sum(model(batch).values())
        totals.append(float(loss))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return totals


def seed_all(seed: int = 0):
    torch.manual_seed(seed)
    np.random.seed(seed)


@pytest.fixture(autouse=True)
def single_thread():
    """Run a test with one torch thread (tiny tensors; the suite runs as parallel workers on few
    cores, where more threads only compete), restoring the previous setting afterwards.  Test
    modules activate it by importing it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def module_steps(run, caller: str):
    """The steps of ``run()`` as the module ``caller`` (a path under ``aamn/``, e.g.
    ``"modeling/meta_arch/aamn.py"``) takes them: the project modules its code calls into, in
    order (a call through torch or detectron2, e.g. ``nn.Module.__call__`` or ``build_model``,
    counts for the project frame below it; comprehensions belong to their function), with
    consecutive calls into one module as one step.  Returns ``(steps, returns)``: the modules of
    the steps, and those of the steps that go back to a module already left."""
    import os
    import sys

    import aamn

    pkg = os.path.dirname(os.path.abspath(aamn.__file__)) + os.sep
    me = os.path.join(pkg, caller)
    seq = []

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name.startswith("<"):
            return
        if not frame.f_code.co_filename.startswith(pkg):
            return
        up = frame.f_back
        while up is not None and (
            up.f_code.co_name.startswith("<") or not up.f_code.co_filename.startswith(pkg)
        ):
            up = up.f_back
        if up is not None and up.f_code.co_filename == me:
            module = os.path.relpath(frame.f_code.co_filename, pkg)
            if not seq or seq[-1] != module:
                seq.append(module)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    returns = [m for i, m in enumerate(seq) if m in seq[:i]]
    return seq, returns
