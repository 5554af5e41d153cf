"""The data-set drawing tools (``tools/visualize.py``, ``tools/visualize_tubes.py``): a model run
on samples of a registered data set, each drawn into a PNG (``aamn.utils.visualizer`` draws)."""

import argparse
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import Visualizer

__all__ = ["drawing_tool", "pick_samples", "predict_samples"]


def pick_samples(records: Sequence[Dict], num: int) -> List[Dict]:
    """``num`` records spread evenly over a data set (deterministic)."""
    if num >= len(records):
        return list(records)
    idx = np.linspace(0, len(records) - 1, num).round().astype(int)
    return [records[i] for i in idx]


def predict_samples(cfg, dataset_name: str, num: int):
    """The model of ``cfg`` (``MODEL.WEIGHTS``) on ``num`` samples of a registered data set.

    Yields:
        ``(record, output, frames_rgb)``: the record, the model's output and the clip's frames
        uint8 ``(T, H, W, 3)`` RGB.
    """
    from detectron2.data import DatasetCatalog

    from ..data.dataset_mappers import ClipDatasetMapper
    from ..data.video import VideoReader
    from ..modeling.checkpoint import build_trained_model

    if dataset_name not in DatasetCatalog.list():
        raise KeyError(f"data set {dataset_name!r} is not registered")
    model = build_trained_model(cfg)[0]
    mapper = ClipDatasetMapper(cfg, is_train=False)  # proposals only when the model reads them
    for record in pick_samples(DatasetCatalog.get(dataset_name), num):
        inputs = mapper(record)
        with torch.no_grad():
            output = model([inputs])[0]
        frames = VideoReader(record["file_name"]).read(
            inputs["frame_indices"].tolist(), format="RGB"
        )
        yield record, output, frames


# ---------------------------------------------------------------------- the drawing tools
def _parse_drawing_args(description, argv=None, default_num=8):
    """The command line both drawing tools share; returns ``(args, cfg)``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", required=True, help="a registered data-set name")
    parser.add_argument(
        "--num", type=int, default=default_num, help="samples to draw, spread over the data set"
    )
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)
    from ..config import cfg_for_tool

    cfg = cfg_for_tool(parser, args.config_file, args.opts, weights="a trained checkpoint")
    return args, cfg


def _draw_samples(args, cfg, draw, tag):
    """Run the model on the samples and save ``draw(record, output, metadata, frames)`` of each
    as a PNG, with an ``index.txt``."""
    metadata = MetadataCatalog.get(args.dataset)
    os.makedirs(args.output, exist_ok=True)
    lines = []
    try:
        samples = list(predict_samples(cfg, args.dataset, args.num))
    except KeyError as e:
        raise SystemExit(f"[{tag}] {e.args[0]}")
    for i, (record, output, frames) in enumerate(samples):
        picture = draw(record, output, metadata, frames)
        name = f"{i:02d}_{record['image_id']}.png".replace("/", "_")
        Visualizer(picture).get_output().save(os.path.join(args.output, name))
        lines.append(f"{name}\t{record['query']}\tscore={float(output['instances'].scores[0]):.3f}")
        print(f"[{tag}] {name}: {record['query']}")
    with open(os.path.join(args.output, "index.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"[{tag}] {len(lines)} drawings in {args.output}")
    return 0


def drawing_tool(
    description: str,
    draw,
    tag: str,
    argv=None,
    default_num: int = 8,
    architectures: Optional[Sequence[str]] = None,
) -> int:
    """The command line of ``tools/visualize.py`` and ``tools/visualize_tubes.py``: ``--config-file
    --dataset --num --output KEY VALUE...``; each sample drawn by ``draw(record, output, metadata,
    frames_rgb)`` into a PNG, with an ``index.txt``.  ``architectures``: the meta-architectures
    the drawing supports (all when None)."""
    args, cfg = _parse_drawing_args(description, argv, default_num)
    if architectures is not None and cfg.MODEL.META_ARCHITECTURE not in architectures:
        raise SystemExit(
            f"[{tag}] draws {', '.join(architectures)} outputs; {cfg.MODEL.META_ARCHITECTURE} "
            "has none of its own: use tools/visualize.py"
        )
    return _draw_samples(args, cfg, draw, tag)
