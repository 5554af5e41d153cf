"""Training curves from detectron2's ``metrics.json`` (one JSON object per line, written by its
``JSONWriter`` every ``log_period`` iterations and after each evaluation).

``read_metrics(path)`` parses it (a line cut by an interrupted write is skipped with a
warning); ``plot_training_curves(path, out_png)`` draws four panels with matplotlib: the losses
(``total_loss`` and every ``loss_*``), the training accuracies (every key ending in ``accuracy``,
e.g. AAMN's ``aamn/match_accuracy``: the share of clips whose best-scored tube is the referred
one), the learning rate, and the evaluation metrics (``segm/P@0.5``, ``segm/mean_IoU``,
``segm/overall_IoU`` of each evaluation, or the detector's ``bbox/AP``).  TensorBoard reads the
same values from the event files detectron2's ``TensorboardXWriter`` writes into ``OUTPUT_DIR``
(``tensorboard --logdir OUTPUT_DIR``).
"""

import json
import logging
import os
from typing import Dict, List

__all__ = ["read_metrics", "plot_training_curves", "EVAL_KEYS"]

logger = logging.getLogger(__name__)

# The evaluation numbers drawn, when present: referring segmentation, then detection.
EVAL_KEYS = ("segm/P@0.5", "segm/mean_IoU", "segm/overall_IoU", "bbox/AP", "bbox/AP50")


def read_metrics(path: str) -> List[Dict]:
    """The records of a ``metrics.json``, in order.

    Raises:
        FileNotFoundError: no such file.
    """
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                logger.warning("%s: line %d is not JSON (an interrupted write?); skipped", path, n)
    return records


def _series(records: List[Dict], key: str):
    pts = [(r["iteration"], r[key]) for r in records if key in r and "iteration" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(metrics_path: str, out_path: str, title: str = "") -> Dict[str, int]:
    """Draw the curves of a ``metrics.json`` into a PNG (written atomically).

    Returns:
        ``{panel: number of series drawn}`` for ``losses``, ``accuracy``, ``lr``, ``evaluation``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    records = read_metrics(metrics_path)
    keys = sorted({k for r in records for k in r})
    panels = {
        "losses": [k for k in keys if k == "total_loss" or k.split("/")[-1].startswith("loss_")],
        "accuracy": [k for k in keys if k.endswith("accuracy")],
        "lr": [k for k in keys if k == "lr"],
        "evaluation": [k for k in EVAL_KEYS if k in keys],
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (name, series) in zip(axes.ravel(), panels.items()):
        for key in series:
            x, y = _series(records, key)
            style = "o-" if name == "evaluation" or len(x) < 3 else "-"
            ax.plot(x, y, style, label=key, linewidth=1.2, markersize=4)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if name == "losses" and series:
            ax.set_yscale("log")
        if series:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "none logged", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title or os.path.dirname(os.path.abspath(metrics_path)))
    fig.tight_layout()
    with atomic_path(out_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return {k: len(v) for k, v in panels.items()}
