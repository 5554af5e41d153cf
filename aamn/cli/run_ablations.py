"""Train and evaluate every row of one of the paper's ablation tables (or a chosen subset) on one
config.

Each row is a set of config overrides (``aamn.modeling.ablations.ABLATION_TABLES``: Tables I-III
K and L, IV the model ablations, V Eq. (1)'s feature, VI temporal aggregation, VII the training
strategies, VIII lambda, IX random word attention) applied to the same base config, so all rows
share the data, the proposals and the schedule.  Results go to ``<output-dir>/<row>/`` and a
summary table (markdown and JSON) to ``<output-dir>/table_<id>.{md,json}`` (Table I shows the
localisation precision, the others the segmentation metrics).  A row whose ``eval.json`` exists
is not run again (delete it to redo the row).  ``--jobs N`` trains N rows at once (each row's
output then goes to ``<output-dir>/<row>.log``): on a machine with many cores or a GPU the rows
are small enough to share it.

    python tools/run_ablations.py --config-file configs/synthetic/aamn_table_iv.yaml \\
        --output-dir output/synthetic/table_iv SOLVER.MAX_ITER 400 SOLVER.STEPS "(300,)"
    python tools/run_ablations.py ... --rows "AAMN (Full Model)" "AAMN w/o Action Module"
    python tools/run_ablations.py --table VII --config-file configs/synthetic/aamn.yaml \\
        --output-dir output/synthetic/table_vii --jobs 3
    python tools/run_ablations.py ... --jobs 6 MODEL.DEVICE cuda
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

from aamn.modeling.ablations import ABLATION_TABLES, ABLATIONS
from aamn.utils.cli import run_tool

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


# Table I reports the localisation precision (the evaluator's "loc" task).
LOC_COLUMNS = [("loc", f"P@0.{i}") for i in range(5, 10)]


def columns_of(table_id):
    return LOC_COLUMNS if table_id == "I" else COLUMNS


def table(rows, table_id="IV"):
    cols = columns_of(table_id)
    head = (
        f"| Table {table_id} row | "
        + " | ".join(k if t == "segm" else f"loc {k}" for t, k in cols)
        + " | train+eval min |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for name, res in rows:
        cells = [f"{res[t][k]:.1f}" if t in res and k in res[t] else "-" for t, k in cols]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {res.get('train_minutes', float('nan')):.1f} |"
        )
    return "\n".join(lines) + "\n"


def _write_tables(output_dir, results, table_id="IV"):
    stem = os.path.join(output_dir, f"table_{table_id.lower()}")
    with open(stem + ".md", "w") as f:
        f.write(table(results, table_id))
    with open(stem + ".json", "w") as f:
        json.dump(dict(results), f, indent=2)


def run_rows(names, output_dir, command, jobs=1, table_id="IV"):
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
        _write_tables(output_dir, [(n, done[n]) for n in names if n in done], table_id)

    while pending or running:
        while pending and len(running) < jobs and not failed:
            name = pending.pop(0)
            out = os.path.join(output_dir, slug(name))
            opts = ABLATION_TABLES[table_id].get(name, ABLATIONS.get(name, []))
            print(f"[ablations] {name}: {' '.join(opts) or '(full model)'}", flush=True)
            log = open(os.path.join(output_dir, slug(name) + ".log"), "w") if jobs > 1 else None
            proc = subprocess.Popen(
                command(name, os.path.join(out, "eval.json"), out),
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
        raise RuntimeError(f"Table {table_id} rows failed: " + "; ".join(failed))
    results = []
    for name in names:
        with open(os.path.join(output_dir, slug(name), "eval.json")) as f:
            results.append((name, json.load(f)))
    _write_tables(output_dir, results, table_id)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--table",
        default="IV",
        choices=list(ABLATION_TABLES),
        help="the paper's table whose rows are trained (default IV)",
    )
    parser.add_argument(
        "--rows", nargs="*", default=None, help="row names of the table (default: all)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="rows trained at once (default 1)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="overrides for every row, KEY VALUE ..."
    )
    args = parser.parse_args(argv)
    rows = ABLATION_TABLES[args.table]
    names = args.rows or list(rows)
    unknown = [n for n in names if n not in rows]
    if unknown:
        parser.error(f"unknown Table {args.table} rows {unknown}; known: {list(rows)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    py = sys.executable

    def command(name, eval_json, out):
        # Training ends with the evaluation on DATASETS.TEST, written to eval.json.
        return [
            py,
            "-m",
            "aamn.cli.train_net",
            "--config-file",
            args.config_file,
            "--results-json",
            eval_json,
            *args.opts,
            *rows[name],
            "OUTPUT_DIR",
            out,
        ]

    try:
        results = run_rows(names, args.output_dir, command, args.jobs, args.table)
    except RuntimeError as e:
        print(f"[ablations] {e}", file=sys.stderr)
        return 1
    print(table(results, args.table))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
