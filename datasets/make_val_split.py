#!/usr/bin/env python
"""Hold out a validation split from the training videos of an A2D-Sentences-layout tree.

    python datasets/make_val_split.py --root datasets/a2d_sentences --fraction 0.1

writes ``<root>/aamn_val_videos.txt`` (one video id per line): a fixed random ``--fraction`` of
the videos whose ``Release/videoset.csv`` usage is 0 (training), missed videos left out.  Once it
exists, ``a2d_sentences_val`` reads those videos and ``a2d_sentences_train`` leaves them out, so
choices (recipes, thresholds) are made on them and the test split is evaluated once per final
model.  The release's own files are not touched; an existing list is kept unless ``--overwrite``.
The synthetic benchmark writes its own list (its validation videos are drawn apart).
"""

import argparse
import os
import sys

import numpy as np

from aamn.data.datasets.register_a2d_sentences import read_missed_videos, read_videoset
from aamn.data.layout_writers import VAL_LIST, write_video_list
from aamn.utils.cli import run_tool


def choose_val_videos(videoset, missed, fraction, seed):
    """The sorted ids of ``round(fraction * n)`` of the ``n`` training videos (usage 0, not
    missed), drawn with ``numpy.random.default_rng(seed)``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--fraction must lie strictly between 0 and 1, got {fraction}")
    train = sorted(v for v, row in videoset.items() if row["usage"] == 0 and v not in missed)
    k = int(round(fraction * len(train)))
    if k == 0:
        raise ValueError(f"{len(train)} training videos: a fraction of {fraction} holds none out")
    order = np.random.default_rng(seed).permutation(len(train))
    return sorted(train[i] for i in order[:k])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the A2D-layout tree (holds Release/)")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing list")
    args = parser.parse_args(argv)
    videoset_path = os.path.join(args.root, "Release", "videoset.csv")
    if not os.path.isfile(videoset_path):
        raise SystemExit(f"error: {videoset_path} not found (--root must hold Release/)")
    out = os.path.join(args.root, VAL_LIST)
    if os.path.exists(out) and not args.overwrite:
        raise SystemExit(f"error: {out} exists; --overwrite replaces it (models trained on the "
                         "other training videos are then no longer held out from it)")  # fmt: skip
    missed = read_missed_videos(
        os.path.join(args.root, "text_annotations", "a2d_missed_videos.txt")
    )
    try:
        ids = choose_val_videos(read_videoset(videoset_path), missed, args.fraction, args.seed)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    write_video_list(out, ids)
    print(f"{out}: {len(ids)} validation videos")


if __name__ == "__main__":
    sys.exit(run_tool(main))
