"""Score ``tools/infer.py``'s output layout with the DAVIS protocol: J, F and J&F in percent
(``aamn.evaluation.jf``).

Usage::

    python tools/eval_jf.py PRED_DIR --gt ROOT [--output FILE]
    python tools/eval_jf.py PRED_DIR --dataset NAME [--output FILE]

``PRED_DIR/Annotations/<video>/<exp_id>/<frame>.png`` (non-zero = the mask) is scored against a
Ref-YouTube-VOS-layout ground truth: ``--gt ROOT`` holds ``Annotations/<video>/<frame>.png``
(palette PNGs of object ids) and ``meta_expressions.json`` (expressions with ``obj_id``, one or a
list, and each video's ``frames``); ``--dataset NAME`` takes them from a registered data set's
metadata (``annotations_dir`` and ``meta_expressions``).  Every listed frame of every expression
must have its prediction.  ``--output FILE`` writes ``{"J": .., "F": .., "J&F": ..}``.
"""

import argparse
import os
import sys

from aamn.utils.cli import run_tool

__all__ = ["main", "ground_truth_of"]


def ground_truth_of(args):
    """``(annotations folder, meta_expressions.json)`` of ``--gt`` or ``--dataset``."""
    if args.gt:
        return os.path.join(args.gt, "Annotations"), os.path.join(args.gt, "meta_expressions.json")
    import aamn.data.datasets  # noqa: F401  (registers the names)
    from detectron2.data import MetadataCatalog

    from aamn.data.datasets.builtin import check_registered

    check_registered("--dataset", [args.dataset])
    meta = MetadataCatalog.get(args.dataset)
    annotations, expressions = meta.get("annotations_dir", None), meta.get("meta_expressions", None)
    if not annotations or not expressions:
        raise ValueError(
            f"--dataset {args.dataset}: not a data set of the Ref-YouTube-VOS layout with masks "
            "(its metadata names no annotations_dir and meta_expressions); give --gt ROOT"
        )
    return annotations, expressions


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pred_dir", help="tools/infer.py's output folder (its Annotations/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--gt", help="a Ref-YouTube-VOS-layout root: Annotations/, meta_expressions.json"
    )
    source.add_argument("--dataset", help="a registered data set of that layout")
    parser.add_argument("--videos", nargs="+", default=None, help="score only these videos")
    parser.add_argument("--output", default="", help='write {"J", "F", "J&F"} (percent) here')
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from aamn.evaluation.jf import score_folders
    from aamn.utils.io import write_json_atomic

    if not os.path.isdir(os.path.join(args.pred_dir, "Annotations")):
        raise FileNotFoundError(
            f"no Annotations/ folder in {args.pred_dir} (tools/infer.py's output)"
        )
    annotations, expressions = ground_truth_of(args)
    res = score_folders(args.pred_dir, annotations, expressions, args.videos)
    if not res:
        raise ValueError(f"{expressions} lists no expression to score")
    print(f"J {res['J']:.2f}  F {res['F']:.2f}  J&F {res['J&F']:.2f}  "
          f"({res['expressions']} expressions, {res['frames']} frames)")  # fmt: skip
    if args.output:
        write_json_atomic(args.output, {k: res[k] for k in ("J", "F", "J&F")})
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
