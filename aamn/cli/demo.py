"""Segment sentences in your own videos (``aamn.engine.VideoPredictor``) and draw the result.

Any video OpenCV decodes (mp4, avi, mov ...; any size, length and frame rate), a folder of frames,
several of them (``--input`` takes files, folders and globs; the models are loaded once), or a
camera (``--webcam``); one or more queries.  Writes an overlay video (H.264 mp4, which browsers and
notebooks play) with one output frame per input frame at the input's frame rate: each query's mask
and box in its colour (detectron2's ``Visualizer``), the queries with their scores and, for AAMN,
each query's most attended actor and action words.  Inputs whose shorter side is under 360 pixels
are drawn at an integer scale that keeps the captions readable (``--scale``).  Optionally the drawn
frames as PNG files and the masks as JSON (COCO RLE per frame and query, at the input's size).

AAMN links proposals into tubes: its checkpoint names the proposal detector its training proposals
came from, so the config and the weights are all it needs (``--detector-config`` /
``--detector-weights`` override the recorded detector; ``--proposals`` reads a proposal file
instead).  The comparison systems (DynamicFilterSeg, CMDy) need no detector::

    python tools/demo.py --config-file configs/synthetic/aamn.yaml \\
        --input my_video.mp4 --query "man walking to the left" --query "red ball" \\
        --output out/my_video.mp4 --json out/my_video.json \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
    python tools/demo.py --config-file ... --input "videos/*.mp4" --query ... --output out/ ...
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

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.data.video import VideoStream, VideoWriter
from aamn.engine import QueryError, VideoPredictor, write_json_atomic
from aamn.engine.predictor import result_record
from aamn.utils.io import atomic_path, expand_inputs, temporary_path
from aamn.utils.visualizer import display_scale, draw_video_frame
from aamn.utils.cli import add_detector_arguments, model_tool_parser, run_tool


def build_parser():
    parser = model_tool_parser(__doc__)
    parser.add_argument(
        "--input",
        "--video",
        dest="inputs",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="video files, folders of frames or globs (quote them); --video is an alias",
    )
    parser.add_argument(
        "--webcam",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="INDEX",
        help="read the camera INDEX (default 0) until --max-frames or Ctrl-C (the frames "
        "segmented until then are kept)",
    )
    parser.add_argument(
        "--max-frames", type=int, default=0, help="with --webcam: stop after this many frames"
    )
    parser.add_argument(
        "--query",
        dest="queries",
        action="append",
        required=True,
        help="a sentence naming the actor (repeat for several)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="the overlay video to write (.mp4); a folder with several inputs (<name>.mp4 each)",
    )
    parser.add_argument(
        "--png-dir", default="", help="also write the drawn frames here (<name>/ with several)"
    )
    parser.add_argument(
        "--json", default="", help="also write the masks (RLE) here (a folder with several)"
    )
    add_detector_arguments(parser)
    parser.add_argument(
        "--proposals", default="", help="a proposal file instead of the detector (detectron2's)"
    )
    parser.add_argument(
        "--video-id", default="", help="the video's id in --proposals (default: its file name)"
    )
    parser.add_argument(
        "--fps", type=float, default=25.0, help="frame rate of a folder of frames (files: theirs)"
    )
    parser.add_argument(
        "--scale",
        default="auto",
        help="drawing scale: 'auto' (an integer scale bringing the shorter side to at least 360 "
        "pixels; 1 for larger inputs) or a number",
    )
    parser.add_argument(
        "--timings", action="store_true", help="print the seconds spent in each stage"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--opts",
        dest="more_opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="model config overrides KEY VALUE ... (as detectron2's demo; positional ones too)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="model config overrides, e.g. MODEL.WEIGHTS path"
    )
    return parser


def build_predictor(args, parser):
    """The predictor of the command line (errors become the parser's messages)."""
    cfg = cfg_for_tool(parser, args.config_file, args.opts)
    try:
        # AAMN's proposal detector: the one its checkpoint names, the flags overriding it
        return VideoPredictor(
            cfg,
            proposal_file=args.proposals or None,
            video_id=args.video_id or None,
            detector_config=args.detector_config,
            detector_weights=args.detector_weights,
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


def resolve_inputs(args):
    """The inputs of the command line: every file or folder of ``--input`` (globs expanded, in
    order), or the camera of ``--webcam``.  Raises ``ValueError`` naming a pattern that matches
    nothing, or two inputs whose outputs would share a name."""
    if args.webcam is not None:
        if args.inputs:
            raise ValueError("give --input or --webcam, not both")
        return [args.webcam]
    if not args.inputs:
        raise ValueError("give the videos with --input (files, folders of frames or globs)")
    inputs = expand_inputs(args.inputs)
    names = [_name(i) for i in inputs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if len(inputs) > 1 and twice:
        raise ValueError(f"several inputs are named {twice[0]!r}; their outputs would collide")
    return inputs


def _name(source) -> str:
    if isinstance(source, int):
        return f"webcam{source}"
    return os.path.splitext(os.path.basename(os.path.normpath(source)))[0]


def plan_outputs(args, inputs):
    """``[(input, output video, JSON or "", PNG folder or "")]``: ``--output`` (and ``--json``,
    ``--png-dir``) name files for one input and folders for several."""
    several = len(inputs) > 1
    if several and os.path.splitext(args.output)[1]:
        raise ValueError(
            f"--output {args.output} names a file, but there are {len(inputs)} inputs: name a "
            "folder (each video is written to <folder>/<name>.mp4)"
        )
    jobs = []
    for source in inputs:
        if not several:
            jobs.append((source, args.output, args.json, args.png_dir))
            continue
        name = _name(source)
        jobs.append(
            (
                source,
                os.path.join(args.output, name + ".mp4"),
                os.path.join(args.json, name + ".json") if args.json else "",
                os.path.join(args.png_dir, name) if args.png_dir else "",
            )
        )
    return jobs


def check_outputs(source, output, json_path, png_dir) -> None:
    """Every output location of one input, before a model is loaded or a frame decoded: none may
    be the input (the video, or the folder of frames), the video and JSON outputs must name
    files, and each folder must be writable.  Raises ``ValueError`` / ``OSError`` naming it."""
    source = "" if isinstance(source, int) else source
    outputs = [("--output", output)] + [("--json", json_path)] * bool(json_path)
    for flag, path in outputs:
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path} is a folder; name the file to write")
        if source and _same_path(path, source):
            raise ValueError(f"{flag} {path} is the input video; it would be overwritten")
        _check_writable_folder(os.path.dirname(os.path.abspath(path)), f"{flag} {path}")
    if png_dir:
        if os.path.exists(png_dir) and not os.path.isdir(png_dir):
            raise ValueError(f"--png-dir {png_dir} is a file; name a folder")
        if source and _same_path(png_dir, source):
            raise ValueError(
                f"--png-dir {png_dir} is the input folder of frames; its frames would be "
                "overwritten"
            )
        _check_writable_folder(png_dir, f"--png-dir {png_dir}")
    if json_path and _same_path(json_path, output):
        raise ValueError(f"--json and --output name the same file {output}")


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


def _parse_scale(text: str):
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--scale must be 'auto' or a positive number, got {text!r}")
    return value


def write_outputs(args, predictor, stream, output, json_path, png_dir, timings, live=False):
    """Run the predictor over the stream and write the overlay video, the PNG frames and the
    frames' JSON records; each output appears only once written whole.  Returns (frames, JSON
    records of the frames, whether Ctrl-C stopped it).

    ``live`` (a camera, stopped with Ctrl-C): Ctrl-C ends the stream, and the frames segmented
    until then are written as a whole video (and JSON, PNG frames); before the first frame it
    keeps nothing.  Otherwise Ctrl-C stops the run and removes what it had begun."""
    frames_json = []
    stopped = []  # Ctrl-C's mark (live)
    count = 0
    png_tmp = None
    scale = _parse_scale(args.scale) or display_scale(stream.height, stream.width)
    out_w, out_h = int(round(stream.width * scale)), int(round(stream.height * scale))
    if png_dir:
        png_dir = os.path.abspath(png_dir)
        stem = f".{os.path.basename(png_dir)}.tmp-"
        png_tmp = temporary_path(os.path.dirname(png_dir), stem)
        os.makedirs(png_tmp)
    try:
        suffix = os.path.splitext(output)[1] or ".mp4"
        with atomic_path(output, suffix=suffix) as tmp:
            writer = VideoWriter(tmp, stream.fps, out_w, out_h, name=output)
            try:
                for item in _until_interrupted(
                    predictor(stream, args.queries, progress=not args.quiet), live, stopped
                ):
                    start = time.perf_counter()
                    drawn = draw_video_frame(item["image"], item["queries"], size=(out_h, out_w))
                    timings["draw"] += time.perf_counter() - start
                    start = time.perf_counter()
                    writer.write(drawn)
                    timings["encode"] += time.perf_counter() - start
                    count += 1
                    if png_tmp:
                        name = os.path.join(png_tmp, f"{item['index'] + 1:05d}.png")
                        if not cv2.imwrite(name, drawn[..., ::-1]):
                            raise OSError(f"--png-dir: cannot write {name}")
                    if json_path:
                        start = time.perf_counter()
                        frames_json.append(
                            {
                                "frame": item["index"] + 1,
                                "queries": [result_record(r) for r in item["queries"]],
                            }
                        )
                        timings["json"] += time.perf_counter() - start
            finally:
                start = time.perf_counter()
                writer.close()
                timings["encode"] += time.perf_counter() - start
            if stopped and not count:
                raise KeyboardInterrupt  # stopped before the first frame: nothing to keep
            check_written_video(tmp, count, f"The overlay video {output}")
        if png_tmp:
            os.makedirs(png_dir, exist_ok=True)
            for name in sorted(os.listdir(png_tmp)):
                os.replace(os.path.join(png_tmp, name), os.path.join(png_dir, name))
    finally:
        if png_tmp and os.path.isdir(png_tmp):
            shutil.rmtree(png_tmp, ignore_errors=True)
    return count, frames_json, bool(stopped)


def _until_interrupted(items, live: bool, stopped: list):
    """``items`` until they end; ``live`` (a camera): until Ctrl-C, which is taken as the
    camera's end: the frame at hand is finished, ``stopped`` gets a mark and no more is read."""
    if not live:
        yield from items
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stopped.append(signum))
    try:
        for item in items:
            yield item
            if stopped:
                break
    except KeyboardInterrupt:  # raised by a handler installed below this one
        stopped.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def run_one(args, predictor, job):
    """Segment one input and write its outputs; returns (frames, seconds, stage timings)."""
    source, output, json_path, png_dir = job
    if isinstance(source, int):
        stream = VideoStream.from_camera(source, max_frames=args.max_frames)
    else:
        stream = VideoStream(source, fps=args.fps)
    print(f"[demo] {stream}; queries: {args.queries}")  # the predictor checks it first
    start = time.perf_counter()
    timings = {"draw": 0.0, "encode": 0.0, "json": 0.0}
    live = isinstance(source, int)
    count, frames_json, interrupted = write_outputs(
        args, predictor, stream, output, json_path, png_dir, timings, live=live
    )
    if interrupted:
        print(f"[demo] stopped with Ctrl-C: the {count} frames segmented until then are kept")
    if json_path:
        write_json_atomic(
            json_path,
            {
                "video": os.path.abspath(source) if isinstance(source, str) else f"camera {source}",
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
    timings = {**predictor.timings, **timings}
    return count, time.perf_counter() - start, timings


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.opts = list(args.opts or []) + list(args.more_opts or [])
    if not (math.isfinite(args.fps) and args.fps > 0):
        parser.error(f"--fps must be a positive number of frames per second, got {args.fps}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _parse_scale(args.scale)
        jobs = plan_outputs(args, resolve_inputs(args))
        for job in jobs:
            check_outputs(*job)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    predictor = build_predictor(args, parser)
    try:
        predictor.query_inputs(args.queries)
    except QueryError as e:
        parser.error(str(e))

    signal.signal(signal.SIGTERM, _terminate)
    failed = []
    for job in jobs:
        try:
            count, seconds, timings = run_one(args, predictor, job)
        except (OSError, ValueError, KeyError) as e:  # a damaged frame, a full disk, ...
            message = e.args[0] if isinstance(e, KeyError) else str(e)
            if len(jobs) == 1:
                parser.exit(2, f"{parser.prog}: error: {message}\n")
            print(f"[demo] {job[0]}: error: {message}", file=sys.stderr)
            failed.append((job[0], message))
            continue
        print(
            f"[demo] {count} frames in {seconds:.1f} s ({count / max(seconds, 1e-9):.1f} "
            f"frames/s): {job[1]}"
            + (f", {job[2]}" if job[2] else "")
            + (f", PNG frames in {job[3]}" if job[3] else "")
        )
        if args.timings:
            print(
                "[demo] seconds per stage: "
                + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(timings.items(), key=lambda kv: -kv[1])
                )
            )
    if failed:
        print(f"[demo] {len(failed)} of {len(jobs)} inputs failed:", file=sys.stderr)
        for source, message in failed:
            print(f"  {source}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
