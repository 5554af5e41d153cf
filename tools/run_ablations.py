#!/usr/bin/env python
"""Train and evaluate every row of the paper's Table IV (or a chosen subset) on one config.

Each row is a set of config overrides (``aamn.modeling.ablations.ABLATIONS``) applied to the same
base config, so all rows share the data, the proposals and the schedule.  Results go to
``<output-dir>/<row>/`` and a summary table (markdown and JSON) to
``<output-dir>/table_iv.{md,json}``.
A row whose ``eval.json`` exists is not run again (delete it to redo the row).  ``--jobs N`` trains
N rows at once (each row's output then goes to ``<output-dir>/<row>.log``): on a machine with many
cores or a GPU the rows are small enough to share it.

    python tools/run_ablations.py --config-file configs/synthetic/aamn.yaml \\
        --output-dir output/synthetic/table_iv SOLVER.MAX_ITER 400 SOLVER.STEPS "(300,)"
    python tools/run_ablations.py ... --rows "AAMN (Full Model)" "AAMN w/o Action Module"
    python tools/run_ablations.py ... --jobs 6 MODEL.DEVICE cuda
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

from aamn.modeling.ablations import ABLATIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COLUMNS = [
    ("segm", "P@0.5"),
    ("segm", "P@0.6"),
    ("segm", "P@0.7"),
    ("segm", "P@0.8"),
    ("segm", "P@0.9"),
    ("segm", "mAP"),
    ("segm", "overall_IoU"),
    ("segm", "mean_IoU"),
    ("loc", "P@0.5"),
]


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def table(rows):
    head = (
        "| Table IV row | "
        + " | ".join(k if t == "segm" else f"loc {k}" for t, k in COLUMNS)
        + " | train+eval min |"
    )
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, res in rows:
        cells = [f"{res[t][k]:.1f}" if t in res and k in res[t] else "-" for t, k in COLUMNS]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {res.get('train_minutes', float('nan')):.1f} |"
        )
    return "\n".join(lines) + "\n"


def _write_tables(output_dir, results):
    with open(os.path.join(output_dir, "table_iv.md"), "w") as f:
        f.write(table(results))
    with open(os.path.join(output_dir, "table_iv.json"), "w") as f:
        json.dump(dict(results), f, indent=2)


def run_rows(names, output_dir, command, jobs=1):
    """Run the rows without an ``eval.json`` (at most ``jobs`` at once), then read every row's.

    ``command(name, eval_json, out_dir)`` gives the row's argv.  Each finished row gets
    ``train_minutes`` (wall-clock of its training and evaluation) and the tables are rewritten, so
    an interrupted run keeps what it finished.  A failed row raises ``RuntimeError`` naming the row
    (and its log) after the rows already running have ended.

    Returns:
        ``[(name, result dict)]`` in the order of ``names``.
    """
    pending = [
        n for n in names if not os.path.exists(os.path.join(output_dir, slug(n), "eval.json"))
    ]
    running, failed, done = {}, [], {}
    os.makedirs(output_dir, exist_ok=True)

    def finish(name, proc, start, log):
        if log is not None:
            log.close()
        eval_json = os.path.join(output_dir, slug(name), "eval.json")
        if proc.returncode != 0 or not os.path.exists(eval_json):
            where = f" (see {log.name})" if log is not None else ""
            failed.append(f"{name}: exit status {proc.returncode}{where}")
            return
        with open(eval_json) as f:
            res = json.load(f)
        res["train_minutes"] = (time.time() - start) / 60
        with open(eval_json, "w") as f:
            json.dump(res, f, indent=2)
        done[name] = res
        _write_tables(output_dir, [(n, done[n]) for n in names if n in done])

    while pending or running:
        while pending and len(running) < jobs and not failed:
            name = pending.pop(0)
            out = os.path.join(output_dir, slug(name))
            print(f"[ablations] {name}: {' '.join(ABLATIONS[name]) or '(full model)'}", flush=True)
            log = open(os.path.join(output_dir, slug(name) + ".log"), "w") if jobs > 1 else None
            proc = subprocess.Popen(
                command(name, os.path.join(out, "eval.json"), out),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
            )
            running[name] = (proc, time.time(), log)
        if not running:
            break
        time.sleep(0.2)
        for name in [n for n, (p, _, _) in running.items() if p.poll() is not None]:
            finish(name, *running.pop(name))
    if failed:
        raise RuntimeError("Table IV rows failed: " + "; ".join(failed))
    results = []
    for name in names:
        with open(os.path.join(output_dir, slug(name), "eval.json")) as f:
            results.append((name, json.load(f)))
    _write_tables(output_dir, results)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--rows", nargs="*", default=None, help="row names of Table IV (default: all 14)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="rows trained at once (default 1)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="overrides for every row, KEY VALUE ..."
    )
    args = parser.parse_args(argv)
    names = args.rows or list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        parser.error(f"unknown Table IV rows {unknown}; known: {list(ABLATIONS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    py = sys.executable

    def command(name, eval_json, out):
        # Training ends with the evaluation on DATASETS.TEST, written to eval.json.
        return [
            py,
            "tools/train_net.py",
            "--config-file",
            args.config_file,
            "--results-json",
            eval_json,
            *args.opts,
            *ABLATIONS[name],
            "OUTPUT_DIR",
            out,
        ]

    try:
        results = run_rows(names, args.output_dir, command, args.jobs)
    except RuntimeError as e:
        print(f"[ablations] {e}", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
