"""Whether AAMN's lead narrows with more data: every system trained on 2x and 4x the training
videos.

Scale ``k`` trains on the videos of ``synthetic_a2d_train`` and of ``k - 1`` other draws of the
same distribution (``synthetic_seed<S>_a2d_train``, ``S = 1 .. k - 1``; written by
``python datasets/prepare_synthetic.py --seed S --output datasets/synthetic_seed<S>``, with their
flow: ``python datasets/prepare_flow.py --dataset-root datasets/synthetic_seed<S>/a2d_sentences``).
Validation stays the benchmark's ``synthetic_a2d_val``.  Each system runs its trial chosen on val
(``aamn.benchmark.comparison``), one seed, as a curve run of the comparison's protocol (the same
stop rule and decay) with ``DATASETS.TRAIN`` set to the scale's data sets.  AAMN's proposal
detector is trained on the same videos (its config's schedule) and its proposals are extracted
for them and for val; a system started from the detector's weights starts from that detector.

Runs, under ``<runs>/data_scale/x<k>/``, kept so that they can be extended::

    detector/model_final.pth, detector/compute.json     the scale's proposal detector
    proposals/<data set>.pkl                            its proposals
    compute.json                                        {"proposals": {"cpu_s", "wall_s"}}
    train_videos.json                                   its training videos, counted once
    curves/<method>/<trial>/seed<S>/                    the curve runs

    OMP_NUM_THREADS=1 python tools/benchmark.py --data-scale 2 4 --reuse-accuracy --no-speed
"""

import os
from typing import Dict, List, Optional, Sequence

from aamn.engine.learning_curve import read_json
from aamn.utils.io import write_json_atomic

from .comparison import (
    CURVE_MAX_BUDGETS,
    DETECTOR_WEIGHTS,
    TRIALS,
    VAL,
    constant_points,
    curve_converged,
    curve_final,
    curve_dir,
    fixed_parts,
    learning_curve,
    train_curve,
    trial_config,
)
from .margin import FULL_DETECTOR, TRAIN, detector_command, proposals_command

SCALES = (2, 4)
METRICS = ("P@0.5", "P@0.7", "mean_IoU", "overall_IoU")


def scale_dir(runs: str, scale: int) -> str:
    return os.path.join(runs, "data_scale", f"x{scale}")


def train_sets(scale: int) -> List[str]:
    """The training data sets of scale ``scale``: the benchmark's and ``scale - 1`` draws."""
    if scale < 1:
        raise ValueError(f"a data scale is a positive number of training sets, got {scale}")
    return [TRAIN] + [f"synthetic_seed{s}_a2d_train" for s in range(1, scale)]


def draw_tree(name: str) -> str:
    """The A2D-layout tree a registered data set reads (its metadata's ``root``)."""
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(name).root


def check_draws(scale: int, needs_flow: bool) -> None:
    """``FileNotFoundError`` naming the command that writes a missing draw, or its flow."""
    for seed, name in enumerate(train_sets(scale)[1:], start=1):
        tree = draw_tree(name)
        if not os.path.isfile(os.path.join(tree, "Release", "videoset.csv")):
            raise FileNotFoundError(
                f"the data scale x{scale} needs the draw {name} at {tree}: write it with `python "
                f"datasets/prepare_synthetic.py --seed {seed} --output {os.path.dirname(tree)}`"
            )
        if needs_flow and not os.path.isfile(os.path.join(tree, "flow", ".complete")):
            raise FileNotFoundError(
                f"the data scale x{scale} needs the optical flow of {tree}: `python "
                f"datasets/prepare_flow.py --dataset-root {tree}`"
            )


def train_videos(scale: int) -> int:
    """The number of training videos of a scale (each tree's ``synthetic_info.json``)."""
    total = 0
    for name in train_sets(scale):
        info = read_json(os.path.join(os.path.dirname(draw_tree(name)), "synthetic_info.json"))
        if not info:
            raise FileNotFoundError(f"no synthetic_info.json beside {draw_tree(name)}")
        total += int(info["statistics"]["train"]["videos"])
    return total


def needs_detector(method: str, trial: str) -> bool:
    return method == "AAMN" or DETECTOR_WEIGHTS in TRIALS[method][trial]


