"""Compute the optical-flow cache of every video of an A2D- or J-HMDB-Sentences-layout tree.

Usage::

    python datasets/prepare_flow.py --dataset-root datasets/a2d_sentences --workers 4
    python datasets/prepare_flow.py --dataset-root datasets/jhmdb_sentences
    # on a cluster, job i of n (0-based):
    python datasets/prepare_flow.py --dataset-root datasets/a2d_sentences --shard 3/16

    python datasets/prepare_flow.py --dataset synthetic_a2d_train   # a registered data set's tree

The videos are those the tree's layout lists (``aamn.data.datasets.common.VIDEO_LAYOUTS``, which
each loader registers: A2D, every video of ``Release/videoset.csv`` except those in
``text_annotations/a2d_missed_videos.txt``; J-HMDB, every ``Rename_Images/<action>/<video_id>``
folder); ``--dataset NAME`` takes the root and layout of a registered data set.  ``--shard i/n``
keeps the videos ``i, i+n, i+2n, ...`` of the sorted list.

Output (the format ``aamn.data.flow`` documents): ``<root>/<flow-dir>/<video_id>/<frame:05d>.png``,
one per video frame, channels (x, y, magnitude) quantised with ``--bound``, and a ``flow.json``.
Each video is written to a hidden temporary folder and renamed when complete, so an interrupted run
leaves no half video; a rerun skips the videos whose folder is complete (``--overwrite`` recomputes
them).  When every video of the tree is complete, ``<root>/<flow-dir>/.complete`` is written.
"""

import argparse
import logging
import multiprocessing as mp
import os
import sys
import time

from tqdm import tqdm

import aamn.data.datasets  # noqa: F401  (registers the data sets and their layouts)
from aamn.data.flow import FLOW_METHODS
from aamn.data.datasets.common import VIDEO_LAYOUTS, detect_layout, list_layout_videos
from aamn.utils.io import parse_shard
from aamn.utils.cli import run_tool

logger = logging.getLogger("prepare_flow")


def _init_worker():
    import cv2

    cv2.setNumThreads(1)


def _is_complete(video_path, folder, bound):
    from aamn.data.flow import is_flow_complete
    from aamn.data.video import video_info

    if not os.path.isdir(folder):
        return False
    try:
        n = video_info(video_path)[0]
    except (OSError, IOError):
        return False
    return is_flow_complete(folder, num_frames=n, bound=bound)


def _process(job):
    """Compute one video's flow; returns (video_id, status, detail)."""
    vid, video_path, folder, bound, method, overwrite = job
    from aamn.data.flow import compute_and_write_video_flow

    try:
        if not overwrite and _is_complete(video_path, folder, bound):
            return vid, "skipped", None
        if not os.path.exists(video_path):
            return vid, "failed", f"video not found: {video_path}"
        n = compute_and_write_video_flow(video_path, folder, bound, method=method, overwrite=True)
        return vid, "done", n
    except Exception as e:  # one bad video must not stop the others
        return vid, "failed", f"{type(e).__name__}: {e}"


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset-root", help="a data-set tree (A2D / J-HMDB Sentences layout)")
    where.add_argument("--dataset", help="a registered data set: its tree")
    p.add_argument(
        "--layout",
        choices=sorted(VIDEO_LAYOUTS),
        default=None,
        help="the tree's layout (default: the data set's, or detected from its folders)",
    )
    p.add_argument(
        "--flow-dir",
        default="flow",
        help="output folder, relative to the root (INPUT.FLOW.DIR; default: flow)",
    )
    p.add_argument(
        "--bound",
        type=float,
        default=20.0,
        help="quantisation bound in pixels (INPUT.FLOW.BOUND; default: 20)",
    )
    p.add_argument(
        "--method",
        choices=list(FLOW_METHODS),
        default="dis",
        help="OpenCV optical flow: DIS with its medium, fast or ultrafast preset, or Farneback "
        "(default: dis, the medium preset)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    p.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="i/n",
        help="process only shard i of n (0-based), e.g. 2/8",
    )
    p.add_argument("--overwrite", action="store_true", help="recompute complete videos too")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    layout = args.layout
    if args.dataset:
        from detectron2.data import MetadataCatalog

        from aamn.data.datasets.builtin import check_registered

        try:
            check_registered("--dataset", [args.dataset])
        except KeyError as e:
            raise SystemExit(f"error: {e.args[0]}") from None
        meta = MetadataCatalog.get(args.dataset)
        root, layout = meta.root, layout or meta.get("dataset_layout", None)
    root = os.path.abspath(args.dataset_root or root)
    if not os.path.isdir(root):
        raise SystemExit(f"Dataset root not found: {root}")
    try:
        layout = layout or detect_layout(root)
        videos = list_layout_videos(root, layout)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    flow_root = os.path.join(root, args.flow_dir)
    i, n = args.shard
    mine = videos[i::n]
    logger.info(
        "%s (%s layout): %d videos, shard %d/%d: %d videos -> %s",
        root,
        layout,
        len(videos),
        i,
        n,
        len(mine),
        flow_root,
    )
    jobs = [
        (vid, path, os.path.join(flow_root, vid), args.bound, args.method, args.overwrite)
        for vid, path in mine
    ]
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures = []
    start = time.time()
    bar = tqdm(total=len(jobs), desc="optical flow", unit="video")
    if args.workers <= 1:
        _init_worker()
        results = map(_process, jobs)
        pool = None
    else:
        pool = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(
            args.workers, initializer=_init_worker
        )
        results = pool.imap_unordered(_process, jobs, chunksize=1)
    try:
        for vid, status, detail in results:
            counts[status] += 1
            if status == "failed":
                failures.append((vid, detail))
            bar.update(1)
            bar.set_postfix(counts)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    logger.info(
        "done %d, skipped %d (complete), failed %d in %.0f s",
        counts["done"],
        counts["skipped"],
        counts["failed"],
        time.time() - start,
    )
    for vid, detail in failures:
        logger.error("  %s: %s", vid, detail)

    stamp = os.path.join(flow_root, ".complete")
    if all(_is_complete(path, os.path.join(flow_root, vid), args.bound) for vid, path in videos):
        os.makedirs(flow_root, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(f"{len(videos)} videos, bound {args.bound}, method {args.method}\n")
        logger.info("every video of %s has its flow: wrote %s", root, stamp)
    elif os.path.exists(stamp):
        os.remove(stamp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
