"""Write the external detector's top-K boxes for every frame of every video of data sets.

AAMN takes precomputed proposals (Sec. III-A): a detectron2 detector (configs/*/detector*.yaml,
trained by tools/train_net.py) runs on every frame, and the best boxes after class-agnostic NMS are
written in detectron2's precomputed-proposal format (a pickle with ``ids``, ``boxes``,
``objectness_logits``, ``bbox_mode``; ids ``"<video_id>/<frame:05d>"``, 1-based; see
docs/interfaces.md).  By default the file is ``<dataset root>/proposals/<dataset>.pkl``, which the
clip mapper reads when ``DATASETS.PROPOSAL_FILES_*`` are empty.

Resumable and shardable: each video's boxes go to ``<output>.parts/<video_id>.npz`` first, tagged
with a fingerprint of the detector (weights file, config, --topk, --nms); a video whose part has the
current fingerprint is skipped.  The pickle is written (atomically) once every video has its part::

    python datasets/prepare_proposals.py --config-file configs/synthetic/detector.yaml \\
        --dataset synthetic_a2d_train --dataset synthetic_a2d_test \\
        MODEL.WEIGHTS output/synthetic/detector/model_final.pth
    # on a cluster: --shard 0/4 ... --shard 3/4, then once more without --shard to merge
"""

import argparse
import hashlib
import os
import sys
import time

import numpy as np
import torch
import tqdm

import aamn  # noqa: F401  (registers data sets and backbones)
from aamn.config import cfg_for_tool
from aamn.data.proposals import detector_record, proposal_id, save_proposals
from aamn.data.video import VideoReader
from aamn.engine.proposal_detector import ProposalDetector
from aamn.utils.io import local_weights_file, parse_shard, positive_int
from aamn.utils.cli import run_tool
from detectron2.data import DatasetCatalog, MetadataCatalog


def videos_of(dataset_name):
    """``[(video_id, path)]`` of the distinct videos of a registered data set, sorted by id."""
    videos = {}
    for r in DatasetCatalog.get(dataset_name):
        videos.setdefault(r["video_id"], r["file_name"])
    return sorted(videos.items())


def frames_needed(dataset_name, half_length):
    """``{video_id: sorted 1-based frames}`` within ``half_length`` of an annotated frame of the
    data set: every frame a clip of ``2L+1`` frames centred on one reads (clamped to the video)."""
    needed = {}
    for r in DatasetCatalog.get(dataset_name):
        lo, hi = r["frame_idx"] - half_length, r["frame_idx"] + half_length
        needed.setdefault(r["video_id"], set()).update(
            range(max(1, lo), min(int(r["length"]), hi) + 1)
        )
    return {v: sorted(f) for v, f in needed.items()}


def proposal_recall(records, boxes_by_id, ks, iou=0.5):
    """Fraction of the annotated instances (each distinct frame once) that one of the first ``k``
    proposals of their frame covers with IoU >= ``iou``, for each ``k`` in ``ks``."""
    from detectron2.structures import Boxes, pairwise_iou

    hits, total, seen = {k: 0 for k in ks}, 0, set()
    for r in records:
        key = proposal_id(r["video_id"], r["frame_idx"])
        if key in seen or key not in boxes_by_id:
            continue
        seen.add(key)
        gt = torch.tensor([a["bbox"] for a in r["annotations"]], dtype=torch.float32).reshape(-1, 4)
        props = torch.as_tensor(boxes_by_id[key]).reshape(-1, 4)
        total += len(gt)
        if len(props) == 0:
            continue
        ious = pairwise_iou(Boxes(gt), Boxes(props))  # (G, P), proposals sorted by score
        for k in ks:
            hits[k] += int((ious[:, :k].max(dim=1).values >= iou).sum())
    return {k: hits[k] / max(total, 1) for k in ks}


