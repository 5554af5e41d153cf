"""Segment every expression of a queries file in many videos, with the models loaded once
(``aamn.apps.batch_inference``)::

    python tools/infer.py --config-file configs/synthetic/aamn.yaml \\
        --input "videos/*.mp4" "JPEGImages/*" --queries meta_expressions.json \\
        --output out/ MODEL.WEIGHTS output/synthetic/aamn/model_final.pth

The queries file is Ref-YouTube-VOS's ``meta_expressions.json`` form or a CSV ``video,exp_id,exp``;
a video's id is its file or folder name without extension.  The output follows the Ref-YouTube-VOS
submission layout: ``out/Annotations/<video_id>/<exp_id>/<frame>.png`` (8-bit, 0 / 255, one per
input frame) and ``out/<video_id>.json`` (RLE masks, boxes, scores, AAMN's tubes, and the record
of the expressions and model they were computed with); the run's own state is in
``out/.aamn-infer/``.  Each video's outputs appear whole once it is done: a rerun skips the
finished videos, redoes unfinished ones, and refuses, naming them, videos whose record differs
(``--overwrite`` redoes them).  Folders this tool did not write (a data set's ground truth) are
never replaced.  A video that fails is named at the end with its error (exit status 1), and the
others' outputs are kept.

More videos than one process holds: ``--num-gpus N`` (processes on this machine),
``--num-machines M --machine-rank R --dist-url tcp://HOST:PORT`` (as ``train_net.py``), or
``--shard i/n`` for a scheduler's job arrays (each array task runs one shard into the same
folder).  Every video is written by one process; the union of the shards is, byte for byte, one
run's (with the same number of threads per process).
"""

import argparse
import json
import os
import sys

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.engine import VideoPredictor, launch_from_args, write_json_atomic
from aamn.apps.batch_inference import (
    STATE_DIR,
    check_output_folder,
    infer_videos,
    model_record,
    plan_videos,
    read_queries_file,
    shard_jobs,
    video_id_of,
)
from aamn.utils.io import expand_inputs, parse_shard, positive_int
from aamn.utils.cli import add_detector_arguments, model_tool_parser, run_tool


def build_parser():
    parser = model_tool_parser(__doc__)
    parser.add_argument(
        "--input",
        dest="inputs",
        nargs="+",
        action="extend",
        required=True,
        metavar="PATH_OR_GLOB",
        help="video files or folders of frames (globs quoted); several after one --input, or "
        "--input repeated",
    )
    parser.add_argument("--queries", required=True, help="meta_expressions.json or a CSV")
    parser.add_argument("--output", required=True, help="the output folder")
    parser.add_argument(
        "--num-gpus", type=positive_int, default=1, help="processes per machine (gloo on CPU)"
    )
    parser.add_argument("--num-machines", type=positive_int, default=1, help="machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank")
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="where the processes meet: 'auto' (one machine) or tcp://HOST:PORT of rank 0",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="i/n",
        help="only every n-th video from the i-th (0-based), for a scheduler's job arrays",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo the videos whose results were computed with other expressions or another "
        "model (without it the run names them and stops)",
    )
    add_detector_arguments(parser)
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


def failed_file(args) -> str:
    """Where the failures of this run (or shard) are written, inside the run's state folder."""
    i, n = args.shard
    name = "failed.json" if n == 1 else f"failed-{i}-of-{n}.json"
    return os.path.join(args.output, STATE_DIR, name)


def run(args, plans, model):
    """One process's share of the planned videos (``shard_jobs``); rank 0 reports every failure
    and writes them to ``failed_file``."""
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
    mine = shard_jobs(plans, (0, 1), rank, world)  # plans are this shard's already
    _, failed = infer_videos(predictor, mine, args.output, model, progress=progress)
    failed = [f for part in comm.all_gather(failed) for f in part] if world > 1 else failed
    if rank == 0:
        path = failed_file(args)
        if failed:
            write_json_atomic(path, [{"video": v, "error": e} for v, e in failed])
        elif os.path.exists(path):
            os.remove(path)
    return failed


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.opts = list(args.opts or []) + list(args.more_opts or [])
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error(f"--machine-rank must be in [0, {args.num_machines}), got {args.machine_rank}")
    try:
        check_output_folder(args.output)
    except ValueError as e:
        parser.error(str(e))
    jobs = shard_jobs(plan(args, parser), args.shard)
    # The models are built once per process; a config or weights problem ends the run here.
    cfg = cfg_for_tool(parser, args.config_file, args.opts, weights="a trained checkpoint")
    try:
        model = model_record(cfg, args.detector_config, args.detector_weights)
        plans = plan_videos(jobs, args.output, model, overwrite=args.overwrite)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    skipped = sum(p.action == "skip" for p in plans)
    redone = [f"{p.video_id} ({p.reason})" for p in plans if p.action == "redo"]
    if skipped:
        print(f"[infer] {skipped} video(s) finished with the same record, skipped")
    if redone:
        print(f"[infer] redone: {', '.join(redone)}")
    os.makedirs(args.output, exist_ok=True)
    if all(p.action == "skip" for p in plans):  # nothing to do: no model is loaded
        if os.path.exists(failed_file(args)):
            os.remove(failed_file(args))
        print(f"[infer] {len(plans)} of {len(plans)} videos written to {args.output}")
        return 0
    try:
        launch_from_args(run, args, (args, plans, model))
    except (ValueError, FileNotFoundError) as e:  # the model cannot be built (one process)
        parser.error(str(e))
    path = failed_file(args)
    failed = json.load(open(path)) if os.path.exists(path) else []
    finished = sum(os.path.isfile(os.path.join(args.output, f"{p.video_id}.json")) for p in plans)
    print(f"[infer] {finished} of {len(plans)} videos written to {args.output}")
    if failed:
        print(f"[infer] {len(failed)} video(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f['video']}: {f['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
