#!/usr/bin/env python
"""Draw a strip of synthetic benchmark samples: frames, ground-truth masks and the query.

The samples are read back through the project's own A2D Sentences loader (the every-frame masks
of ``synthetic_full_annotations``), so the picture shows what the models are given.  One row per
query: frames spread over the video, the referred actor's mask and box in green, the other actors'
masks in grey, and above them the query with its query types.  Rows are chosen to show each hard
query type (``needs_action``, ``needs_appearance``, ``needs_location``) and an occluded actor.

    python datasets/draw_synthetic_samples.py          # -> datasets/synthetic_samples.png
    python datasets/draw_synthetic_samples.py --root /tmp/synthetic/a2d_sentences --output strip.png

The PNG is palette-quantised so that it stays small enough to keep in the repository.
"""

import argparse
import json
import os
import sys

import numpy as np

from aamn.utils.io import synthetic_root
from aamn.utils.cli import run_tool

REFERRED_COLOR = (0.1, 0.9, 0.2)
OTHER_COLOR = (0.6, 0.6, 0.6)


def default_root():
    return os.path.join(synthetic_root(), "a2d_sentences")


def pick_queries(meta, split, num):
    """``num`` queries of ``split``: one of each hard type, then one with occlusion, then the rest
    (deterministic)."""
    from aamn.data.synthetic import QUERY_TYPES, query_types

    types = query_types(meta)
    videos = meta["videos"]
    pool = [
        q
        for q in meta["queries"]
        if videos[q["video_id"]]["split"] == split and not videos[q["video_id"]].get("missed")
    ]
    pool.sort(key=lambda q: (q["video_id"], int(q["instance_id"])))

    def occluded(q):
        frac = videos[q["video_id"]]["instances"][str(q["instance_id"])]["visible_fraction"]
        return any(0.3 < f < 0.8 for f in frac)

    wanted = [
        lambda q, t=t: t in types[(q["video_id"], int(q["instance_id"]))] for t in QUERY_TYPES
    ]
    wanted.append(occluded)
    chosen, used_videos = [], set()
    for rule in wanted:
        for q in pool:
            if rule(q) and q["video_id"] not in used_videos:
                chosen.append(q)
                used_videos.add(q["video_id"])
                break
    for q in pool:
        if len(chosen) >= num:
            break
        if q["video_id"] not in used_videos:
            chosen.append(q)
            used_videos.add(q["video_id"])
    return chosen[:num], types


def draw_row(records_by_frame, frames_rgb, frame_ids, instance_id, scale):
    """Frames side by side with the masks drawn by detectron2's Visualizer: uint8
    ``(h, W_total, 3)``."""
    import cv2
    from detectron2.utils.visualizer import Visualizer
    from pycocotools import mask as mask_util

    tiles = []
    for img, f in zip(frames_rgb, frame_ids):
        h, w = img.shape[:2]
        big = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_NEAREST)
        vis = Visualizer(big, metadata=None, scale=1.0)
        masks, colors, boxes = [], [], []
        for anno in records_by_frame.get(f, []):
            m = mask_util.decode(anno["segmentation"]).astype(np.uint8)
            m = cv2.resize(m, (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST).astype(
                bool
            )
            referred = anno["instance_id"] == instance_id
            masks.append(m)
            colors.append(REFERRED_COLOR if referred else OTHER_COLOR)
            boxes.append(np.array(anno["bbox"]) * scale if referred else None)
        order = sorted(
            range(len(masks)), key=lambda k: colors[k] == REFERRED_COLOR
        )  # referred on top
        for k in order:
            # light fills keep the actors' own colours readable
            vis.draw_binary_mask(
                masks[k], color=colors[k], alpha=0.25 if colors[k] == REFERRED_COLOR else 0.1
            )
            if boxes[k] is not None:
                x1, y1, x2, y2 = boxes[k]
                vis.draw_box((x1, y1, x2, y2), edge_color=colors[k], line_style="-")
        out = vis.output.get_image()
        cv2.putText(
            out, f"frame {f}", (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA
        )
        tiles.append(out)
        tiles.append(np.full((out.shape[0], 3, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], 1)


def caption(text, width, height=18):
    import cv2

    band = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(
        band, text, (4, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA
    )
    return band


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=None,
        help="the synthetic A2D-layout tree (default: $AAMN_DATASETS/synthetic/a2d_sentences)",
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--num", type=int, default=4, help="rows (queries)")
    parser.add_argument("--frames", type=int, default=5, help="frames per row")
    parser.add_argument("--scale", type=float, default=1.5, help="upscaling of the frames")
    parser.add_argument("--colors", type=int, default=160, help="palette size of the PNG")
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_samples.png"),
    )
    args = parser.parse_args(argv)

    from PIL import Image

    from aamn.data.datasets import register_a2d_sentences
    from aamn.data.video import VideoReader
    from detectron2.data import DatasetCatalog

    root = os.path.abspath(args.root or default_root())
    meta_path = os.path.join(root, "synthetic_meta.json")
    if not os.path.isfile(meta_path):
        print(
            f"error: {meta_path} not found: write the benchmark first "
            "(datasets/prepare_synthetic.py)",
            file=sys.stderr,
        )
        return 2
    with open(meta_path) as f:
        meta = json.load(f)
    queries, types = pick_queries(meta, args.split, args.num)

    name = "_draw_synthetic_samples"
    register_a2d_sentences(name, root, args.split, annotation_dir="synthetic_full_annotations")
    records = {}
    for r in DatasetCatalog.get(name):
        records.setdefault((r["video_id"], r["instance_id"]), {})[r["frame_idx"]] = r

    rows = []
    for q in queries:
        vid, iid = q["video_id"], int(q["instance_id"])
        frames_of = records.get((vid, iid), {})
        if not frames_of:
            continue
        visible = sorted(frames_of)
        pick = [visible[int(round(i))] for i in np.linspace(0, len(visible) - 1, args.frames)]
        first = frames_of[pick[0]]
        frames = VideoReader(first["file_name"]).read(pick)
        row = draw_row(
            {f: frames_of[f]["annotations"] for f in pick}, frames, pick, iid, args.scale
        )
        tag = ", ".join(sorted(types[(vid, iid)])) or "no distractor type"
        rows.append(caption(f'"{first["query"]}"   [{tag}]   video {vid}', row.shape[1]))
        rows.append(row)
    if not rows:
        print("error: no sample to draw", file=sys.stderr)
        return 1
    strip = np.concatenate(rows, 0)
    img = Image.fromarray(strip).quantize(colors=args.colors, method=Image.MEDIANCUT)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    img.save(args.output, optimize=True)
    print(
        f"wrote {args.output} ({strip.shape[1]}x{strip.shape[0]}, "
        f"{os.path.getsize(args.output) // 1024} KB, "
        f"{len(rows) // 2} queries)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
