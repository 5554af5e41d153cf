"""Learning curves of the compared systems on the validation split, and the compute each system
needs from nothing.

A curve run is the system's config trained with a constant learning rate after warm-up
(``SOLVER.STEPS ()``), evaluated on ``synthetic_a2d_val`` every ``budget`` iterations (the
system's own ``SOLVER.MAX_ITER``, "today's budget"), up to ``CURVE_MAX_BUDGETS`` budgets or until
the curve has converged (``TEST.CURVE``: the last two evaluations each added less than 0.5 P@0.5
over the best before them).  It lives in ``<runs>/curves/<method>/<trial>/seed<S>/`` with its
``learning_curve.json`` and ``compute.json`` (``aamn.engine.learning_curve``); running the same
command again with a larger ``--max-budgets`` resumes and extends it.  Only the final models of
the trial chosen on val are evaluated, once, on the test splits (``eval_synthetic_a2d_test.json``,
``eval_synthetic_jhmdb_test.json``); the other trials never see the test split.

A system's total compute is its training's CPU seconds plus every part it cannot run without:
AAMN the proposal detector's training and the proposal extraction; every system that reads
optical flow the flow of the A2D-layout tree.  The parts come from the main job's records
(``<main job output>/main_job_compute.json``, ``detector/compute.json``).
"""

import json
import math
import os
from dataclasses import dataclass
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from aamn.engine.learning_curve import converged, read_json

from .methods import A2D, JHMDB, METHODS, config_file

VAL = "synthetic_a2d_val"
CURVE_MAX_BUDGETS = 10
# The stop rule (min gain in P@0.5, patience: aamn.engine.learning_curve.converged): 2 points, above
# the val split's noise (1,214 records: a P@0.5 near 50 has a binomial standard error of 1.4
# points; two seeds of one trial differed by 1-1.4 at convergence).
STOP_RULE = (2.0, 2)
# The learning-rate decay at the end of every converged curve: the rate x0.1 for one more budget
# (TEST.CURVE.DECAY_FACTOR, DECAY_PERIODS), the same rule for every system.
DECAY = (0.1, 1)
STOP = [
    "TEST.CURVE.STOP_PATIENCE",
    str(STOP_RULE[1]),
    "TEST.CURVE.STOP_MIN_GAIN",
    str(STOP_RULE[0]),
    "TEST.CURVE.DECAY_FACTOR",
    str(DECAY[0]),
    "TEST.CURVE.DECAY_PERIODS",
    str(DECAY[1]),
]
# Trials are ranked after RANK_BUDGETS budgets at their constant rate (or at their stop rule when
# it comes first), and at least at half of the chosen trial's converged length under STOP_RULE:
# when that curve converges later than 2 * RANK_BUDGETS budgets, every trial is extended to half
# of its length (``ranking_depth``'s ``rank_budgets_wanted``) and the comparison moves there.
RANK_BUDGETS = 2

