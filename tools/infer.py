#!/usr/bin/env python
"""Segment every expression of a queries file in many videos, with the models loaded once
(``aamn.engine.batch_inference``)::

    python tools/infer.py --config-file configs/synthetic/aamn.yaml \\
        --input "videos/*.mp4" --input "JPEGImages/*" --queries meta_expressions.json \\
        --output out/ MODEL.WEIGHTS output/synthetic/aamn/model_final.pth

The queries file is Ref-YouTube-VOS's ``meta_expressions.json`` form or a CSV ``video,exp_id,exp``;
a video's id is its file or folder name without extension.  The output follows the Ref-YouTube-VOS
submission layout: ``out/Annotations/<video_id>/<exp_id>/<frame>.png`` (8-bit, 0 / 255, one per
input frame) and ``out/<video_id>.json`` (RLE masks, boxes, scores, AAMN's tubes).  Each video's
outputs appear whole once it is done, so a rerun skips the finished videos.  ``--num-gpus N``
shards the videos over N processes (gloo on CPU): the outputs are byte for byte those of one
process with the same number of threads per process.  A video that fails is named at the end with
its error (exit status 1), and the others' outputs are kept.
"""

import argparse
import json
import os
import sys

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.engine import VideoPredictor, launch, write_json_atomic
from aamn.engine.batch_inference import infer_videos, read_queries_file, video_id_of
from aamn.utils.io import expand_inputs

FAILED_FILE = "failed.json"


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the model's config")
    parser.add_argument(
        "--input",
        dest="inputs",
        action="append",
        required=True,
        metavar="PATH_OR_GLOB",
        help="video files or folders of frames (globs quoted); repeat for several",
    )
    parser.add_argument("--queries", required=True, help="meta_expressions.json or a CSV")
    parser.add_argument("--output", required=True, help="the output folder")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (gloo on CPU)")
    parser.add_argument("--detector-config", default="", help="override AAMN's recorded detector")
    parser.add_argument("--detector-weights", default="", help="override its weights")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--opts", dest="more_opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ..."
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="model config overrides KEY VALUE")
    return parser


def plan(args, parser):
    """``[(source, {exp_id: text})]`` of the videos that the queries file lists, in the order of
    the inputs; inputs it does not list are named in a warning, listed videos without an input
    too."""
    try:
        queries = read_queries_file(args.queries)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    try:
        sources = expand_inputs(args.inputs)
    except ValueError as e:
        parser.error(str(e))
    by_id = {}
    for s in sources:
        if video_id_of(s) in by_id:
            parser.error(
                f"two inputs have the video id {video_id_of(s)!r}: {by_id[video_id_of(s)]}, {s}"
            )
        by_id[video_id_of(s)] = s
    unlisted = sorted(v for v in by_id if v not in queries)
    missing = sorted(v for v in queries if v not in by_id)
    if unlisted:
        print(f"[infer] inputs without expressions in {args.queries}, skipped: {unlisted}")
    if missing:
        print(f"[infer] videos of {args.queries} without an input: {missing}")
    return [(by_id[v], queries[v]) for v in by_id if v in queries]


def run(args, jobs):
    """One process's share of the videos (every N-th from its rank); rank 0 reports every
    failure and writes them to ``<output>/failed.json``."""
    import tqdm

    import detectron2.utils.comm as comm

    cfg = cfg_for_tool(argparse.ArgumentParser(prog="infer.py"), args.config_file, args.opts)
    predictor = VideoPredictor(
        cfg, detector_config=args.detector_config, detector_weights=args.detector_weights
    )
    rank, world = comm.get_rank(), comm.get_world_size()
    show = not args.quiet and rank == 0
    progress = (
        (lambda it: tqdm.tqdm(it, unit="video", desc=f"videos (process {rank})")) if show else None
    )
    _, failed = infer_videos(predictor, jobs[rank::world], args.output, progress=progress)
    failed = [f for part in comm.all_gather(failed) for f in part] if world > 1 else failed
    if rank == 0:
        path = os.path.join(args.output, FAILED_FILE)
        if failed:
            write_json_atomic(path, [{"video": v, "error": e} for v, e in failed])
        elif os.path.exists(path):
            os.remove(path)
    return failed


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.opts = list(args.opts or []) + list(args.more_opts or [])
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be at least 1, got {args.num_gpus}")
    jobs = plan(args, parser)
    os.makedirs(args.output, exist_ok=True)
    # The models are built once per process; a config or weights problem ends the run here.
    cfg_for_tool(parser, args.config_file, args.opts, weights="a trained checkpoint")
    try:
        launch(run, args.num_gpus, args=(args, jobs))
    except (ValueError, FileNotFoundError) as e:  # the model cannot be built (one process)
        parser.error(str(e))
    path = os.path.join(args.output, FAILED_FILE)
    failed = json.load(open(path)) if os.path.exists(path) else []
    finished = sum(
        os.path.isfile(os.path.join(args.output, f"{video_id_of(s)}.json")) for s, _ in jobs
    )
    print(f"[infer] {finished} of {len(jobs)} videos written to {args.output}")
    if failed:
        print(f"[infer] {len(failed)} video(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f['video']}: {f['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
