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
import os
import sys
import time

import cv2
import numpy as np
import torch

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.data.video import VideoStream
from aamn.engine import ProposalDetector, QueryError, VideoPredictor, write_json_atomic
from aamn.utils.io import atomic_path
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


def _cpu_if_no_gpu(cfg):
    cfg.defrost()
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def build_predictor(args, parser):
    """The predictor of the command line (errors become the parser's messages)."""
    cfg = _cpu_if_no_gpu(cfg_for_tool(parser, args.config_file, args.opts))
    detector = None
    if args.detector_config:
        det_cfg = cfg_for_tool(
            parser,
            args.detector_config,
            ["MODEL.WEIGHTS", args.detector_weights],
            weights="the proposal detector's checkpoint (--detector-weights)",
        )
        detector = ProposalDetector(_cpu_if_no_gpu(det_cfg))
    try:
        return VideoPredictor(
            cfg,
            detector=detector,
            proposal_file=args.proposals or None,
            video_id=args.video_id or None,
        )
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    predictor = build_predictor(args, parser)
    try:
        predictor.query_inputs(args.queries)
        stream = VideoStream(args.video, fps=args.fps)
    except (QueryError, OSError) as e:
        parser.error(str(e))
    print(f"[demo] {stream}; queries: {args.queries}")

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if args.png_dir:
        os.makedirs(args.png_dir, exist_ok=True)
    frames_json = []
    start = time.perf_counter()
    suffix = os.path.splitext(args.output)[1] or ".mp4"
    with atomic_path(args.output, suffix=suffix) as tmp:
        writer = cv2.VideoWriter(
            tmp,
            cv2.VideoWriter_fourcc(*"mp4v"),
            stream.fps,
            (stream.width, stream.height),
        )
        if not writer.isOpened():
            parser.error(f"OpenCV cannot write the video {args.output} (mp4v codec)")
        count = 0
        try:
            for item in predictor(stream, args.queries, progress=not args.quiet):
                drawn = draw_video_frame(item["image"], item["queries"])
                writer.write(np.ascontiguousarray(drawn[..., ::-1]))
                count += 1
                if args.png_dir:
                    cv2.imwrite(
                        os.path.join(args.png_dir, f"{item['index'] + 1:05d}.png"), drawn[..., ::-1]
                    )
                if args.json:
                    frames_json.append(
                        {
                            "frame": item["index"] + 1,
                            "queries": [_json_result(r) for r in item["queries"]],
                        }
                    )
        finally:
            writer.release()
    seconds = time.perf_counter() - start
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