# Recipe trials: name -> config overrides ("base": the system's config as it is).  A trial is a
# curve run like any other (``--trials``, usually with a small ``--max-budgets``); the trial of a
# system whose curve the comparison reports is chosen on val (``collect_curves``).  Every system
# gets six: three widths (today's among them), the other stream setting, a finer resolution and
# its backbone started from the proposal detector's.
#   wide / wider: the comparison systems' heads 2x / 4x today's.  CMDy: DECON_DIM / GROUPS 32 / 8
#   and 64 / 16 (4 channels a group as the paper's 256 / 64), its per-position kernels k^V from a
#   grouped convolution (VISUAL_KERNEL_GROUPS = GROUPS, GROUPS times fewer operations); 128 / 32
#   costs more than a curve's time here.  DynamicFilterSeg: decoder [64, 32] and [128, 32] (the
#   paper's [256, 64]); the full-resolution block stays at 32 (its ConvT and 3x3 conv run on every
#   pixel).  AAMN: FPN and mask head 16 (narrow) and 64 (wide) channels against today's 32.  The
#   step cost of each width is measured with tools/benchmark_model.py (BENCHMARKS.md).
#   rgb / two_stream: the other stream setting of each system (AAMN's Table X has both for AAMN and
#   CMDy; Gavrilyuk et al. report both): AAMN and DynamicFilterSeg with RGB alone, CMDy with its
#   Flow stream added (maps averaged with STREAM_WEIGHTS).  A system reading flow counts the flow.
#   stride8 / fine_mask, finer resolution (also the check that the ranking is not an artifact of
#   96 x 128 frames): CMDy and DynamicFilterSeg on the backbone's stride-8 maps (res3, 12 x 16
#   cells at 96 x 128, closer to the papers' 32 x 32 at 512 x 512) instead of stride 16 (6 x 8);
#   DynamicFilterSeg's first decoder block then upsamples x2 (to stride 4 as before).  AAMN's RoI
#   heads already pool from the stride-4 FPN level, so its finer setting is the mask:
#   MASK_POOLER_RESOLUTION 28 (56 x 56 mask logits per box, not 28 x 28).
#   detector_init: the system's config started from the proposal detector's weights (its ResNet
#   backbone, both streams: ``checkpoint_conversions.fpn_bottom_up``; the FPN's 64 channels fit
#   none of the systems and stay out).  The detector's training is then part of the system's
#   compute (``fixed_parts``).  DETECTOR_WEIGHTS stands for the main job's detector
#   (``trial_overrides``).
DETECTOR_WEIGHTS = "<main job detector>"
DETECTOR_INIT = ["MODEL.WEIGHTS", DETECTOR_WEIGHTS]
STRIDE8 = ["MODEL.TINY.OUT_FEATURES", "['res3']", "MODEL.CLIP_ENCODER.IN_FEATURE", "res3"]
TRIALS: Dict[str, Dict[str, List[str]]] = {
    "AAMN": {
        "base": [],
        "narrow": ["MODEL.FPN.OUT_CHANNELS", "16", "MODEL.AAMN.MASK_HEAD.CONV_DIM", "16"],
        "wide": ["MODEL.FPN.OUT_CHANNELS", "64", "MODEL.AAMN.MASK_HEAD.CONV_DIM", "64"],
        "rgb": ["MODEL.AAMN.USE_FLOW", "False", "MODEL.AAMN.MASK_HEAD.USE_FLOW", "False"]
        + ["INPUT.FLOW.ENABLED", "False"],
        "fine_mask": ["MODEL.AAMN.MASK_POOLER_RESOLUTION", "28"],
        "detector_init": DETECTOR_INIT,
        # the main job's model (TRIAL_CONFIGS): one backbone for the proposals and the RGB stream,
        # started from the detector and fine-tuned (the structure of detector_init, shared)
        "shared": [],
    },
    "DynamicFilterSeg": {
        "base": [],
        "wide": ["MODEL.DYNAMIC_FILTER.DECODER_DIMS", "[64, 32]"],
        "wider": ["MODEL.DYNAMIC_FILTER.DECODER_DIMS", "[128, 32]"],
        "rgb": ["MODEL.DYNAMIC_FILTER.STREAMS", "['rgb']", "INPUT.FLOW.ENABLED", "False"],
        "stride8": STRIDE8,
        "detector_init": DETECTOR_INIT,
        # combined: the widths and the finer maps, each better than the base alone
        "wide_stride8": ["MODEL.DYNAMIC_FILTER.DECODER_DIMS", "[64, 32]", *STRIDE8],
    },
    "CMDy": {
        "base": [],
        "wide": ["MODEL.CMDY.DECON_DIM", "32", "MODEL.CMDY.GROUPS", "8"]
        + ["MODEL.CMDY.VISUAL_KERNEL_GROUPS", "8"],
        "wider": ["MODEL.CMDY.DECON_DIM", "64", "MODEL.CMDY.GROUPS", "16"]
        + ["MODEL.CMDY.VISUAL_KERNEL_GROUPS", "16"],
        "two_stream": ["MODEL.CMDY.STREAMS", "['rgb', 'flow']", "INPUT.FLOW.ENABLED", "True"],
        "stride8": STRIDE8,
        "detector_init": DETECTOR_INIT,
        # combined: the Flow stream and the finer maps, each better than the base alone
        "two_stream_stride8": ["MODEL.CMDY.STREAMS", "['rgb', 'flow']", "INPUT.FLOW.ENABLED"]
        + ["True", *STRIDE8],
    },
}
# Trials run with another config than the system's (``trial_config``).
TRIAL_CONFIGS = {("AAMN", "shared"): "configs/synthetic/aamn.yaml"}


# The main job's outputs, relative to the folder the tools run in (the repository's root).
MAIN_JOB_OUTPUT = os.path.join("output", "synthetic")


def detector_weights(main_job_output: str) -> str:
    """The main job's proposal detector (``<main job output>/detector/model_final.pth``).

    Raises:
        FileNotFoundError: the main job's detector stage has not run.
    """
    path = os.path.join(main_job_output, "detector", "model_final.pth")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no proposal detector at {path}: run the main job first")
    return path


