"""Write the synthetic actor-action benchmark in the A2D Sentences and J-HMDB Sentences layouts.

    python datasets/prepare_synthetic.py --size default --seed 0
    python datasets/prepare_synthetic.py --size tiny --seed 1 --output /tmp/synthetic

writes ``<output>/a2d_sentences/`` and ``<output>/jhmdb_sentences/``.  The default output is the
size's own tree: ``$AAMN_DATASETS/synthetic`` for the default size, where the names
``synthetic_a2d_train``, ``synthetic_a2d_test`` and ``synthetic_jhmdb_test`` find it, and
``$AAMN_DATASETS/synthetic_<size>`` for the others, which those names read when
``$AAMN_SYNTHETIC`` points there (``$AAMN_DATASETS`` defaults to ``./datasets``).  It prints the
statistics and the fractions of hard queries, counted from the written metadata, and fails when a
fraction is below its bound.  A tree already written with the same size and seed is kept; one of
another size or seed is refused (pass ``--overwrite`` to write it again or replace it).  See
``datasets/README.md`` for the data set card.

    python datasets/prepare_synthetic.py --layout ytvos        # -> $AAMN_DATASETS/synthetic_ytvos
    python datasets/prepare_synthetic.py --layout mevis --output /tmp/synthetic_mevis

``--layout ytvos`` / ``mevis`` writes the same benchmark (the size's A2D-layout tree, written
first when missing) in the Ref-YouTube-VOS or MeViS layout (``aamn.data.synthetic.rvos_layouts``:
splits train / valid / test, every ``--frame-step``-th frame; MeViS's with expressions about
several actors); the names ``synthetic_ytvos_*`` and ``synthetic_mevis_*`` read the default
outputs.
"""

import argparse
import os
import sys
import time

from aamn.utils.io import datasets_root
from aamn.utils.cli import run_tool

# The bounds the benchmark is built to meet (fractions of the A2D-layout queries, train + test).
BOUNDS = {"needs_action": 0.30, "needs_appearance": 0.30, "needs_location": 0.10}


def default_output(size="default"):
    """``$AAMN_DATASETS/synthetic`` for the default size, ``$AAMN_DATASETS/synthetic_<size>`` for
    the others: each size in its own tree."""
    from aamn.data.synthetic import synthetic_tree_name

    return os.path.join(datasets_root(), synthetic_tree_name(size))


def parse_args(argv=None):
    from aamn.data.synthetic import SIZES

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        default="default",
        choices=sorted(SIZES),
        help="tiny: seconds (tests); default: 600 train / 150 test videos; large: GPU runs",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument(
        "--output",
        default=None,
        help="output folder (default: $AAMN_DATASETS/synthetic for the default size, "
        "$AAMN_DATASETS/synthetic_<size> for the others)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes drawing videos in parallel (the output does not depend on it)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write again even if the same size and seed exist, or replace a tree of another "
        "size or seed",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--layout",
        default="a2d",
        choices=["a2d", "ytvos", "mevis"],
        help="a2d: the A2D and J-HMDB Sentences layouts; ytvos / mevis: the same videos in the "
        "Ref-YouTube-VOS / MeViS layout (default output $AAMN_DATASETS/synthetic_<layout>)",
    )
    parser.add_argument(
        "--frame-step", type=int, default=1, help="ytvos / mevis: every n-th frame is listed"
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["train", "valid", "test"],
        choices=["train", "valid", "test"],
        help="ytvos / mevis: the splits written",
    )
    args = parser.parse_args(argv)
    if args.frame_step < 1:
        parser.error(f"--frame-step must be at least 1, got {args.frame_step}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def format_statistics(info):
    """The statistics of a ``synthetic_info.json`` dict as printable lines."""
    stats = info["statistics"]
    lines = [
        f"synthetic benchmark: size {info['size']}, seed {info['seed']}, frames "
        f"{info['spec']['height']}x{info['spec']['width']} (H x W)"
    ]
    for split in ("train", "test", "all"):
        s = stats[split]
        frac = ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["query_type_fractions"].items())
        lines.append(
            f"  A2D {split:5s}: {s['videos']} videos, {s['frames']} frames, "
            f"{s['annotated_frames']} annotated "
            f"frames, {s['instances']} actors {s['actors_per_video']}, {s['queries']} queries "
            f"({s['mean_query_words']} words, vocabulary {s['vocabulary']}); "
            f"occluded in annotated frames {100 * s['occluded_in_annotated_frames']:.1f}%"
        )
        lines.append(f"      query types: {frac}")
    a = stats["all"]
    lines.append("  actors:  " + ", ".join(f"{k} {v}" for k, v in a["classes"].items()))
    lines.append("  actions: " + ", ".join(f"{k} {v}" for k, v in a["actions"].items()))
    j = stats["jhmdb"]
    lines.append(
        f"  J-HMDB: {j['videos']} videos, {j['frames']} frames, {j['queries']} queries, actions "
        f"{j['actions']}, {j['videos_with_fewer_masks']} with fewer masks than frames"
    )
    lines.append(f"  missed videos (a2d_missed_videos.txt): {', '.join(info['missed_videos'])}")
    return lines


