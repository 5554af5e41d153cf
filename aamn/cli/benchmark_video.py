"""Whole-video inference (``aamn.engine.VideoPredictor``): speed, and accuracy on annotated frames.

Speed (``--video``): each model on one video, every frame segmented, in one process, the models
interleaved (``--repeat`` rounds, the best of each kept): frames per second end to end (decoding,
optical flow, proposals, model, results) and the milliseconds per frame of each part.  A model
that segments its whole clip (AAMN) runs twice: clip by clip (``TEST.VIDEO.STEP clip``) and one
clip per frame (``frame``, every frame the key frame of its own clip, as the comparison systems
must run).

Accuracy (``--dataset``): every video of a registered data set run whole with all of its queries,
the masks of its annotated frames scored as the evaluator scores single frames
(``compute_rvos_metrics``): clip by clip with tubes linked across clips (``LINK_WEIGHT`` 1), clip by
clip without linking (0), and one clip per frame.  Proposals come from the data set's proposal file
(the evaluator's), the flow is computed on the fly.

    python tools/benchmark_video.py --threads 2 \\
        --video ~/videos/carphone.mp4 --query "man talking" --query "person in the car" \\
        --model AAMN configs/synthetic/aamn.yaml output/synthetic/aamn/model_final.pth \\
        --model CMDy configs/synthetic/cmdy.yaml output/cmdy/model_final.pth \\
        --detector-config configs/synthetic/detector.yaml \\
        --detector-weights output/synthetic/detector/model_final.pth \\
        --dataset synthetic_a2d_test
"""

import argparse
import sys
from collections import defaultdict

import torch

import aamn  # noqa: F401  (registers models and data sets)
from aamn.config import get_aamn_cfg
from aamn.data.proposals import reads_proposal_files
from aamn.data.video import VideoStream
from aamn.engine import ProposalDetector, VideoPredictor
from aamn.evaluation.metrics import box_iou, compute_rvos_metrics
from aamn.benchmark.timing import time_video
from aamn.utils.cli import run_tool


def dataset_accuracy(predictor, dataset_name):
    """Metrics of whole-video inference on the annotated frames of a data set."""
    from detectron2.data import DatasetCatalog
    from pycocotools import mask as mask_util

    by_video = defaultdict(list)
    for r in DatasetCatalog.get(dataset_name):
        by_video[r["video_id"]].append(r)
    preds, gts, scores = [], [], []
    boundaries = switches = 0
    for video_id, records in sorted(by_video.items()):
        queries = sorted({r["query"] for r in records})
        predictor.video_id = video_id
        wanted = defaultdict(list)  # 0-based frame -> records
        for r in records:
            wanted[int(r["frame_idx"]) - 1].append(r)
        last = None
        for item in predictor(records[0]["file_name"], queries):
            first = item["queries"][0].get("clip_frames", [None])[0] == item["index"]
            if last is not None and first:  # a clip boundary: does each query's box jump?
                for q, res in enumerate(item["queries"]):
                    boundaries += 1
                    switches += box_iou(last[q]["box"], res["box"]) < 0.5
            last = item["queries"]
            for r in wanted.get(item["index"], []):
                res = item["queries"][queries.index(r["query"])]
                gt = next(a for a in r["annotations"] if a["instance_id"] == r["instance_id"])
                preds.append(res["mask"])
                gts.append(mask_util.decode(gt["segmentation"]).astype(bool))
                scores.append(res["score"])
    metrics = compute_rvos_metrics(preds, gts, scores)
    metrics["switches"] = 100.0 * switches / max(boundaries, 1) if boundaries else float("nan")
    return metrics, len(preds)