def fingerprint(cfg, args):
    h = hashlib.sha1()
    weights = local_weights_file(cfg.MODEL.WEIGHTS)  # a URL: its cached file
    st = os.stat(weights)
    h.update(
        f"{os.path.abspath(weights)}|{st.st_size}|{st.st_mtime_ns}|{args.topk}|{args.nms}|"
        f"{args.clip_half_length}".encode()
    )
    h.update(cfg.dump().encode())
    return h.hexdigest()[:16]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the detector's config")
    parser.add_argument(
        "--dataset",
        dest="datasets",
        action="append",
        required=True,
        help="a registered data-set name (repeat for several)",
    )
    parser.add_argument(
        "--topk",
        type=positive_int,
        default=20,
        help="boxes kept per frame (AAMN uses the first K)",
    )
    parser.add_argument("--nms", type=float, default=0.7, help="class-agnostic NMS IoU threshold")
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="frames per detector call"
    )
    parser.add_argument(
        "--output-dir",
        default="",
        help="write <dir>/<dataset>.pkl instead of the metadata's proposal_file",
    )
    parser.add_argument(
        "--clip-half-length",
        type=int,
        default=-1,
        metavar="L",
        help="only the frames within L of an annotated frame (what clips of 2L+1 frames read: "
        "enough to train and evaluate with INPUT.CLIP.HALF_LENGTH <= L); default -1: every frame "
        "(needed for whole-video inference from the file)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        help="i/n: process every n-th video from the i-th",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="recompute every video of this shard"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE, e.g. MODEL.WEIGHTS path"
    )
    args = parser.parse_args(argv)

    cfg = cfg_for_tool(
        parser, args.config_file, args.opts, weights="the trained detector's checkpoint"
    )
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    detector = ProposalDetector(cfg, args.topk, args.nms)
    tag = fingerprint(cfg, args)
    # Stored in each proposal file: a model trained on it records the detector it needs.
    record = dict(
        detector_record(cfg, local_weights_file(cfg.MODEL.WEIGHTS)), topk=args.topk, nms=args.nms
    )

    for name in args.datasets:
        if name not in DatasetCatalog.list():
            parser.error(
                f"data set {name!r} is not registered (known: "
                f"{', '.join(sorted(DatasetCatalog.list()))})"
            )
        out_path = (
            os.path.join(args.output_dir, f"{name}.pkl")
            if args.output_dir
            else MetadataCatalog.get(name).get("proposal_file", None)
        )
        if not out_path:
            parser.error(
                f"data set {name!r} has no proposal_file in its metadata: pass --output-dir"
            )
        parts = out_path + ".parts"
        os.makedirs(parts, exist_ok=True)
        videos = videos_of(name)
        needed = frames_needed(name, args.clip_half_length) if args.clip_half_length >= 0 else {}
        mine = videos[args.shard[0] :: args.shard[1]] if args.shard else videos
        start, done = time.time(), 0
        for video_id, path in tqdm.tqdm(mine, desc=f"proposals {name}", unit="video"):
            part = os.path.join(parts, f"{video_id}.npz")
            if not args.overwrite and os.path.exists(part):
                with np.load(part) as z:
                    if str(z["fingerprint"]) == tag:
                        continue
            reader = VideoReader(path)
            numbers = needed.get(video_id) or list(range(1, reader.num_frames + 1))
            frames = reader.read(numbers, format="RGB")
            results = []
            for s in range(0, len(frames), args.batch_size):
                results.extend(detector(frames[s : s + args.batch_size]))
            counts = np.array([len(b) for b, _ in results], np.int64)
            tmp = part + ".tmp.npz"
            np.savez(
                tmp,
                fingerprint=np.array(tag),
                frames=np.array(numbers, np.int64),
                counts=counts,
                boxes=np.concatenate([b for b, _ in results]).reshape(-1, 4),
                logits=np.concatenate([s for _, s in results]),
            )
            os.replace(tmp, part)
            done += 1
        if done:
            print(f"[prepare_proposals] {name}: {done} videos in {time.time() - start:.0f} s")

        ids, boxes, logits, missing = [], [], [], []
        for video_id, _ in videos:
            part = os.path.join(parts, f"{video_id}.npz")
            if not os.path.exists(part):
                missing.append(video_id)
                continue
            with np.load(part) as z:
                if str(z["fingerprint"]) != tag:
                    missing.append(video_id)
                    continue
                offsets = np.concatenate([[0], np.cumsum(z["counts"])])
                numbers = z["frames"] if "frames" in z else np.arange(1, len(z["counts"]) + 1)
                for t in range(len(z["counts"])):
                    ids.append(proposal_id(video_id, int(numbers[t])))
                    boxes.append(z["boxes"][offsets[t] : offsets[t + 1]])
                    logits.append(z["logits"][offsets[t] : offsets[t + 1]])
        if missing:
            print(
                f"[prepare_proposals] {name}: {len(videos) - len(missing)}/{len(videos)} videos "
                "done; "
                f"run the remaining shards, then rerun to write {out_path}"
            )
            continue
        save_proposals(out_path, ids, boxes, logits, detector=record)
        per_frame = np.mean([len(b) for b in boxes]) if boxes else 0.0
        print(
            f"[prepare_proposals] wrote {out_path}: {len(ids)} frames of {len(videos)} videos, "
            f"{per_frame:.1f} boxes per frame"
        )
        recall = proposal_recall(
            DatasetCatalog.get(name), dict(zip(ids, boxes)), ks=(1, 3, 6, args.topk)
        )
        print(
            f"[prepare_proposals] {name}: recall of the annotated instances at IoU 0.5: "
            + ", ".join(f"top-{k} {100 * r:.1f}%" for k, r in recall.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