def check_bounds(info):
    """The fractions below their bound: list of (type, fraction, bound)."""
    fr = info["statistics"]["all"]["query_type_fractions"]
    return [(k, fr[k], b) for k, b in BOUNDS.items() if fr[k] < b]


def write_layout(args) -> int:
    """``--layout ytvos`` / ``mevis``: the size's A2D-layout tree (written when missing), then the
    same videos in that layout."""
    from aamn.data.synthetic import generate
    from aamn.data.synthetic.rvos_layouts import write_rvos_layout

    tree = default_output(args.size)
    suffix = args.layout if args.size == "default" else f"{args.size}_{args.layout}"
    output = os.path.abspath(args.output or os.path.join(datasets_root(), f"synthetic_{suffix}"))
    generate(tree, size=args.size, seed=args.seed, workers=args.workers)  # kept when written
    start = time.time()
    stats = write_rvos_layout(
        os.path.join(tree, "a2d_sentences"),
        output,
        args.layout,
        args.frame_step,
        args.overwrite,
        args.splits,
    )
    print(f"wrote {output} ({args.layout} layout, {time.time() - start:.1f} s)")
    for split, st in stats.items():
        print(f"  {split}: {st['videos']} videos, {st['expressions']} expressions"
              + (f" ({st['several_actors']} about several actors)" if args.layout == "mevis"
                 else ""))  # fmt: skip
    return 0


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    from aamn.data.synthetic import generate

    if args.layout != "a2d":
        return write_layout(args)
    output = os.path.abspath(args.output or default_output(args.size))
    start = time.time()
    try:
        info = generate(
            output,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=None if args.no_progress else tqdm,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if info["skipped"]:
        print(
            f"{output} already holds the synthetic benchmark of size {args.size} and seed "
            f"{args.seed}: "
            "kept (pass --overwrite to write it again)"
        )
    else:
        print(f"wrote {output} in {time.time() - start:.1f} s ({args.workers} worker(s))")
    if args.size != "default" and not args.output:
        print(f"the synthetic_* data sets read it with AAMN_SYNTHETIC={output}")
    print("\n".join(format_statistics(info)))
    failed = check_bounds(info)
    # a tiny tree has a few dozen queries: too few for the fractions to mean much
    level = "warning" if args.size == "tiny" else "error"
    for k, v, b in failed:
        print(
            f"{level}: the fraction of {k} queries is {100 * v:.1f}%, below the bound "
            f"{100 * b:.0f}%",
            file=sys.stderr,
        )
    if not failed:
        print("  bounds met: " + ", ".join(f"{k} >= {100 * b:.0f}%" for k, b in BOUNDS.items()))
    return 1 if failed and level == "error" else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