def segments_whole_clip(config):
    """Whether the meta-architecture of a config segments its whole clip (steps clip by clip),
    read from the class without building the model."""
    from detectron2.modeling import META_ARCH_REGISTRY

    arch = META_ARCH_REGISTRY.get(get_aamn_cfg(config).MODEL.META_ARCHITECTURE)
    return bool(getattr(arch, "segments_whole_clip", False))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "CONFIG", "WEIGHTS"),
        help="a model to run (repeat for several)",
    )
    parser.add_argument("--video", default="", help="the video of the speed measurement")
    parser.add_argument("--query", dest="queries", action="append", default=[])
    parser.add_argument("--detector-config", default="")
    parser.add_argument("--detector-weights", default="")
    parser.add_argument("--dataset", default="", help="a registered data set: accuracy")
    parser.add_argument(
        "--proposal-file",
        default="",
        help="proposals of the accuracy runs (default: the data set's proposal_file); they must "
        "hold every frame (datasets/prepare_proposals.py --clip-half-length -1)",
    )
    parser.add_argument(
        "--link-weights",
        type=float,
        nargs="+",
        default=[0.0, 0.1, 0.3, 1.0],
        help="TEST.VIDEO.LINK_WEIGHT values of the accuracy runs",
    )
    parser.add_argument("--repeat", type=int, default=2, help="speed runs per setting (best)")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=("clip", "frame"),
        default=["clip", "frame"],
        help="the steps a model that segments its whole clip is timed with (speed)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    detector = None
    if args.detector_config:
        detector = ProposalDetector(
            get_aamn_cfg(args.detector_config, ["MODEL.WEIGHTS", args.detector_weights])
        )

    def predictor(config, weights, *opts, proposals=False):
        cfg = get_aamn_cfg(config, ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", *opts])
        if proposals and reads_proposal_files(cfg, training=False):
            from detectron2.data import MetadataCatalog

            return VideoPredictor(
                cfg,
                proposal_file=args.proposal_file or MetadataCatalog.get(args.dataset).proposal_file,
            )
        return VideoPredictor(
            cfg, detector=detector if reads_proposal_files(cfg, training=False) else None
        )

    if args.video:
        stream = VideoStream(args.video)
        print(f"\n## Speed: {stream}, {len(args.queries)} queries, {args.threads} threads\n")
        print(
            "| model | step | frames | frames/s | model ms/frame | proposals ms/frame | "
            "flow ms/frame |"
        )
        print("|---|---|---|---|---|---|---|")
        settings = [
            (name, step, predictor(config, weights, "TEST.VIDEO.STEP", step))
            for name, config, weights in args.model
            for step in (args.steps if segments_whole_clip(config) else ("frame",))
        ]
        runs = defaultdict(list)
        for _ in range(args.repeat):  # the settings interleaved, the best run of each kept
            for i, (_, _, p) in enumerate(settings):
                runs[i].append(time_video(p, args.video, args.queries))
        for i, (name, step, _) in enumerate(settings):
            r = min(runs[i], key=lambda x: x["seconds"])
            n = r["frames"]
            print(
                f"| {name} | {step} | {n} | {n / r['seconds']:.1f} | "
                f"{1000 * r['model'] / n:.1f} | {1000 * r.get('proposals', 0) / n:.1f} | "
                f"{1000 * r.get('flow', 0) / n:.1f} |"
            )
    if args.dataset:
        print(f"\n## Accuracy on the annotated frames of {args.dataset} (whole videos)\n")
        print(
            "| model | setting | samples | P@0.5 | mean IoU | overall IoU | mAP | "
            "box jumps at clip boundaries (%) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, config, weights in args.model:
            settings = [("one clip per frame", ("TEST.VIDEO.STEP", "frame"))]
            if segments_whole_clip(config):
                settings = [
                    (f"clip by clip, LINK_WEIGHT {w:g}", ("TEST.VIDEO.LINK_WEIGHT", str(w)))
                    for w in args.link_weights
                ] + settings
            for label, opts in settings:
                p = predictor(config, weights, *opts, proposals=True)
                m, n = dataset_accuracy(p, args.dataset)
                print(
                    f"| {name} | {label} | {n} | {m['P@0.5']:.1f} | {m['mean_IoU']:.1f} | "
                    f"{m['overall_IoU']:.1f} | {m['mAP']:.1f} | {m['switches']:.1f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