def trial_overrides(method: str, trial: str, main_job_output: str = MAIN_JOB_OUTPUT) -> List[str]:
    """The config overrides of a trial, ``DETECTOR_WEIGHTS`` replaced by the main job's detector."""
    overrides = TRIALS[method][trial]
    if DETECTOR_WEIGHTS not in overrides:
        return list(overrides)
    weights = detector_weights(main_job_output)
    return [weights if o == DETECTOR_WEIGHTS else o for o in overrides]


def trial_options(method: str, trial: str) -> List[str]:
    """A trial's config overrides without its ``MODEL.WEIGHTS`` (an initialisation): what a
    model of the trial is built with when its own weights are loaded."""
    pairs = TRIALS[method][trial]
    return [v for i in range(0, len(pairs), 2) if pairs[i] != "MODEL.WEIGHTS"
            for v in pairs[i : i + 2]]  # fmt: skip


def trial_config(method: str, trial: str) -> str:
    """The config a trial's runs are trained and built with: the system's (``config_file``) or
    the trial's own (``TRIAL_CONFIGS``)."""
    own = TRIAL_CONFIGS.get((method, trial))
    if own is None:
        return config_file(method)
    from ..model_zoo import get_config_file

    return get_config_file(os.path.relpath(own, "configs"))


def curve_dir(runs: str, method: str, trial: str, seed: int) -> str:
    return os.path.join(runs, "curves", method, trial, f"seed{seed}")


def budget_of(method: str, trial: str = "base") -> int:
    """Today's training budget of a system's trial: its config's ``SOLVER.MAX_ITER``."""
    from aamn.config import get_aamn_cfg

    return int(get_aamn_cfg(trial_config(method, trial)).SOLVER.MAX_ITER)


# Checkpoints a curve run saves per budget: a run stopped between two (a machine's session ending)
# loses at most a quarter of a budget's training.
CHECKPOINTS_PER_BUDGET = 4


def checkpoint_period(budget: int) -> int:
    """A curve run's ``SOLVER.CHECKPOINT_PERIOD``: ``CHECKPOINTS_PER_BUDGET`` checkpoints per
    budget where they divide it (every evaluation keeps its ``model_<budget - 1>`` checkpoint),
    otherwise one per budget."""
    n = CHECKPOINTS_PER_BUDGET
    return budget // n if budget % n == 0 else budget


def curve_command(
    method: str,
    trial: str,
    seed: int,
    out: str,
    max_budgets: int,
    main_job_output: str = MAIN_JOB_OUTPUT,
    extra: Sequence[str] = (),
) -> List[str]:
    """The training command of one curve run (``--resume`` when it has a checkpoint);
    ``extra``: more config overrides, last (the data-scale runs' training sets)."""
    budget = budget_of(method, trial)
    cmd = [sys.executable, "-m", "aamn.cli.train_net"]
    cmd += ["--config-file", trial_config(method, trial)]
    if os.path.isfile(os.path.join(out, "last_checkpoint")):
        cmd.append("--resume")
    cmd += ["SEED", str(seed), "OUTPUT_DIR", out, "DATASETS.TEST", f"('{VAL}',)"]
    # room for the decay after the last budget (a curve not converged by then ends there)
    max_iter = (max_budgets + DECAY[1]) * budget
    cmd += ["TEST.EVAL_PERIOD", str(budget), "SOLVER.MAX_ITER", str(max_iter)]
    # checkpoints at every evaluation and between (CHECKPOINTS_PER_BUDGET): a stopped run resumes
    # from its last one with its curve and compute (aamn.engine.learning_curve)
    cmd += ["SOLVER.CHECKPOINT_PERIOD", str(checkpoint_period(budget))]
    cmd += ["SOLVER.STEPS", "()", *STOP, *trial_overrides(method, trial, main_job_output)]
    return cmd + list(extra)


def curve_finished(out: str, max_budgets: int, budget: int) -> bool:
    """The run has ended its decay (``DECAY``: it met the stop rule and ran its decayed budgets)
    or reached ``max_budgets`` at its constant rate."""
    if not os.path.isfile(os.path.join(out, "model_final.pth")):
        return False
    return curve_final(learning_curve(out, {}), max_budgets * budget)


def train_curve(
    runs: str,
    method: str,
    trial: str,
    seed: int,
    max_budgets: int,
    main_job_output: str = MAIN_JOB_OUTPUT,
    out: Optional[str] = None,
    extra: Sequence[str] = (),
) -> str:
    """Train (or extend) one curve run; returns its folder (``out``, default ``curve_dir``).  Its
    final model is evaluated on the test splits only if its trial is the one chosen on val
    (``evaluate_test``, from ``collect_curves``): a recipe trial never sees the test split.
    ``main_job_output``: where the detector of a ``detector_init`` trial is; ``extra``: more
    config overrides (``curve_command``)."""
    out = out or curve_dir(runs, method, trial, seed)
    if not curve_finished(out, max_budgets, budget_of(method, trial)):
        for name in (f"eval_{A2D}.json", f"eval_{JHMDB}.json"):  # of an earlier, shorter curve
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        cmd = curve_command(method, trial, seed, out, max_budgets, main_job_output, extra)
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return out


