"""Command lines of short trainings on the tiny synthetic benchmark, run as a user runs them
(``tools/train_net.py`` in a subprocess): the comparison system CMDy at CPU size (RGB only, no
proposals, no flow), so a training of a few iterations takes seconds."""

import json
import os
import subprocess
import sys

from aamn.data.synthetic import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CMDY = [
    "MODEL.TINY.STEM_CHANNELS", "8", "MODEL.TINY.STAGE_CHANNELS", "[8, 8, 16, 16]",
    "MODEL.LANGUAGE.EMBED_DIM", "8", "MODEL.LANGUAGE.HIDDEN_DIM", "6",
    "MODEL.CMDY.DECON_DIM", "8", "MODEL.CMDY.GROUPS", "4",
    "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0", "SEED", "7",
]  # fmt: skip


def tiny_synthetic(tmp_path_factory):
    """``$AAMN_DATASETS`` holding the tiny synthetic benchmark (seconds to write)."""
    root = tmp_path_factory.mktemp("datasets")
    generate(str(root / "synthetic"), "tiny", seed=0, workers=1)
    return str(root)


def train_net(datasets, out, *opts, args=(), launcher=None, wait=True):
    """``tools/train_net.py --config-file configs/synthetic/cmdy.yaml [args] TINY_CMDY opts
    OUTPUT_DIR out``; returns the finished ``CompletedProcess`` (or the ``Popen`` when not
    ``wait``).  ``launcher``: a command to run it under (``torchrun ...``)."""
    cmd = [
        *(launcher or [sys.executable]),
        os.path.join(REPO, "tools", "train_net.py"),
        "--config-file",
        os.path.join(REPO, "configs", "synthetic", "cmdy.yaml"),
        *args,
        *TINY_CMDY,
        *opts,
        "OUTPUT_DIR",
        str(out),
    ]
    env = dict(os.environ, AAMN_DATASETS=str(datasets), OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def results(path):
    """An evaluation JSON without its timings (which vary between runs)."""
    with open(path) as f:
        res = json.load(f)
    res.pop("speed", None)
    return res


def metrics(out):
    """The lines of a run's ``metrics.json`` (detectron2's JSON writer)."""
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]