def scale_options(runs: str, scale: int, method: str, trial: str) -> List[str]:
    """The config overrides of a system's run at ``scale``: its training sets and, for AAMN,
    the scale's proposal files (and the scale's detector for a model built on it)."""
    from aamn.config import get_aamn_cfg

    train = train_sets(scale)
    opts = ["DATASETS.TRAIN", repr(tuple(train))]
    if method == "AAMN":
        proposals = os.path.join(scale_dir(runs, scale), "proposals")
        files = tuple(os.path.join(proposals, f"{d}.pkl") for d in train)
        opts += ["DATASETS.PROPOSAL_FILES_TRAIN", repr(files)]
        opts += ["DATASETS.PROPOSAL_FILES_TEST", repr((os.path.join(proposals, f"{VAL}.pkl"),))]
        if get_aamn_cfg(trial_config(method, trial)).MODEL.AAMN.SHARED_DETECTOR.ENABLED:
            weights = os.path.join(scale_dir(runs, scale), "detector", "model_final.pth")
            opts += ["MODEL.WEIGHTS", weights]
    return opts


def run_data_scale(
    runs: str,
    scales: Sequence[int],
    chosen: Dict[str, str],
    seed: int = 1,
    max_budgets: int = CURVE_MAX_BUDGETS,
    run=None,
) -> List[str]:
    """Make what is missing of each scale for each system's chosen trial (``chosen``:
    ``{method: trial}``): the scale's detector and proposals when a system needs them, then the
    curve run (trained or extended to the stop rule).  Returns the curve folders.  ``run(cmd)``
    runs one command and returns its ``{"cpu_s", "wall_s"}`` (default: the main job's
    ``run_command``)."""
    from aamn.engine.main_job import run_command
    from aamn.utils.io import write_json_atomic

    from .comparison import reads_flow

    run = run or (lambda cmd: run_command(cmd, dict(os.environ)))
    folders = []
    for scale in scales:
        out = scale_dir(runs, scale)
        flow = any(reads_flow(m, TRIALS[m][t], t) for m, t in chosen.items())
        check_draws(scale, flow)
        train = train_sets(scale)
        if any(needs_detector(m, t) for m, t in chosen.items()):
            weights = os.path.join(out, "detector", "model_final.pth")
            if not os.path.isfile(weights):
                run(detector_command(os.path.join(out, "detector"), FULL_DETECTOR, train))
            if not all(
                os.path.isfile(os.path.join(out, "proposals", f"{d}.pkl")) for d in train + [VAL]
            ):
                used = run(proposals_command(out, weights, train + [VAL]))
                record = read_json(os.path.join(out, "compute.json")) or {}
                record["proposals"] = used
                write_json_atomic(os.path.join(out, "compute.json"), record)
        for method, trial in chosen.items():
            folder = curve_dir(out, method, trial, seed)
            extra = scale_options(runs, scale, method, trial)
            # main_job_output: a detector_init trial starts from the scale's detector
            train_curve(out, method, trial, seed, max_budgets, out, folder, extra)
            folders.append(folder)
    return folders


def scale_parts(runs: str, scale: int, method: str, trial: str, main_job_output: str) -> Dict:
    """The compute a scale's run needs before its training (``fixed_parts`` of the main job,
    with the scale's detector and proposals in place of the main job's)."""
    parts = fixed_parts(method, main_job_output, TRIALS[method][trial], trial=trial)
    out = scale_dir(runs, scale)
    if "detector" in parts:
        detector = read_json(os.path.join(out, "detector", "compute.json")) or {}
        parts["detector"] = detector.get("train_cpu_s")
    if "proposals" in parts:
        parts["proposals"] = ((read_json(os.path.join(out, "compute.json")) or {}).get(
            "proposals") or {}).get("cpu_s")  # fmt: skip
    return parts


def scale_train_videos(runs: str, scale: int) -> int:
    """``train_videos`` of a scale, kept in ``<scale dir>/train_videos.json`` once counted, so
    that a report from the runs' records (``aamn.benchmark.records``) needs no draw on disk."""
    if scale == 1:  # the benchmark's own tree, which the main job writes
        return train_videos(1)
    path = os.path.join(scale_dir(runs, scale), "train_videos.json")
    kept = read_json(path)
    if kept and "train_videos" in kept:
        return int(kept["train_videos"])
    count = train_videos(scale)
    write_json_atomic(path, {"train_videos": count, "train_sets": train_sets(scale)})
    return count