def evaluate_test(out: str, method: str, trial: str) -> None:
    """Evaluate a curve run's final model once on the test splits (``eval_<test set>.json`` in
    ``out``; an existing evaluation is kept: it is the same final model's).  The trial's own
    ``MODEL.WEIGHTS`` (``detector_init``) gives way to the run's final model."""
    for dataset in (A2D, JHMDB):
        path = os.path.join(out, f"eval_{dataset}.json")
        if os.path.isfile(path):
            continue
        if not os.path.isfile(os.path.join(out, "model_final.pth")):
            raise FileNotFoundError(
                f"{out} has no model_final.pth to evaluate on {dataset} (a run kept only as "
                "records, or not trained to its end): train the curve again"
            )
        cmd = [sys.executable, "-m", "aamn.cli.train_net", "--eval-only"]
        cmd += ["--config-file", trial_config(method, trial), "--results-json", path]
        cmd += [*trial_options(method, trial), "MODEL.WEIGHTS"]
        cmd += [os.path.join(out, "model_final.pth")]
        cmd += ["OUTPUT_DIR", out, "DATASETS.TEST", f"('{dataset}',)"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


# ---------------------------------------------------------------------------- compute
def reads_flow(method: str, overrides: Optional[List[str]] = None, trial: str = "base") -> bool:
    """Whether a system's trial config (with ``overrides``) reads optical flow."""
    from aamn.config import get_aamn_cfg

    return bool(get_aamn_cfg(trial_config(method, trial), overrides or []).INPUT.FLOW.ENABLED)


def fixed_parts(
    method: str, main_job_output: str, overrides=None, unit="cpu", trial="base"
) -> Dict[str, float]:
    """CPU seconds (``unit "cpu"``; ``"wall"``: wall seconds) of what a system needs before its own
    training, from the main job's records: ``{"detector": ..., "proposals": ...}`` for AAMN (the
    detector's training without its evaluation, the whole proposal stage), ``{"detector": ...}``
    for a system started from the detector's weights (``DETECTOR_WEIGHTS`` in ``overrides``),
    ``{"flow": ...}`` for a system reading flow (the A2D-layout tree's flow: the command the main
    job ran first in its flow stage).

    Raises:
        FileNotFoundError: a record is missing (the main job's stage has not run).
    """
    stages = read_json(os.path.join(main_job_output, "main_job_compute.json")) or {}
    key = f"{unit}_s"
    parts = {}

    def stage_seconds(name, command=None):
        record = stages.get(name)
        if record is None:
            raise FileNotFoundError(
                f"no compute record of the main job's {name} stage in "
                f"{os.path.join(main_job_output, 'main_job_compute.json')}: run the main job"
            )
        if command is not None and record.get("commands"):
            return float(record["commands"][command][key])
        return float(record[key])

    if method == "AAMN" or DETECTOR_WEIGHTS in (overrides or ()):
        detector = read_json(os.path.join(main_job_output, "detector", "compute.json"))
        parts["detector"] = (
            float(detector[f"train_{key}"]) if detector else stage_seconds("detector")
        )
    if method == "AAMN":
        parts["proposals"] = stage_seconds("proposals")
    if reads_flow(method, overrides, trial):
        parts["flow"] = stage_seconds("flow", command=0)
    return parts


def learning_curve(out: str, parts: Dict[str, float]) -> List[Dict]:
    """``[{"iterations", "train_cpu_s", "total_cpu_s", "val": {metric: value}}]`` of a curve run,
    the fixed ``parts`` added to each point's training CPU seconds; the points within the
    learning-rate decay have ``"decayed": True``."""
    fixed = sum(parts.values())
    points = []
    for r in read_json(os.path.join(out, "learning_curve.json")) or []:
        res = r["results"]
        if "segm" not in res and res:
            res = next(iter(res.values()))
        val = dict(res.get("segm", {}))
        if "query_swap" in res:
            val["query_swap"] = res["query_swap"].get("moved")
        point = {
            "iterations": r["iterations"],
            "train_cpu_s": r["train_cpu_s"],
            "total_cpu_s": fixed + r["train_cpu_s"],
            "val": val,
        }
        if r.get("lr_factor") is not None:  # within the learning-rate decay (DECAY)
            point["decayed"] = True
        points.append(point)
    return points


# ---------------------------------------------------------------------------- the results
SUMMARY_METRICS = ("P@0.5", "P@0.7", "P@0.9", "mAP", "overall_IoU", "mean_IoU")


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def constant_points(points: List[Dict]) -> List[Dict]:
    """A curve's points at its constant learning rate (before its decay)."""
    return [q for q in points if not q.get("decayed")]


def curve_converged(points: List[Dict]) -> bool:
    """Whether a curve's val P@0.5 at its constant rate met the stop rule (``STOP_RULE``)."""
    return converged([q["val"].get("P@0.5", 0.0) for q in constant_points(points)], *STOP_RULE)


def curve_final(points: List[Dict], max_iterations: Optional[int] = None) -> bool:
    """Whether a curve is final: it ran its decay after meeting the stop rule (``DECAY``), or
    reached ``max_iterations`` at its constant rate (default ``CURVE_MAX_BUDGETS`` budgets: its
    first evaluation is at one budget).  Only a final model is evaluated on test."""
    constant = constant_points(points)
    if not points or not constant:
        return False
    limit = max_iterations or CURVE_MAX_BUDGETS * constant[0]["iterations"]
    return len(points) - len(constant) >= DECAY[1] or constant[-1]["iterations"] >= limit


def finished_points(points: Dict[int, List[Dict]]) -> Dict[int, Dict]:
    """``{seed: final point}`` of a trial's finished curves (``points``: ``{seed: curve}``).  A
    curve is finished when it is final (``curve_final``) or as long as the trial's longest (the
    trials' runs to ``RANK_BUDGETS``); a shorter curve that is not final is still being extended:
    it counts in no mean and its model is not evaluated on test."""
    longest = max((p[-1]["iterations"] for p in points.values() if p), default=0)
    return {
        s: p[-1]
        for s, p in sorted(points.items())
        if p and (p[-1]["iterations"] >= longest or curve_final(p))
    }


def seed_runs(folder: str) -> Dict[int, str]:
    """``{seed: run folder}`` of the ``seed<S>`` folders under ``folder`` that have a learning
    curve."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        out = os.path.join(folder, name)
        if name.startswith("seed") and os.path.isfile(os.path.join(out, "learning_curve.json")):
            found[int(name[len("seed") :])] = out
    return found


def curve_runs(runs: str) -> Dict[str, Dict[str, Dict[int, str]]]:
    """``{method: {trial: {seed: folder}}}`` of the curve runs that have a learning curve."""
    found = {}
    for method in METHODS:
        base = os.path.join(runs, "curves", method)
        for trial in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            seeds = seed_runs(os.path.join(base, trial))
            if seeds:
                found.setdefault(method, {})[trial] = seeds
    return found


def best_tube_cached(out: str, method_config: str, overrides: List[str]) -> Dict[str, float]:
    """AAMN's best-of-K tube level on the validation split with the model of ``out`` (computed
    once per final model, kept in ``out/best_tube_<val>.json`` with the iteration count it was
    computed at: a curve extended since is computed again)."""
    path = os.path.join(out, f"best_tube_{VAL}.json")
    iterations = (read_json(os.path.join(out, "compute.json")) or {}).get("iterations")
    cached = read_json(path) or {}
    if cached.get("iterations") == iterations and "level" in cached:
        return cached["level"]
    weights = os.path.join(out, "model_final.pth")
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{weights} is missing and {path} holds no level for iteration {iterations}: the "
            "best-tube level needs the run's final model (a report built from the kept records "
            "reads the level the run's own report cached)"
        )
    import torch

    from aamn.config import get_aamn_cfg
    from aamn.engine import Trainer
    from aamn.evaluation.reference_levels import best_tube_level
    from aamn.modeling import StreamCheckpointer
    from aamn.utils.io import atomic_path

    cfg = get_aamn_cfg(method_config, [*overrides, "MODEL.WEIGHTS", weights])
    model = Trainer.build_model(cfg)
    StreamCheckpointer(model, strict=True).load(weights)
    model.eval()
    with torch.no_grad():
        level = best_tube_level(model, Trainer.build_test_loader(cfg, VAL), VAL)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({"iterations": iterations, "level": level}, f, indent=1)
    return level


@dataclass
class TrialRuns:
    """One trial's runs as ``collect_curves`` reads them: its table ``entry``, the run folder of
    each ``seed``, each seed's curve ``points``, the fixed compute ``parts`` (detector, proposals,
    flow), the ``finals`` (each finished seed's final point) and the seeds' ``computes``."""

    entry: Dict
    seeds: Dict[int, str]
    points: Dict[int, List[Dict]]
    parts: Dict[str, float]
    finals: Dict[int, Dict]
    computes: List[Dict]


def read_trials(runs: str, main_job_output: str) -> Dict[str, List[TrialRuns]]:
    """``{method: [TrialRuns of each trial]}`` of the curve runs under ``runs`` (reads only)."""
    out: Dict[str, List[TrialRuns]] = {}
    for method, trials in curve_runs(runs).items():
        for trial, seeds in trials.items():
            overrides = TRIALS.get(method, {}).get(trial, [])
            parts = fixed_parts(method, main_job_output, overrides, trial=trial)
            points = {s: learning_curve(d, parts) for s, d in seeds.items()}
            finals = finished_points(points)  # by seed
            entry = {
                "trial": trial,
                "overrides": overrides,
                "seeds": sorted(finals),
                "iterations": [finals[s]["iterations"] for s in sorted(finals)],
                # seeds whose curves are still being extended: their iterations so far
                "in_progress": {
                    str(s): p[-1]["iterations"] for s, p in points.items() if p and s not in finals
                },
                "val": {
                    m: _mean([f["val"].get(m) for f in finals.values()])
                    for m in (*SUMMARY_METRICS, "query_swap")
                },
            }
            computes = [read_json(os.path.join(seeds[s], "compute.json")) or {} for s in finals]
            # the training's CPU seconds per iteration at its final point, and its threads
            entry["train_cpu_s_per_it"] = _mean(
                [f["train_cpu_s"] / f["iterations"] for f in finals.values() if f["iterations"]]
            )
            entry["threads"] = sorted({c["threads"] for c in computes if c.get("threads")})
            out.setdefault(method, []).append(
                TrialRuns(entry, seeds, points, parts, finals, computes)
            )
    return out


def rank_point(points: List[Dict], common: int) -> Dict:
    """A curve's point where trials are compared: its last point at its constant rate at or
    before ``common`` iterations (a curve that converged earlier stands at its last one)."""
    constant = constant_points(points)
    return ([q for q in constant if q["iterations"] <= common] or constant[:1])[-1]


def choose_trial(ranked: List[TrialRuns]) -> TrialRuns:
    """The trial chosen on val: the best mean P@0.5 over the seeds every trial ran (a second seed
    of one trial, or its curve still being extended, moves no choice), at the constant learning
    rate (decayed points compare with none), at the largest iteration count every curve that has
    not converged reached (a converged curve stands at its last constant point; all converged:
    each at its own).  Writes each entry's ``chosen_on``."""
    shared = set.intersection(*(set(s for s, p in r.points.items() if p) for r in ranked))
    compared = [{s: p for s, p in r.points.items() if p and (s in shared or not shared)}
                for r in ranked]  # fmt: skip
    curves = [p for c in compared for p in c.values()]
    open_ends = [constant_points(p)[-1]["iterations"] for p in curves if not curve_converged(p)]
    common = min(open_ends) if open_ends else max(
        constant_points(p)[-1]["iterations"] for p in curves)  # fmt: skip
    for r, c in zip(ranked, compared):
        at = [rank_point(p, common) for p in c.values()]
        r.entry["chosen_on"] = {
            "iterations": common,
            "seeds": sorted(c),
            "P@0.5": _mean([q["val"].get("P@0.5") for q in at]),
        }
    return max(ranked, key=lambda r: r.entry["chosen_on"]["P@0.5"] or -1.0)


def seeds_wanted(chosen: TrialRuns, ranked: List[TrialRuns]) -> Dict:
    """Whether the chosen trial needs a third seed: its two finished seeds' final val P@0.5
    differ by more than its lead over the runner-up where the trials were compared.
    ``{"spread", "lead", "seeds"}`` (``seeds``: 3 when a third is wanted, else the seeds run)."""
    finals = [f["val"].get("P@0.5") for f in chosen.finals.values()]
    finals = [v for v in finals if v is not None]
    others = [r.entry["chosen_on"]["P@0.5"] for r in ranked if r is not chosen]
    others = [v for v in others if v is not None]
    spread = max(finals) - min(finals) if len(finals) > 1 else None
    lead = chosen.entry["chosen_on"]["P@0.5"] - max(others) if others else None
    third = len(finals) == 2 and spread is not None and lead is not None and spread > lead
    return {"spread": spread, "lead": lead, "seeds": 3 if third else len(finals)}


def ranking_depth(chosen: TrialRuns) -> Dict:
    """Where the trials were compared (``chosen_on``), against the chosen trial's converged
    length (a curve's iterations at its constant rate when it met the stop rule; one not
    converged counts its length so far).  The final protocol compares the trials at least at
    half of it; the trials' curves are extended to ``rank_budgets_wanted`` budgets when they were
    compared sooner (``--curves --max-budgets``), and the comparison then moves there.

    Returns ``{"ranked_at_fraction": the compared point over the longest of the compared
    seeds' lengths, "ranked_at_fraction_all_seeds": over the longest of all its seeds',
    "ranked_at_budgets", "rank_budgets_wanted": the budgets at half the compared seeds' length,
    at least RANK_BUDGETS}``."""
    at = chosen.entry["chosen_on"]["iterations"]
    compared = [s for s in chosen.entry["chosen_on"]["seeds"] if chosen.points.get(s)]
    compared = compared or [s for s, p in chosen.points.items() if p]
    every = sorted(set(chosen.finals) | set(compared))

    def longest(seeds):
        return max(constant_points(chosen.points[s])[-1]["iterations"] for s in seeds)

    budget = constant_points(chosen.points[compared[0]])[0]["iterations"]
    return {
        "ranked_at_fraction": at / longest(compared),
        "ranked_at_fraction_all_seeds": at / longest(every),
        "ranked_at_budgets": at / budget,
        "rank_budgets_wanted": max(RANK_BUDGETS, math.ceil(longest(compared) / (2 * budget))),
    }


def evaluate_chosen_on_test(runs: str, main_job_output: str) -> None:
    """Evaluate on the test splits, once each, the final models of each system's chosen trial
    that have no test evaluation yet (``evaluate_test``; only final curves, ``curve_final``: a
    curve still to be extended is not; the other trials are never evaluated on test).  What
    ``tools/benchmark.py --evaluate-test`` runs before ``collect_curves`` reports."""
    for method, ranked in read_trials(runs, main_job_output).items():
        chosen = choose_trial(ranked)
        for s in sorted(chosen.finals):
            if curve_final(chosen.points[s]):
                evaluate_test(chosen.seeds[s], method, chosen.entry["trial"])
            else:
                print(
                    f"{chosen.seeds[s]}: not evaluated on test: its curve has neither met the stop "
                    f"rule nor reached {CURVE_MAX_BUDGETS} budgets (extend it: --curves "
                    "--max-budgets)",
                    file=sys.stderr,
                )


def _chosen_summary(method: str, chosen: TrialRuns, main_job_output: str) -> Dict:
    """The results JSON's entries of a system's chosen trial: ``val``, ``val_runs``, ``test``,
    ``compute``, ``query_swap``."""
    finals, points, seeds = chosen.finals, chosen.points, chosen.seeds
    trial = chosen.entry["trial"]
    metrics = sorted({m for f in finals.values() for m in f["val"]})
    val_runs = {m: [finals[s]["val"].get(m) for s in sorted(finals)] for m in metrics}
    val = {m: _mean(v) for m, v in val_runs.items()}
    val["trial"] = trial
    val["in_progress"] = chosen.entry["in_progress"]
    # whether each seed's curve met the stop rule (else it ended at its --max-budgets)
    val["converged"] = [curve_converged(points[s]) for s in sorted(finals)]
    tests = [read_json(os.path.join(seeds[s], f"eval_{A2D}.json")) for s in sorted(finals)]
    jhmdb = [read_json(os.path.join(seeds[s], f"eval_{JHMDB}.json")) for s in sorted(finals)]
    train_cpu = _mean([finals[s]["train_cpu_s"] for s in sorted(finals)])
    train_wall = _mean([c.get("train_wall_s") for c in chosen.computes])
    walls = fixed_parts(method, main_job_output, TRIALS.get(method, {}).get(trial), "wall", trial)
    return {
        "val": val,
        "val_runs": val_runs,
        "query_swap": None if val.get("query_swap") is None else val["query_swap"] / 100.0,
        "test": {
            "seeds": sorted(finals),
            "segm": {m: [t["segm"][m] for t in tests if t] for m in SUMMARY_METRICS},
            "jhmdb": {m: [t["segm"][m] for t in jhmdb if t] for m in ("P@0.5", "mean_IoU")},
        },
        "compute": {
            "total_cpu_s": sum(chosen.parts.values()) + train_cpu,
            "parts": dict(chosen.parts, training=train_cpu),
            "total_wall_s": None if train_wall is None else sum(walls.values()) + train_wall,
            "parts_wall_s": dict(walls, training=train_wall),
            "training_wall_s": train_wall,
            "iterations": [finals[s]["iterations"] for s in sorted(finals)],
            # the training's threads: the same work costs more CPU seconds with more threads
            "threads": chosen.entry["threads"],
        },
    }


def value_at(points: List[Dict], level: float, metric: str) -> Optional[float]:
    """A curve's val ``metric`` at ``level`` total CPU seconds, interpolated linearly between the
    two evaluations around it; a final curve (``curve_final``) that ended below ``level`` stands
    at its last point; None when the curve starts above ``level`` or has not reached it yet."""
    xs = [q["total_cpu_s"] for q in points]
    ys = [q["val"].get(metric) for q in points]
    if not points or level < xs[0] or None in ys:
        return None
    if level >= xs[-1]:
        return ys[-1] if (level == xs[-1] or curve_final(points)) else None
    i = next(i for i in range(1, len(xs)) if xs[i] >= level)
    f = (level - xs[i - 1]) / (xs[i] - xs[i - 1]) if xs[i] > xs[i - 1] else 1.0
    return ys[i - 1] + f * (ys[i] - ys[i - 1])


def _equal_compute(curves_of: Dict[str, Dict[int, List[Dict]]]) -> Dict:
    """Each system's val metrics at one level of total compute (detector, proposals, flow and
    training CPU seconds): the least at which every curve of every system has been evaluated
    (the largest first point over all systems and seeds), each curve interpolated at that many
    CPU seconds (``value_at``).  ``points``: per seed, the two evaluations the value lies
    between (one: the curve's last, or its point at the level; None: not reached)."""
    level = max(p[0]["total_cpu_s"] for curves in curves_of.values() for p in curves.values() if p)
    out = {}
    for method, curves in curves_of.items():
        values = {m: [value_at(p, level, m) for p in curves.values()] for m in SUMMARY_METRICS}
        bracket = []
        for p, v in zip(curves.values(), values["P@0.5"]):
            below = [q for q in p if q["total_cpu_s"] <= level][-1:]
            above = [q for q in p if q["total_cpu_s"] > level][:1]
            near = below if below and below[0]["total_cpu_s"] == level else below + above
            bracket.append(
                None
                if v is None
                else [
                    {"iterations": q["iterations"], "total_cpu_s": q["total_cpu_s"]} for q in near
                ]
            )
        out[method] = {
            "total_cpu_s": level,
            "interpolated": True,
            "points": bracket,
            "val": {m: _mean(v) for m, v in values.items()},
        }
    return out


def equal_compute_of(result: Dict) -> Dict:
    """``_equal_compute`` of a results JSON's chosen trials' curves (``learning_curve_runs``):
    what ``--reuse-accuracy`` reads again when the runs are elsewhere."""
    curves_of = {
        m: {int(s): p for s, p in runs.items()}
        for m, runs in (result.get("learning_curve_runs") or {}).items()
    }
    return _equal_compute(curves_of) if curves_of else {}


def collect_curves(runs: str, main_job_output: str) -> Dict:
    """The results JSON's keys of the curve runs under ``runs`` (``--curves``), a summary that
    reads files and starts nothing: ``trials`` (every trial's final val metrics and
    ``chosen_on``), ``val`` (each system's chosen trial, ``choose_trial``; means over its
    finished seeds, ``finished_points``), ``val_runs``, ``test`` (the chosen trial's finished
    seeds' test evaluations, made by ``evaluate_chosen_on_test``), ``compute`` (``total_cpu_s``,
    ``parts`` and wall seconds), ``learning_curves`` (the chosen trial's first seed),
    ``learning_curve_runs``, ``equal_compute`` (``_equal_compute``) and ``query_swap``
    (fraction)."""
    keys = ("trials", "val", "val_runs", "test", "compute", "learning_curves")
    out = {k: {} for k in keys + ("learning_curve_runs", "query_swap", "equal_compute")}
    out["protocol"] = {}
    curves_of = {}
    for method, ranked in read_trials(runs, main_job_output).items():
        out["trials"][method] = [r.entry for r in ranked]
        chosen = choose_trial(ranked)
        for key, value in _chosen_summary(method, chosen, main_job_output).items():
            out[key][method] = value
        out["val"][method]["third_seed"] = seeds_wanted(chosen, ranked)
        # where the trials were compared, against the chosen trial's converged length
        out["val"][method].update(ranking_depth(chosen))
        curves_of[method] = chosen.points
        out["learning_curves"][method] = chosen.points[min(chosen.points)]
        out["learning_curve_runs"][method] = {str(s): p for s, p in chosen.points.items()}
    if curves_of:
        out["equal_compute"] = _equal_compute(curves_of)
        out["protocol"] = {"stop_rule": list(STOP_RULE), "decay": list(DECAY),
                           "rank_budgets": RANK_BUDGETS}  # fmt: skip
    return out
