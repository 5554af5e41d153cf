#!/usr/bin/env python
"""Segment sentences in your own video (``aamn.engine.VideoPredictor``) and draw the result.

Any video OpenCV decodes (mp4, avi, mov ...; any size, length and frame rate) or a folder of frames;
one or more queries.  Writes an overlay video with one output frame per input frame, of the same
size and frame rate: each query's mask and box in its colour (detectron2's ``Visualizer``), the
queries with their scores and, for AAMN, each query's most attended actor and action words.
Optionally the drawn frames as PNG files and the masks as JSON (COCO RLE per frame and query).

AAMN links proposals into tubes, so it needs the proposal detector (any detectron2 detector config
and its weights: the project's ``configs/synthetic/detector.yaml`` trained by the main job, or a
COCO Faster R-CNN from the model zoo that you have on disk) or a proposal file; the comparison
systems (DynamicFilterSeg, CMDy) need neither::

    python tools/demo.py --config-file configs/synthetic/aamn.yaml \\
        --video my_video.mp4 --query "man walking to the left" --query "red ball" \\
        --output out/my_video.mp4 --json out/my_video.json \\
        --detector-config configs/synthetic/detector.yaml \\
        --detector-weights output/synthetic/detector/model_final.pth \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
"""

import argparse
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time

import cv2
import numpy as np

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.data.video import VideoStream
from aamn.engine import ProposalDetector, QueryError, VideoPredictor, write_json_atomic
from aamn.utils.io import atomic_path, remove_dead_writers, writer_tag
from aamn.utils.masks import mask_to_rle
from aamn.utils.visualizer import draw_video_frame


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the model's config")
    parser.add_argument("--video", required=True, help="a video file or a folder of frames")
    parser.add_argument(
        "--query",
        dest="queries",
        action="append",
        required=True,
        help="a sentence naming the actor (repeat for several)",
    )
    parser.add_argument("--output", required=True, help="the overlay video to write (.mp4)")
    parser.add_argument("--png-dir", default="", help="also write the drawn frames here")
    parser.add_argument("--json", default="", help="also write the masks (RLE) here")
    parser.add_argument("--detector-config", default="", help="the proposal detector's config")
    parser.add_argument("--detector-weights", default="", help="the proposal detector's weights")
    parser.add_argument(
        "--proposals", default="", help="a proposal file instead of the detector (detectron2's)"
    )
    parser.add_argument(
        "--video-id", default="", help="the video's id in --proposals (default: its file name)"
    )
    parser.add_argument(
        "--fps", type=float, default=25.0, help="frame rate of a folder of frames (files: theirs)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="model config overrides, e.g. MODEL.WEIGHTS path"
    )
    return parser


def build_predictor(args, parser):
    """The predictor of the command line (errors become the parser's messages)."""
    cfg = cfg_for_tool(parser, args.config_file, args.opts)
    try:
        detector = None
        if args.detector_config:
            det_cfg = cfg_for_tool(
                parser,
                args.detector_config,
                ["MODEL.WEIGHTS", args.detector_weights],
                weights="the proposal detector's checkpoint (--detector-weights)",
            )
            detector = ProposalDetector(det_cfg)
        return VideoPredictor(
            cfg,
            detector=detector,
            proposal_file=args.proposals or None,
            video_id=args.video_id or None,
        )
    except (ValueError, FileNotFoundError) as e:  # checkpoint, config and proposal errors
        parser.error(str(e))


