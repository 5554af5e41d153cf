#!/usr/bin/env python
"""Train and evaluate every row of the paper's Table IV (or a chosen subset) on one config.

Each row is a set of config overrides (``aamn.modeling.ablations.ABLATIONS``) applied to the same
base config, so all rows share the data, the proposals and the schedule.  Results go to
``<output-dir>/<row>/`` and a summary table (markdown and JSON) to ``<output-dir>/table_iv.{md,json}``.
A row whose ``eval.json`` exists is not run again (delete it to redo the row).

    python tools/run_ablations.py --config-file configs/synthetic/aamn.yaml \\
        --output-dir output/synthetic/table_iv SOLVER.MAX_ITER 400 SOLVER.STEPS "(300,)"
    python tools/run_ablations.py ... --rows "AAMN (Full Model)" "AAMN w/o Action Module"
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from aamn.modeling.ablations import ABLATIONS  # noqa: E402

COLUMNS = [("segm", "P@0.5"), ("segm", "P@0.6"), ("segm", "P@0.7"), ("segm", "P@0.8"), ("segm", "P@0.9"),
           ("segm", "mAP"), ("segm", "overall_IoU"), ("segm", "mean_IoU"), ("loc", "P@0.5")]


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def table(rows):
    head = "| Table IV row | " + " | ".join(k if t == "segm" else f"loc {k}" for t, k in COLUMNS) + " | train+eval min |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, res in rows:
        cells = [f"{res[t][k]:.1f}" if t in res and k in res[t] else "-" for t, k in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {res.get('train_minutes', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--rows", nargs="*", default=None, help="row names of Table IV (default: all 14)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="overrides for every row, KEY VALUE ...")
    args = parser.parse_args(argv)
    names = args.rows or list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        parser.error(f"unknown Table IV rows {unknown}; known: {list(ABLATIONS)}")
    py = sys.executable
    results = []
    for name in names:
        out = os.path.join(args.output_dir, slug(name))
        eval_json = os.path.join(out, "eval.json")
        if not os.path.exists(eval_json):
            opts = [*args.opts, *ABLATIONS[name], "OUTPUT_DIR", out]
            print(f"[ablations] {name}: {' '.join(ABLATIONS[name]) or '(full model)'}", flush=True)
            start = time.time()
            # Training ends with the evaluation on DATASETS.TEST, written to eval.json.
            subprocess.run([py, "tools/train_net.py", "--config-file", args.config_file, "--results-json",
                            eval_json, *opts], check=True, cwd=REPO)
            with open(eval_json) as f:
                res = json.load(f)
            res["train_minutes"] = (time.time() - start) / 60
            with open(eval_json, "w") as f:
                json.dump(res, f, indent=2)
        with open(eval_json) as f:
            results.append((name, json.load(f)))
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "table_iv.md"), "w") as f:
            f.write(table(results))
        with open(os.path.join(args.output_dir, "table_iv.json"), "w") as f:
            json.dump(dict(results), f, indent=2)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
