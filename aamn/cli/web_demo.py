"""A page in the browser for any of the project's models (``aamn.apps.web_demo``, on Flask)::

    python tools/web_demo.py --config-file configs/synthetic/aamn.yaml \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
    # then open http://127.0.0.1:7860

Upload a video or pick one of the examples (the synthetic test videos, or ``--examples GLOB``),
type one query per line, and the page shows the overlay video, the tubes picture and the masks
JSON to download.  It runs offline with local weights (or any ``MODEL.WEIGHTS`` URL detectron2
takes) and serves 127.0.0.1 unless ``--host`` says otherwise.  Limits: ``--max-upload-mb``
(512), ``--max-queries`` (10 a request), ``--max-frames`` (1800 a video), ``--keep-results``
(20 kept; the server removes its results when it stops).
"""

import argparse
import glob
import os
import signal
import sys

import aamn  # noqa: F401  (registers the models)
from aamn.config import cfg_for_tool
from aamn.engine import VideoPredictor
from aamn.apps.web_demo import (
    KEEP_RESULTS,
    MAX_FRAMES,
    MAX_QUERIES,
    MAX_UPLOAD_MB,
    create_app,
)
from aamn.utils.io import positive_int, synthetic_root
from aamn.utils.cli import add_detector_arguments, model_tool_parser, run_tool


def build_parser():
    parser = model_tool_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--examples",
        default=os.path.join(synthetic_root(), "a2d_sentences", "Release", "clips320H", "*.mp4"),
        help="glob of the example videos (default: the synthetic benchmark's videos)",
    )
    parser.add_argument("--num-examples", type=int, default=12, help="examples offered at most")
    parser.add_argument(
        "--workdir",
        default="",
        help="where results go (default: a new temporary folder, removed when the server stops; "
        "in a folder given here, the results this server made are removed then)",
    )
    parser.add_argument(
        "--max-upload-mb", type=positive_int, default=MAX_UPLOAD_MB, help="an upload's size"
    )
    parser.add_argument(
        "--max-queries", type=positive_int, default=MAX_QUERIES, help="queries per request"
    )
    parser.add_argument(
        "--max-frames", type=positive_int, default=MAX_FRAMES, help="a video's length in frames"
    )
    parser.add_argument(
        "--keep-results",
        type=positive_int,
        default=KEEP_RESULTS,
        help="results kept on disk (the oldest are removed)",
    )
    add_detector_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def annotated_queries(examples):
    """``{name: [queries]}`` of the examples that are videos of a synthetic A2D-layout tree
    (``Release/clips320H/<video_id>.mp4``): the queries its ``synthetic_meta.json`` annotates."""
    import json

    out, read = {}, {}
    for name, path in examples.items():
        tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
        meta = os.path.join(tree, "synthetic_meta.json")
        if not os.path.isfile(meta):
            continue
        if meta not in read:
            with open(meta, encoding="utf-8") as f:
                read[meta] = json.load(f).get("queries", [])
        vid = os.path.splitext(os.path.basename(path))[0]
        out[name] = [q["query"] for q in read[meta] if q.get("video_id") == vid]
    return out


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = cfg_for_tool(parser, args.config_file, args.opts, weights="a trained checkpoint")
    try:
        predictor = VideoPredictor(
            cfg, detector_config=args.detector_config, detector_weights=args.detector_weights
        )
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    found = sorted(glob.glob(args.examples))[: max(0, args.num_examples)]
    examples = {os.path.basename(p): p for p in found}
    app = create_app(
        predictor,
        examples,
        example_queries=annotated_queries(examples),
        workdir=args.workdir or None,
        max_upload_mb=args.max_upload_mb,
        max_queries=args.max_queries,
        max_frames=args.max_frames,
        keep_results=args.keep_results,
    )
    print(
        f"[web_demo] http://{args.host}:{args.port}/  ({len(examples)} examples; results in "
        f"{app.workdir})",
        flush=True,
    )
    # SIGTERM (a service manager's stop) unwinds like Ctrl-C, so the results are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    finally:
        app.cleanup()
        print(f"[web_demo] stopped; removed its results from {app.workdir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
