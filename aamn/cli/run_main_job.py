"""The main job on the synthetic benchmark, end to end (``make main``): the stages of
``aamn.engine.main_job``, each skipped when its outputs are newer than its inputs and were made
with the same commands (a rerun with other overrides redoes the stages they change and every
later one):

1. ``data``       datasets/prepare_synthetic.py   -> $AAMN_DATASETS/synthetic/{a2d,jhmdb}_sentences
                  (another --size: $AAMN_DATASETS/synthetic_<size>/, outputs in
                  output/synthetic_<size>/; the stages read it through $AAMN_SYNTHETIC)
2. ``flow``       datasets/prepare_flow.py        -> <root>/flow/   (both trees)
3. ``detector``   tools/train_net.py (detector)   -> output/synthetic/detector/model_final.pth
4. ``proposals``  datasets/prepare_proposals.py   -> <root>/proposals/<dataset>.pkl
5. ``aamn``       tools/train_net.py (AAMN)       -> output/synthetic/aamn/model_final.pth, and
                  its evaluation                  -> <output>/aamn/eval_synthetic_a2d_test.json
6. ``evaluate``   train_net.py --eval-only        -> <output>/aamn/eval_synthetic_jhmdb_test.json
7. ``draw``       tools/visualize.py, visualize_tubes.py, plot_curves.py
8. ``demo``       tools/demo.py on one test video -> <output>/aamn/demo/<video>.mp4, .json, frames/

Usage::

    python tools/run_main_job.py                    # everything, skipping what is up to date
    python tools/run_main_job.py --from aamn        # force a stage and everything after it
    python tools/run_main_job.py --size tiny        # a quick smoke run, in its own trees
"""

import argparse
import os
import shlex
import sys

from aamn.engine.main_job import STAGES, MainJob, run_main_job
from aamn.utils.io import datasets_root
from aamn.utils.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="default", choices=["tiny", "default", "large"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir",
        default="",
        help="default: output/synthetic for the default size, output/synthetic_<size> otherwise",
    )
    parser.add_argument("--datasets-dir", default=datasets_root())
    parser.add_argument(
        "--detector-config", default="", help="default: configs/synthetic/detector.yaml"
    )
    parser.add_argument("--aamn-config", default="", help="default: configs/synthetic/aamn.yaml")
    parser.add_argument(
        "--from", dest="from_stage", choices=STAGES, help="redo it and what follows"
    )
    parser.add_argument("--until", dest="until_stage", choices=STAGES, help="stop after this stage")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--detector-opts", default="", help="detector overrides: 'KEY VALUE ...'")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="AAMN overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    job = MainJob(
        size=args.size,
        seed=args.seed,
        output_dir=args.output_dir,
        datasets_dir=args.datasets_dir,
        detector_config=args.detector_config,
        aamn_config=args.aamn_config,
        workers=args.workers,
        detector_opts=shlex.split(args.detector_opts),
        opts=list(args.opts),
    )
    run_main_job(job, args.from_stage, args.until_stage)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