def collect_data_scale(
    runs: str, chosen_runs: Dict[str, Dict], main_job_output: str
) -> Dict[str, List[Dict]]:
    """``{method: [{"train_videos", "scale", "trial", "iterations", "converged", "total_cpu_s",
    "val": {metric: value}}]}``, scale 1 first: ``chosen_runs`` (``{method: {"trial", "points"}}``,
    the comparison's chosen trial's seed-1 curve), then every scale run that has a curve; {} for
    a system without a scale run.  The flow of the draws is not in ``total_cpu_s`` (the main job's
    flow is)."""
    out: Dict[str, List[Dict]] = {}

    def entry(scale, trial, points, parts=None):
        final = points[-1]
        if parts is None:  # the comparison's own curve: its points count its fixed parts
            total = final.get("total_cpu_s")
        else:
            total = None if None in parts.values() else sum(parts.values()) + final["train_cpu_s"]
        return {
            "scale": scale,
            "train_videos": scale_train_videos(runs, scale),
            "trial": trial,
            "iterations": final["iterations"],
            "converged": curve_converged(points),
            "final": curve_final(points),
            "constant_iterations": constant_points(points)[-1]["iterations"],
            "total_cpu_s": total,
            "val": {m: final["val"].get(m) for m in METRICS},
        }

    base = os.path.join(runs, "data_scale")
    for method, chosen in chosen_runs.items():
        trial = chosen["trial"]
        rows = []
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            scale = int(name[1:])
            folder = curve_dir(os.path.join(base, name), method, trial, 1)
            points = learning_curve(folder, {})
            if points:
                parts = scale_parts(runs, scale, method, trial, main_job_output)
                rows.append(entry(scale, trial, points, parts))
        if rows and chosen.get("points"):  # the comparison's own run beside the scales
            rows.append(entry(1, trial, chosen["points"]))
        if rows:
            out[method] = sorted(rows, key=lambda r: r["scale"])
    return out


def data_scale_markdown(result) -> List[str]:
    """The data-scale table: each system's val P@0.5 (mean IoU) by training videos; AAMN's lead
    where both curves are final (a curve still being trained shows its latest point)."""
    from .report import fmt, table

    def state(entry):
        if not entry.get("final", True):
            return ", in progress"
        return "" if entry["converged"] else ", not converged"

    scale = (result.get("margin") or {}).get("data_scale") or {}
    if not scale:
        return []
    sizes = sorted({r["train_videos"] for rows in scale.values() for r in rows})
    rows = []
    for method, entries in scale.items():
        by = {r["train_videos"]: r for r in entries}
        cells = [
            f"{fmt(by[n]['val']['P@0.5'])} / {fmt(by[n]['val']['mean_IoU'])} "
            f"({by[n]['iterations']} it{state(by[n])})"
            if n in by
            else "-"
            for n in sizes
        ]
        rows.append([f"{method} ({entries[0]['trial']})", *cells])
    gaps = mean_gap(scale)
    for method in [m for m in scale if m != "AAMN"]:
        cells = [fmt(gaps.get(n, {}).get(method)) for n in sizes]
        if any(c != "-" for c in cells):
            rows.append([f"AAMN's lead over {method} (P@0.5)", *cells])
    lines = [
        "",
        "Each system's chosen trial trained on more videos of the same distribution (seed 1, to "
        "its stop rule and decay; val P@0.5 / mean IoU, iterations):",
        "",
    ]
    return lines + table(["system", *[f"{n} training videos" for n in sizes]], rows)


def chosen_seed_curves(result: Dict, seed: int = 1) -> Dict[str, Dict]:
    """``{method: {"trial", "points"}}``: each chosen trial's curve of ``seed`` in a results
    JSON (``val`` and ``learning_curve_runs``)."""
    out = {}
    for method, val in (result.get("val") or {}).items():
        points: Optional[List] = (result.get("learning_curve_runs") or {}).get(method, {}).get(
            str(seed))  # fmt: skip
        out[method] = {"trial": val["trial"], "points": points or []}
    return out


def mean_gap(rows: Dict[str, List[Dict]], metric: str = "P@0.5") -> Dict[int, Dict[str, float]]:
    """``{train_videos: {method: AAMN's lead over it}}`` where both have a final point (a curve
    still being trained has none: ``final``)."""
    finals = {m: [r for r in entries if r.get("final", True)] for m, entries in rows.items()}
    aamn = {r["train_videos"]: r["val"][metric] for r in finals.get("AAMN", [])}
    gaps: Dict[int, Dict[str, float]] = {}
    for method, entries in finals.items():
        for r in entries if method != "AAMN" else ():
            if r["train_videos"] in aamn and r["val"][metric] is not None:
                gaps.setdefault(r["train_videos"], {})[method] = (
                    aamn[r["train_videos"]] - r["val"][metric]
                )
    return gaps
