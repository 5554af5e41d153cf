"""Draw the training curves of runs (``aamn.utils.training_plots.plot_training_curves``): losses,
training accuracies, learning rate and evaluation metrics from each ``OUTPUT_DIR/metrics.json``,
into ``OUTPUT_DIR/training_curves.png`` (or ``--output``)::

    python tools/plot_curves.py output/synthetic/aamn output/synthetic/detector
"""

import argparse
import os
import sys

from aamn.utils.training_plots import plot_training_curves
from aamn.utils.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", help="OUTPUT_DIR of a training run")
    parser.add_argument("--output", default="", help="the PNG (one run only)")
    args = parser.parse_args(argv)
    if args.output and len(args.run_dirs) > 1:
        parser.error("--output takes one run folder")
    for run in args.run_dirs:
        metrics = os.path.join(run, "metrics.json")
        if not os.path.isfile(metrics):
            parser.error(f"{metrics} does not exist (is {run} a training run's OUTPUT_DIR?)")
        out = args.output or os.path.join(run, "training_curves.png")
        drawn = plot_training_curves(metrics, out, title=run)
        print(f"[plot_curves] {out}: " + ", ".join(f"{k} {v}" for k, v in drawn.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