def _same_path(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _check_writable_folder(folder: str, what: str) -> None:
    """Create ``folder`` if needed and write a probe file into it: ``OSError`` naming ``what``
    when it cannot be written (read-only, a file in the way, no permission)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".demo-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OSError(f"{what}: cannot write into {folder} ({e.strerror or e})") from None


def check_outputs(args) -> None:
    """Every output location, before a model is loaded or a frame decoded: none may be the input
    (the video, or the folder of frames), ``--output`` / ``--json`` must name files, and each
    folder must be writable.  Raises ``ValueError`` / ``OSError`` naming the path."""
    outputs = [("--output", args.output)] + [("--json", args.json)] * bool(args.json)
    for flag, path in outputs:
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path} is a folder; name the file to write")
        if _same_path(path, args.video):
            raise ValueError(f"{flag} {path} is the input video; it would be overwritten")
        _check_writable_folder(os.path.dirname(os.path.abspath(path)), f"{flag} {path}")
    if args.png_dir:
        if os.path.exists(args.png_dir) and not os.path.isdir(args.png_dir):
            raise ValueError(f"--png-dir {args.png_dir} is a file; name a folder")
        if _same_path(args.png_dir, args.video):
            raise ValueError(
                f"--png-dir {args.png_dir} is the input folder of frames; its frames would be "
                "overwritten"
            )
        _check_writable_folder(args.png_dir, f"--png-dir {args.png_dir}")
    if args.json and _same_path(args.json, args.output):
        raise ValueError(f"--json and --output name the same file {args.output}")


def check_written_video(path: str, frames: int, what: str) -> None:
    """``OSError`` unless ``path`` opens as a video of ``frames`` frames (a writer that ran out
    of disk leaves a file without its index, or with fewer frames)."""
    cap = cv2.VideoCapture(path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    finally:
        cap.release()
    if count != frames:
        raise OSError(
            f"{what} was not written whole ({frames} frames drawn, "
            + ("the file does not open" if count < 0 else f"{count} in the file")
            + "; is the disk full?)"
        )


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: the temporary files are removed


def write_outputs(args, predictor, stream):
    """Run the predictor over the stream and write the overlay video, the PNG frames and the
    frames' JSON records; each output appears only once written whole.  Returns (frames, JSON
    records of the frames)."""
    frames_json = []
    count = 0
    png_tmp = None
    if args.png_dir:
        png_dir = os.path.abspath(args.png_dir)
        stem = f".{os.path.basename(png_dir)}.tmp-"
        remove_dead_writers(os.path.dirname(png_dir), stem)
        png_tmp = os.path.join(os.path.dirname(png_dir), f"{stem}{writer_tag()}")
        os.makedirs(png_tmp)
    try:
        suffix = os.path.splitext(args.output)[1] or ".mp4"
        with atomic_path(args.output, suffix=suffix) as tmp:
            writer = cv2.VideoWriter(
                tmp, cv2.VideoWriter_fourcc(*"mp4v"), stream.fps, (stream.width, stream.height)
            )
            if not writer.isOpened():
                raise OSError(f"OpenCV cannot write the video {args.output} (mp4v codec)")
            try:
                for item in predictor(stream, args.queries, progress=not args.quiet):
                    drawn = draw_video_frame(item["image"], item["queries"])
                    writer.write(np.ascontiguousarray(drawn[..., ::-1]))
                    count += 1
                    if png_tmp:
                        name = os.path.join(png_tmp, f"{item['index'] + 1:05d}.png")
                        if not cv2.imwrite(name, drawn[..., ::-1]):
                            raise OSError(f"--png-dir: cannot write {name}")
                    if args.json:
                        frames_json.append(
                            {
                                "frame": item["index"] + 1,
                                "queries": [_json_result(r) for r in item["queries"]],
                            }
                        )
            finally:
                writer.release()
            check_written_video(tmp, count, f"The overlay video {args.output}")
        if png_tmp:
            os.makedirs(args.png_dir, exist_ok=True)
            for name in sorted(os.listdir(png_tmp)):
                os.replace(os.path.join(png_tmp, name), os.path.join(args.png_dir, name))
    finally:
        if png_tmp and os.path.isdir(png_tmp):
            shutil.rmtree(png_tmp, ignore_errors=True)
    return count, frames_json


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (math.isfinite(args.fps) and args.fps > 0):
        parser.error(f"--fps must be a positive number of frames per second, got {args.fps}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_outputs(args)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    predictor = build_predictor(args, parser)
    try:
        predictor.query_inputs(args.queries)
        stream = VideoStream(args.video, fps=args.fps)
        predictor.check_video(stream)
    except (QueryError, OSError, ValueError) as e:
        parser.error(str(e))
    print(f"[demo] {stream}; queries: {args.queries}")

    signal.signal(signal.SIGTERM, _terminate)
    start = time.perf_counter()
    try:
        count, frames_json = write_outputs(args, predictor, stream)
        if args.json:
            write_json_atomic(
                args.json,
                {
                    "video": os.path.abspath(args.video),
                    "fps": stream.fps,
                    "height": stream.height,
                    "width": stream.width,
                    "num_frames": count,
                    "queries": list(args.queries),
                    "model": predictor.cfg.MODEL.META_ARCHITECTURE,
                    "weights": predictor.cfg.MODEL.WEIGHTS,
                    "frames": frames_json,
                },
            )
    except (OSError, ValueError, KeyError) as e:  # a damaged frame, a full disk, ...
        parser.exit(2, f"{parser.prog}: error: {e.args[0] if isinstance(e, KeyError) else e}\n")
    seconds = time.perf_counter() - start
    print(
        f"[demo] {count} frames in {seconds:.1f} s ({count / max(seconds, 1e-9):.1f} frames/s): "
        f"{args.output}"
        + (f", {args.json}" if args.json else "")
        + (f", PNG frames in {args.png_dir}" if args.png_dir else "")
    )
    return 0


def _json_result(r):
    out = {
        "query": r["query"],
        "score": round(float(r["score"]), 5),
        "box": [round(float(v), 2) for v in r["box"]],
        "segmentation": mask_to_rle(r["mask"]),
    }
    if "tube_index" in r:
        out["clip"], out["tube_index"] = int(r["clip"]), int(r["tube_index"])
    return out


if __name__ == "__main__":
    sys.exit(main())
