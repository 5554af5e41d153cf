#!/usr/bin/env python
"""Draw a model's masks (and AAMN's selected tubes) with detectron2's ``Visualizer``.

For each sample, one PNG: the clip's 2L+1 frames side by side at their original size, each with the
predicted mask and the selected tube's box (the key frame, in the middle, also outlines the
ground-truth mask in white), and below them the query with its actor / action word attention.

    python tools/visualize.py --config-file configs/synthetic/aamn.yaml \\
        --dataset synthetic_a2d_test --num 8 --output vis/ \\
        MODEL.WEIGHTS output/synthetic/aamn/model_final.pth
"""

import argparse
import os
import sys

import numpy as np
import torch

import aamn  # noqa: F401
from aamn.data.dataset_mappers import ClipDatasetMapper
from aamn.data.video import VideoReader
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.visualizer import ColorMode, Visualizer
from pycocotools import mask as mask_util
from aamn.modeling import StreamCheckpointer

from aamn.config import ConfigError, get_aamn_cfg


def pick_samples(records, num):
    """``num`` records spread evenly over the data set (deterministic)."""
    if num >= len(records):
        return list(records)
    idx = np.linspace(0, len(records) - 1, num).round().astype(int)
    return [records[i] for i in idx]


def draw_sample(record, output, metadata, frames_rgb):
    """One picture for one (clip, query): uint8 ``(H', W', 3)`` RGB.  Every frame of the clip for a
    model that segments them all (``clip_instances``, AAMN), the key frame alone otherwise."""
    if "clip_instances" not in output:
        frames_rgb = frames_rgb[len(frames_rgb) // 2 : len(frames_rgb) // 2 + 1]
    T = len(frames_rgb)
    key = T // 2
    per_frame = output.get("clip_instances", [output["instances"]])
    tiles = []
    gt = next((a for a in record["annotations"] if a["instance_id"] == record["instance_id"]), None)
    for t in range(T):
        vis = Visualizer(frames_rgb[t], metadata=metadata, scale=2.0, instance_mode=ColorMode.IMAGE)
        inst = per_frame[t].to("cpu")
        if len(inst) and inst.pred_masks.any():
            vis.draw_binary_mask(
                inst.pred_masks[0].numpy().astype(np.uint8), color="lime", alpha=0.45
            )
        box = (
            output["tube_boxes"][t].tolist()
            if "tube_boxes" in output
            else inst.pred_boxes.tensor[0].tolist()
        )
        vis.draw_box(box, edge_color="yellow" if t == key else "orange")
        if t == key and gt is not None:
            gt_mask = mask_util.decode(gt["segmentation"])
            vis.draw_binary_mask(gt_mask, color="white", alpha=0.15, edge_color="white")
            vis.draw_text(
                f"key {record['frame_idx']}", (4, 4), horizontal_alignment="left", font_size=7
            )
        tiles.append(vis.get_output().get_image())
    strip = np.concatenate(tiles, axis=1)
    if strip.shape[1] < 640:  # one key frame: room for the caption
        pad = np.full((strip.shape[0], 640 - strip.shape[1], 3), 255, np.uint8)
        strip = np.concatenate([strip, pad], axis=1)
    words = output.get("tokens") or record.get("query", "").split()
    att = output.get("word_attention", {})
    caption = Visualizer(np.full((70, strip.shape[1], 3), 255, np.uint8), scale=1.0)
    caption.draw_text(
        f'"{record["query"]}"  score {float(output["instances"].scores[0]):.2f}',
        (6, 4),
        horizontal_alignment="left",
        color="white",
        font_size=10,
    )
    for row, name in enumerate(("actor", "action")):
        if name in att:
            w = att[name].tolist()[: len(words)]
            text = f"{name}: " + " ".join(f"{wd}({a:.2f})" for wd, a in zip(words, w))
            caption.draw_text(
                text, (6, 26 + 20 * row), horizontal_alignment="left", color="white", font_size=8
            )
    return np.concatenate([strip, caption.get_output().get_image()], axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", required=True, help="a registered data-set name")
    parser.add_argument(
        "--num", type=int, default=8, help="samples to draw, spread over the data set"
    )
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        cfg = get_aamn_cfg(args.config_file, args.opts)
    except ConfigError as e:
        parser.error(str(e))
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu" if not torch.cuda.is_available() else cfg.MODEL.DEVICE
    cfg.freeze()
    if args.dataset not in DatasetCatalog.list():
        parser.error(f"data set {args.dataset!r} is not registered")

    model = build_model(cfg).eval()
    StreamCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    mapper = ClipDatasetMapper(cfg, is_train=False)  # proposals only when the model reads them
    metadata = MetadataCatalog.get(args.dataset)
    os.makedirs(args.output, exist_ok=True)
    lines = []
    for i, record in enumerate(pick_samples(DatasetCatalog.get(args.dataset), args.num)):
        inputs = mapper(record)
        with torch.no_grad():
            output = model([inputs])[0]
        frames = VideoReader(record["file_name"]).read(
            inputs["frame_indices"].tolist(), format="RGB"
        )
        picture = draw_sample(record, output, metadata, frames)
        name = f"{i:02d}_{record['image_id']}.png".replace("/", "_")
        Visualizer(picture).get_output().save(os.path.join(args.output, name))
        lines.append(f"{name}\t{record['query']}\tscore={float(output['instances'].scores[0]):.3f}")
        print(f"[visualize] {name}: {record['query']}")
    with open(os.path.join(args.output, "index.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"[visualize] {len(lines)} drawings in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
