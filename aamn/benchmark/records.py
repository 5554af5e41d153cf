"""The runs' records, kept in the repository (``benchmarks/records/``).

A run folder holds checkpoints, logs and evaluations; a machine that is lost takes them all with
it, and with them every number a report was built from.  The records are the small files the
report reads: every ``*.json`` and ``*.yaml`` (outside the evaluators' ``inference/`` dumps and
the demo's outputs) of the benchmark's runs (``--runs``: ``learning_curve.json``,
``compute.json``, ``eval_*.json``, the weak-proposal levels' recall, the proposal-conditioned
results, the cached reference levels and mask sizes) and of the main job's output (its stages'
compute, the detector's), each under its root's name::

    benchmarks/records/benchmark/curves/<method>/<trial>/seed<S>/learning_curve.json ...
    benchmarks/records/synthetic/main_job_compute.json ...

``python tools/benchmark.py --save-records`` copies them there (``save_records``), and a report
is built from them alone with ``--runs benchmarks/records/benchmark --main-job-output
benchmarks/records/synthetic`` (it reads JSON only; models are needed to train, to extend a
curve and to evaluate, not to report).  Checkpoints, logs, detectron2's ``metrics.json`` and any
file over ``MAX_RECORD_BYTES`` stay behind.  A run whose records are further along than the local
folder's (a curve trained again from nothing on a new machine, not yet as long as the kept one)
is not replaced: the kept records stay until the new run has come as far.
"""

import filecmp
import os
import shutil
from typing import Dict, List, NamedTuple

from aamn.engine.learning_curve import CURVE_FILE, read_json
from aamn.utils.io import atomic_path

RECORDS = os.path.join("benchmarks", "records")
RECORD_SUFFIXES = (".json", ".yaml")
# detectron2's event stream and the last checkpoint's name: logs, not records
LEFT_OUT = ("metrics.json", "last_checkpoint")
# the evaluators' dumps (per-sample rows, COCO files) and the demo's outputs: a report reads
# their summaries (eval_*.json, mask_sizes.json), not them
LEFT_OUT_FOLDERS = ("inference", "demo")
MAX_RECORD_BYTES = 1 << 20


class Saved(NamedTuple):
    """What ``save_records`` did: the records written (paths under ``dest``), the files left out
    for their size, and the run folders whose kept records are further along than the local
    ones."""

    written: List[str]
    too_large: List[str]
    behind: List[str]


def _curve_length(folder: str) -> int:
    curve = read_json(os.path.join(folder, CURVE_FILE))
    return len(curve) if isinstance(curve, list) else 0


def save_records(roots: Dict[str, str], dest: str) -> Saved:
    """Copy the records of every root (``{name: folder}``) to ``dest/<name>/``, keeping the
    folders' layout; a record equal to the kept one is not written again.

    Raises:
        ValueError: a root's name is not one plain folder name.
    """
    written, too_large, behind = [], [], []
    for name, root in sorted(roots.items()):
        if not name or os.sep in name or name in (".", ".."):
            raise ValueError(f"records root name {name!r}: expected one plain folder name")
        if not os.path.isdir(root):
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in LEFT_OUT_FOLDERS)
            rel = os.path.relpath(folder, root)
            kept = os.path.normpath(os.path.join(dest, name, rel))
            if _curve_length(kept) > _curve_length(folder):
                behind.append(folder)
                continue
            for file in sorted(files):
                if not file.endswith(RECORD_SUFFIXES) or file in LEFT_OUT:
                    continue
                src = os.path.join(folder, file)
                if os.path.islink(src) or not os.path.isfile(src):
                    continue
                if os.path.getsize(src) > MAX_RECORD_BYTES:
                    too_large.append(src)
                    continue
                target = os.path.join(kept, file)
                if os.path.isfile(target) and filecmp.cmp(src, target, shallow=False):
                    continue
                with atomic_path(target) as tmp:  # creates the folder; no partial record
                    shutil.copyfile(src, tmp)
                written.append(target)
    return Saved(written, too_large, behind)
