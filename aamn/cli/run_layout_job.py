"""The synthetic benchmark's second job: AAMN, CMDy and DynamicFilterSeg trained on the
Ref-YouTube-VOS layout of the same benchmark, each reported with P@0.5 and J&F
(``aamn.engine.layout_job``).  Run the main job first (its proposal detector is read)::

    python tools/run_layout_job.py                    # default size -> output/synthetic_ytvos
"""

import argparse
import os
import sys

from aamn.utils.cli import run_tool
from aamn.utils.io import datasets_root

__all__ = ["main"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="default", choices=["tiny", "default", "large"])
    parser.add_argument("--datasets-dir", default=datasets_root())
    parser.add_argument("--output", default=os.path.join("output", "synthetic_ytvos"))
    parser.add_argument(
        "--detector-weights",
        default="",
        help="the main job's proposal detector (default: output/<its tree>/detector/"
        "model_final.pth)",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from aamn.data.synthetic import synthetic_tree_name
    from aamn.engine.layout_job import run_layout_job

    weights = args.detector_weights or os.path.join(
        "output", synthetic_tree_name(args.size), "detector", "model_final.pth"
    )
    run_layout_job(args.datasets_dir, args.output, weights, args.size, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
