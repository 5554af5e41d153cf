"""Where AAMN's lead over the comparison systems comes from: AAMN on weaker proposals.

AAMN chooses among the K proposal tubes its detector gives and segments inside the chosen box;
the comparison systems predict the referred mask from dense maps.  How much of AAMN's lead its
proposals give is measured here by taking them away in steps: the proposal detector
(``configs/synthetic/detector.yaml``) is trained for fewer iterations (its decay step scaled
alike), which gives proposals of lower recall; AAMN as the comparison runs it (``METHODS["AAMN"]``,
its own backbone on the detector's proposal files) is trained on that detector's proposals of the
training split for one budget (its config's ``SOLVER.MAX_ITER``, the point of the comparison's
"equal compute" table) and evaluated on val with the same detector's val proposals.  Its val
P@0.5 against the proposals' top-6 recall of val's annotated instances is the curve; its last
point is the detector's full schedule (1,500 iterations, the main job's recipe).

Runs, under ``<runs>/margin/weak_proposals/detector_<N>/`` (``N`` the detector's iterations),
kept so that more seeds or levels extend them::

    model_final.pth                   the detector
    proposals/synthetic_a2d_{train,val}.pkl
    recall.json                       {"top-1": .., "top-3": .., "top-6": .., "top-20": ..} (val)
    aamn/seed<S>/eval_val.json        AAMN trained on these proposals, evaluated on val

    OMP_NUM_THREADS=1 python tools/benchmark.py --margin --margin-iterations 30 100 \\
        --seeds 1 --reuse-accuracy --no-speed
"""

import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from aamn.engine.learning_curve import read_json
from aamn.utils.io import write_json_atomic

from .comparison import _mean, trial_config
from .methods import config_file

VAL = "synthetic_a2d_val"
TRAIN = "synthetic_a2d_train"
# The detector's training lengths of the weak-proposal runs (1,500: its config's, the main job's).
WEAK_DETECTOR_ITERATIONS = (30, 60, 120, 250, 500, 1500)
FULL_DETECTOR = 1500
RECALL_KS = (1, 3, 6, 20)
# How a comparison system ranks AAMN's tubes (``rank_tubes``); the first is the results' main one,
# each other's results are under "<rule> rule".
RANKING_RULES = ("mean", "box IoU")
# An A2D-like top-6 recall: the paper's proposals localise the referred actor at P@0.5 69 with
# K = 6 on A2D (its Table I; the recall here counts every annotated actor, a near measure).
A2D_RECALL = 69.0
METRICS = ("P@0.5", "P@0.7", "mean_IoU", "overall_IoU")


def level_dir(runs: str, level) -> str:
    return os.path.join(runs, "margin", "weak_proposals", f"detector_{level}")


def detector_command(out: str, iterations: int, train=(TRAIN,)) -> List[str]:
    """The detector's config trained ``iterations`` iterations on the annotated frames of the
    referring data sets ``train`` (their ``<name>_frames`` sets), its schedule scaled (decay at
    80 %, warm-up at most a quarter)."""
    from ..model_zoo import get_config_file

    cmd = [sys.executable, "-m", "aamn.cli.train_net"]
    cmd += ["--config-file", get_config_file("synthetic/detector.yaml"), "OUTPUT_DIR", out]
    cmd += ["SOLVER.MAX_ITER", str(iterations), "SOLVER.STEPS", f"({int(0.8 * iterations)},)"]
    cmd += ["SOLVER.WARMUP_ITERS", str(min(50, iterations // 4)), "SEED", "1"]
    if tuple(train) != (TRAIN,):
        cmd += ["DATASETS.TRAIN", repr(tuple(f"{name}_frames" for name in train))]
    # its box AP on val frames at the end: the test split is not for these detectors
    cmd += ["DATASETS.TEST", f"('{VAL}_frames',)"]
    return cmd


def proposals_command(out: str, weights: str, datasets=(TRAIN, VAL)) -> List[str]:
    """The detector's proposals of ``datasets`` (the training and validation splits), for AAMN's
    clips, into ``out/proposals/<name>.pkl``."""
    from aamn.config import get_aamn_cfg

    from ..model_zoo import get_config_file

    half = get_aamn_cfg(config_file("AAMN")).INPUT.CLIP.HALF_LENGTH
    cmd = [sys.executable, "-m", "aamn.cli.prepare_proposals"]
    cmd += ["--config-file", get_config_file("synthetic/detector.yaml")]
    cmd += [a for d in datasets for a in ("--dataset", d)] + ["--clip-half-length", str(half)]
    cmd += ["--output-dir", os.path.join(out, "proposals"), "MODEL.WEIGHTS", weights]
    return cmd


def aamn_command(level_out: str, proposals: str, seed: int) -> List[str]:
    """AAMN (the comparison's config) trained on a level's proposals for one budget, evaluated
    on val with the level's val proposals."""
    out = os.path.join(level_out, "aamn", f"seed{seed}")
    cmd = [sys.executable, "-m", "aamn.cli.train_net", "--config-file", config_file("AAMN")]
    cmd += ["--results-json", os.path.join(out, "eval_val.json"), "OUTPUT_DIR", out]
    cmd += ["SEED", str(seed), "DATASETS.TEST", f"('{VAL}',)"]
    cmd += ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{os.path.join(proposals, TRAIN)}.pkl',)"]
    cmd += ["DATASETS.PROPOSAL_FILES_TEST", f"('{os.path.join(proposals, VAL)}.pkl',)"]
    return cmd


def proposal_recall_of(proposal_file: str, dataset: str = VAL) -> Dict[str, float]:
    """Top-k recall (percent) of a data set's annotated instances at IoU 0.5 by a proposal
    file's boxes (``prepare_proposals.proposal_recall``)."""
    from detectron2.data import DatasetCatalog

    from aamn.cli.prepare_proposals import proposal_recall
    from aamn.data.proposals import load_proposals

    boxes = {k: v[0] for k, v in load_proposals(proposal_file).items()}
    recall = proposal_recall(DatasetCatalog.get(dataset), boxes, ks=RECALL_KS)
    return {f"top-{k}": 100.0 * r for k, r in recall.items()}


def _run(cmd: List[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_weak_proposals(runs: str, levels, seeds, run=_run) -> List[str]:
    """Make what is missing of each level (``levels``: the detector's training lengths): the
    detector, its proposals and their recall, AAMN's runs of ``seeds``.  Returns the levels'
    folders.  ``run(cmd)``: runs one command."""
    folders = []
    for level in levels:
        out = level_dir(runs, int(level))
        os.makedirs(out, exist_ok=True)
        proposals = os.path.join(out, "proposals")
        weights = os.path.join(out, "model_final.pth")
        if not os.path.isfile(weights):
            run(detector_command(out, int(level)))
        if not all(os.path.isfile(os.path.join(proposals, f"{s}.pkl")) for s in (TRAIN, VAL)):
            run(proposals_command(out, weights))
        recall_file = os.path.join(out, "recall.json")
        if not os.path.isfile(recall_file):
            recall = proposal_recall_of(os.path.join(proposals, f"{VAL}.pkl"))
            write_json_atomic(recall_file, recall)  # a stopped run leaves no half file
        for seed in seeds:
            if not os.path.isfile(os.path.join(out, "aamn", f"seed{seed}", "eval_val.json")):
                run(aamn_command(out, proposals, seed))
        folders.append(out)
    return folders


def weak_curve_dir(runs: str, level, seed: int) -> str:
    """A level's AAMN curve run (``run_weak_proposal_curves``)."""
    return os.path.join(level_dir(runs, level), "aamn_curve", f"seed{seed}")


def run_weak_proposal_curves(runs: str, levels, seeds, max_budgets: int, train=None) -> None:
    """AAMN on each level's proposals trained as the comparison's curves are (the final
    protocol: evaluated on val every budget, the stop rule, then the decay; at most
    ``max_budgets`` budgets at the constant rate), so that the weak-proposal levels compare with
    the comparison systems at convergence, not only at one budget.  The level's detector and
    proposals are made first when missing (``run_weak_proposals``).  ``train``: the curve
    trainer (default ``comparison.train_curve``)."""
    from .comparison import train_curve

    train = train or train_curve
    for level in levels:
        out = run_weak_proposals(runs, [level], [])[0]
        proposals = os.path.join(out, "proposals")
        files = ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{os.path.join(proposals, TRAIN)}.pkl',)"]
        files += ["DATASETS.PROPOSAL_FILES_TEST", f"('{os.path.join(proposals, VAL)}.pkl',)"]
        for seed in seeds:
            train(runs, "AAMN", "base", seed, max_budgets,
                  out=weak_curve_dir(runs, int(level), seed), extra=files)  # fmt: skip


def weak_curve_summary(folder: str) -> Optional[Dict]:
    """``{"seeds", "iterations", "AAMN": {metric: mean}, "AAMN_runs": {metric: [per seed]}}`` of
    a level's finished curve runs (``comparison.curve_final``: after their decay, or at their
    largest budget), or None when none is finished."""
    from .comparison import curve_final, learning_curve, seed_runs

    finals = {}
    for seed, run in seed_runs(os.path.join(folder, "aamn_curve")).items():
        points = learning_curve(run, {})
        if points and curve_final(points):
            finals[seed] = points[-1]
    if not finals:
        return None
    seeds = sorted(finals)
    per_seed = {m: [finals[s]["val"].get(m) for s in seeds] for m in METRICS}
    return {
        "seeds": seeds,
        "iterations": [finals[s]["iterations"] for s in seeds],
        "AAMN": {m: _mean(v) for m, v in per_seed.items()},
        "AAMN_runs": per_seed,
    }


def collect_weak_proposals(runs: str) -> List[Dict]:
    """``[{"level", "recall", "recall_at", "AAMN": {metric: mean}, "AAMN_runs": {metric:
    [per seed]}, "seeds", "converged"}]`` of every level with a recall and at least one evaluated
    seed, sorted by recall (``recall``: val's top-6 recall, percent; ``recall_at``: every top-k;
    ``AAMN``: one budget; ``converged``: its finished curve runs, ``weak_curve_summary``, or
    None)."""
    base = os.path.join(runs, "margin", "weak_proposals")
    out = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        folder = os.path.join(base, name)
        recall = read_json(os.path.join(folder, "recall.json"))
        seeds_dir = os.path.join(folder, "aamn")
        evals = {}
        for seed in sorted(os.listdir(seeds_dir)) if os.path.isdir(seeds_dir) else ():
            ev = read_json(os.path.join(seeds_dir, seed, "eval_val.json"))
            if ev and "segm" in ev:
                evals[seed] = ev["segm"]
        if not recall or not evals:
            continue
        per_seed = {m: [evals[s].get(m) for s in sorted(evals)] for m in METRICS}
        out.append(
            {
                "level": int(name[len("detector_") :]),
                "recall": recall["top-6"],
                "recall_at": recall,
                "AAMN": {m: _mean(v) for m, v in per_seed.items()},
                "AAMN_runs": per_seed,
                "seeds": sorted(evals),
                "converged": weak_curve_summary(folder),
            }
        )
    return sorted(out, key=lambda e: e["recall"])


def margin_markdown(result) -> List[str]:
    """The weak-proposal table: each level's recall and AAMN's val accuracy, beside the
    comparison systems' val levels (their chosen trials: at equal compute and converged)."""
    from .report import fmt, pm, table

    weak = (result.get("margin") or {}).get("weak_proposals") or []
    if not weak:
        return []
    lines = [
        "",
        "AAMN on weaker proposals (`tools/benchmark.py --margin`; the proposal detector trained "
        "for fewer iterations, AAMN trained on its proposals for one budget and evaluated on val "
        "with them; recall: val's annotated instances covered at IoU 0.5 by the top 1 / 6 "
        "proposals):",
        "",
    ]
    rows = []
    for e in weak:
        runs, conv = e["AAMN_runs"], e.get("converged")
        rows.append(
            [
                f"{e['level']:,} iterations",
                fmt(e["recall_at"].get("top-1")),
                fmt(e["recall"]),
                pm(runs["P@0.5"]),
                pm(runs["mean_IoU"]),
                str(len(e["seeds"])),
                (f"{pm(conv['AAMN_runs']['P@0.5'])} ({', '.join(map(str, conv['iterations']))} "
                 "it)") if conv else "-",
            ]
        )  # fmt: skip
    header = ["detector", "top-1 recall", "top-6 recall", "AAMN val P@0.5, one budget",
              "mean IoU", "seeds", "converged and decayed (iterations)"]  # fmt: skip
    lines += table(header, rows)
    levels = []
    for method, v in (result.get("val") or {}).items():
        if method == "AAMN":
            continue
        eq = (result.get("equal_compute") or {}).get(method, {}).get("val", {})
        done = all_converged(v)
        levels.append(
            f"{method} ({v.get('trial')}) {fmt(eq.get('P@0.5'))} at equal compute, "
            f"{fmt(v.get('P@0.5'))} {'converged' if done else 'at its latest point, not converged'}"
        )
    if levels:
        lines += ["", "The comparison systems' val P@0.5: " + "; ".join(levels) + "."]
    return lines


def add_margin(result: Dict, runs: str) -> Dict:
    """The results JSON's ``margin`` entries read from the runs under ``runs`` (kept on disk,
    so that a rebuilt results file keeps them): ``weak_proposals``, ``lead_split`` (from those
    and the comparison's curves in ``result``), each ``proposal_conditioned*`` and the CMDy
    streams' diagnosis.  Returns ``result``."""
    entries = {"weak_proposals": collect_weak_proposals(runs)}
    margin = result.setdefault("margin", {})
    margin.update({k: v for k, v in entries.items() if v})
    entries = {"lead_split": lead_split(result), STREAM_DIAGNOSIS: collect_stream_diagnosis(runs)}
    for models in CONDITIONED_MODELS:
        entries[conditioned_key(models)] = collect_proposal_conditioned(runs, models)
    margin.update({k: v for k, v in entries.items() if v})
    if not margin:
        del result["margin"]
    return result


def interpolate_at(points: Sequence[Tuple[float, float]], x: float) -> Optional[float]:
    """``y`` at ``x`` on the broken line through ``points`` (``(x, y)``, any order), linear
    between the two points around ``x``; None outside their range or with fewer than one point
    on each side."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def first_budget_level(result, method: str) -> Optional[float]:
    """A system's chosen trial's val P@0.5 at its first budget: the mean over its seeds' first
    evaluations (``learning_curve_runs``), or None."""
    runs = (result.get("learning_curve_runs") or {}).get(method) or {}
    firsts = [p[0]["val"].get("P@0.5") for p in runs.values() if p]
    return _mean([v for v in firsts if v is not None])


def _weak_level(entry: Dict, setting: str) -> Optional[float]:
    """AAMN's val P@0.5 on one weak-proposal level: at one budget (``"one_budget"``) or at its
    converged curve's final point (``"final"``; None without one)."""
    if setting == "one_budget":
        return entry["AAMN"].get("P@0.5")
    return ((entry.get("converged") or {}).get("AAMN") or {}).get("P@0.5")


def lead_split(result, recall: float = A2D_RECALL) -> Dict:
    """How much of AAMN's lead over each comparison system its proposals give (the results
    JSON's ``margin.lead_split``), at one budget and at the end of the curves:

    - ``AAMN_full`` / ``AAMN_at_recall``: AAMN on the weak-proposal levels (one config) with the
      full detector (its highest recall) and at ``recall`` (interpolated linearly between the
      two levels around it); ``from_proposals`` the difference;
    - for each system, ``lead``: the comparison's AAMN (its chosen trial) minus the system, both
      at their first budget (means over seeds) or at their final points (``val``);
      ``lead_at_recall``: ``lead - from_proposals``, the lead AAMN would keep with proposals of
      that recall; at the final points, ``converged``: whether every seed of the system's
      curve met the stop rule.

    A setting without the levels it needs (AAMN at the full detector's level, the highest
    recall, and at the levels around ``recall``: at the final points, their converged curves)
    is left out."""
    weak = (result.get("margin") or {}).get("weak_proposals") or []
    if not weak:
        return {}
    val = result.get("val") or {}
    top = max(weak, key=lambda e: e["recall"])  # the full detector
    out: Dict = {"recall": recall}
    for setting in ("one_budget", "final"):
        if setting == "one_budget":
            level_of = {m: first_budget_level(result, m) for m in val}
        else:
            level_of = {m: v.get("P@0.5") for m, v in val.items()}
        levels = [(e["recall"], _weak_level(e, setting)) for e in weak]
        levels = [(x, y) for x, y in levels if y is not None]
        full, at = _weak_level(top, setting), interpolate_at(levels, recall)
        if full is None or at is None or level_of.get("AAMN") is None:
            continue
        systems = {}
        for m, v in level_of.items():
            if m != "AAMN" and v is not None:
                lead = level_of["AAMN"] - v
                systems[m] = {"P@0.5": v, "lead": lead, "lead_at_recall": lead - (full - at)}
                if setting == "final":
                    systems[m]["converged"] = all_converged(val[m])
        out[setting] = {"AAMN": level_of["AAMN"], "AAMN_full": full, "AAMN_at_recall": at,
                        "from_proposals": full - at, "systems": systems}  # fmt: skip
    return out if len(out) > 1 else {}


def lead_split_markdown(result) -> List[str]:
    """The sentences of the lead split (``lead_split``), one per setting."""
    from .report import fmt

    split = (result.get("margin") or {}).get("lead_split") or {}
    names = {"one_budget": "at one budget (first evaluations, means over seeds)",
             "final": "at the curves' final points"}  # fmt: skip
    lines = []
    for setting, name in names.items():
        s = split.get(setting)
        if not s:
            continue
        parts = [
            f"over {m} {fmt(v['lead'])} points, {fmt(v['lead_at_recall'])} of them left at that "
            "recall" + ("" if v.get("converged", True) else f" ({m} at its latest point, not "
                        "converged)")
            for m, v in s["systems"].items()
        ]  # fmt: skip
        lines += [
            "",
            f"AAMN's lead {name}: AAMN on the weak-proposal levels scores {fmt(s['AAMN_full'])} "
            f"with the full detector and {fmt(s['AAMN_at_recall'])} at an A2D-like top-6 recall "
            f"of {split['recall']:g} % (interpolated between the levels around it), so its "
            f"proposals give {fmt(s['from_proposals'])} points; its lead ({fmt(s['AAMN'])} val "
            "P@0.5): " + "; ".join(parts) + ".",
        ]
    return lines


def all_converged(val_entry: Dict) -> bool:
    """Whether every seed's curve of a results JSON's ``val.<system>`` entry converged."""
    return bool(val_entry.get("converged")) and all(val_entry["converged"])


def conditioned_markdown(result, models: str = "first_budget") -> List[str]:
    """The proposal-conditioned table of ``models`` (``CONDITIONED_MODELS``): each comparison
    system choosing among AAMN's tubes."""
    from .report import fmt, table

    pc = (result.get("margin") or {}).get(conditioned_key(models))
    if not pc:
        return []
    if models == "final":
        which = (
            "the final models of the trials chosen on val, seed 1 (after the stop rule and the "
            f"decay; AAMN `{pc.get('AAMN trial')}` on the main job's val proposals)"
        )
    else:
        which = ("the one-budget models: AAMN on the full detector's proposals, each system's "
                 "trial chosen on val at its first budget, seed 1")  # fmt: skip
    lines = [
        "",
        f"Each comparison system choosing among AAMN's K tubes (`tools/benchmark.py "
        f"--proposal-conditioned {models}`; {which}; the tube with the highest mean probability "
        "of the system's mask inside its key-frame box, and where a row says so the box with the "
        "highest soft IoU with the system's probability map, `sum_B p / (|B| + sum p - sum_B p)`"
        f"; {pc.get('records')} val records, P@0.5 / mean IoU):",
        "",
    ]
    a = pc["AAMN"]
    rows = [["AAMN (its own choice)", "-", f"{fmt(a['P@0.5'])} / {fmt(a['mean_IoU'])}", "-", "-"]]
    for name, v in pc.items():
        if name == "AAMN" or not isinstance(v, dict):
            continue
        own = f"{fmt(v['own mask']['P@0.5'])} / {fmt(v['own mask']['mean_IoU'])}"
        for rule in RANKING_RULES:
            e = v if rule == RANKING_RULES[0] else v.get(f"{rule} rule")
            if e is None:  # a run before that rule
                continue
            cells = [f"{fmt(e[k]['P@0.5'])} / {fmt(e[k]['mean_IoU'])}"
                     for k in ("AAMN mask", "own mask in the box")]  # fmt: skip
            label = name if rule == RANKING_RULES[0] else f"{name}, {rule} rule"
            rows.append([label, own, *cells, fmt(e["same tube as AAMN"])])
    header = ["system", "its own mask", "its choice, AAMN's mask", "its choice, its own mask in "
              "the box", "same tube as AAMN (%)"]  # fmt: skip
    return lines + table(header, rows)


def plot_margin(result, out_dir: str) -> Optional[str]:
    """``synthetic_margin.png``: AAMN's val P@0.5 against its proposals' top-6 recall (each
    seed, and the mean), the comparison systems' val levels as lines."""
    weak = (result.get("margin") or {}).get("weak_proposals") or []
    if not weak:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    xs = [e["recall"] for e in weak]
    ax.plot(xs, [e["AAMN"]["P@0.5"] for e in weak], "o-", color="C0", label="AAMN, one budget")
    for e in weak:
        ys = [v for v in e["AAMN_runs"]["P@0.5"] if v is not None]
        ax.scatter([e["recall"]] * len(ys), ys, color="C0", s=10, alpha=0.5)
    conv = [(e["recall"], e["converged"]["AAMN"]["P@0.5"]) for e in weak if e.get("converged")]
    if conv:
        ax.plot(*zip(*conv), "s--", color="C0", label="AAMN, converged and decayed")
    styles = {"equal compute": ":", "converged": "--"}
    for i, (method, v) in enumerate(
        (m, v) for m, v in (result.get("val") or {}).items() if m != "AAMN"
    ):
        eq = (result.get("equal_compute") or {}).get(method, {}).get("val", {}).get("P@0.5")
        done = all_converged(v)
        for label, y in (("equal compute", eq), ("converged", v.get("P@0.5"))):
            if y is not None:
                name = label if label != "converged" or done else "latest, not converged"
                ax.axhline(y, color=f"C{i + 1}", ls=styles[label], label=f"{method}, {name}")
    ax.axvline(A2D_RECALL, color="0.5", ls="-.", lw=0.8,
               label=f"A2D-like recall ({A2D_RECALL:g} %, the lead split)")  # fmt: skip
    ax.set_xlabel("proposals' top-6 recall on val (%)")
    ax.set_ylabel("val P@0.5")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, "synthetic_margin.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def rank_tubes(mask_probs, key_boxes, rule: str = "mean") -> List[float]:
    """A comparison system's ranking of AAMN's tubes from its mask probability ``(H, W)`` and
    each tube's key-frame box (``(K, 4)`` XYXY at the same size); a box without a pixel scores 0.

    Rules (``RANKING_RULES``): ``"mean"``, the mean probability inside the box (a box inside the
    predicted mask scores 1 however small); ``"box IoU"``, the soft IoU of the probability map
    with the box, ``sum_B p / (|B| + sum p - sum_B p)`` (the box that best covers the predicted
    mass and little else)."""
    import numpy as np

    if rule not in RANKING_RULES:
        raise ValueError(f"unknown ranking rule {rule!r}: expected one of {RANKING_RULES}")
    probs = np.asarray(mask_probs, np.float32)
    total = float(probs.sum())
    out = []
    for box in np.asarray(key_boxes, np.float64):
        part = probs[_box_slices(box, probs.shape)]
        if not part.size:
            out.append(0.0)
        elif rule == "mean":
            out.append(float(part.mean()))
        else:
            inside = float(part.sum())
            out.append(inside / (part.size + total - inside))
    return out


def _box_slices(box, shape):
    """The rows and columns an XYXY box covers (outward to whole pixels), clipped to ``shape``."""
    import numpy as np

    H, W = shape[:2]
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    xa, ya = int(np.clip(np.floor(x0), 0, W)), int(np.clip(np.floor(y0), 0, H))
    xb, yb = int(np.clip(np.ceil(x1), 0, W)), int(np.clip(np.ceil(y1), 0, H))
    return slice(ya, yb), slice(xa, xb)


def mask_inside_box(mask, box):
    """A bool ``(H, W)`` mask kept inside an XYXY box only."""
    import numpy as np

    mask = np.asarray(mask, bool)
    inside = _box_slices(box, mask.shape)
    out = np.zeros_like(mask)
    out[inside] = mask[inside]
    return out


def proposal_conditioned(aamn, systems, dataset: str = VAL, limit: int = 0) -> Dict:
    """Each comparison system chooses among AAMN's K tubes with its own output at the key frame
    (``rank_tubes``, each of ``RANKING_RULES``), inference only; the chosen tube is segmented by
    AAMN's mask head (``tube_choice``) and, apart, by the system's own mask kept inside the
    tube's box.

    Args:
        aamn: ``(config file, opts)`` of a trained AAMN (``MODEL.WEIGHTS`` among the opts).
        systems: ``{name: (config file, opts)}`` of trained comparison systems.
        limit: score the first ``limit`` records only (0: all).

    Returns:
        ``{"AAMN": {metric: value}, name: {"AAMN mask": {...}, "own mask in the box": {...},
        "own mask": {...}, "same tube as AAMN": percent, "<rule> rule": {"AAMN mask",
        "own mask in the box", "same tube as AAMN"}}}`` on ``dataset`` (single-frame metrics,
        ``compute_rvos_metrics``; the top level: the first rule's, then one entry per other
        rule).
    """
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog
    from pycocotools import mask as mask_util

    from aamn.config import get_aamn_cfg
    from aamn.engine import Trainer
    from aamn.evaluation.metrics import compute_rvos_metrics
    from aamn.modeling.checkpoint import build_trained_model

    def model_and_loader(config, opts):
        cfg = get_aamn_cfg(config, ["DATASETS.TEST", f"('{dataset}',)", *opts])
        model, _, _ = build_trained_model(cfg)
        return model, Trainer.build_test_loader(cfg, dataset)

    records = DatasetCatalog.get(dataset)
    if limit:
        records = records[:limit]
    aamn_model, aamn_loader = model_and_loader(*aamn)
    others = {name: model_and_loader(*spec) for name, spec in systems.items()}
    gts, free = [], []
    chosen_kinds = ("AAMN mask", "own mask in the box")
    preds = {(name, rule): {kind: [] for kind in chosen_kinds} for name in others
             for rule in RANKING_RULES}  # fmt: skip
    own_masks = {name: [] for name in others}
    same = {key: 0 for key in preds}
    iterators = {name: iter(loader) for name, (_, loader) in others.items()}
    with torch.no_grad():
        for record, inputs in zip(records, aamn_loader):
            if record.get("image_id") != inputs[0].get("image_id"):
                raise RuntimeError(f"the loader of {dataset} is not in its records' order")
            ref = next(
                a for a in record["annotations"] if a["instance_id"] == record["instance_id"]
            )
            gt = mask_util.decode(ref["segmentation"]).astype(bool)
            gts.append(gt)
            out = aamn_model(inputs)[0]
            free.append(out["instances"].pred_masks[0].cpu().numpy())
            key = out["all_tube_boxes"].shape[1] // 2
            key_boxes = out["all_tube_boxes"][:, key].cpu().numpy()
            masks_of = {out["tube_index"]: out["instances"].pred_masks[0].cpu().numpy()}
            for name, (model, _) in others.items():
                theirs_inputs = next(iterators[name])
                if theirs_inputs[0].get("image_id") != inputs[0].get("image_id"):
                    raise RuntimeError(f"the loaders of AAMN and {name} disagree on the order")
                theirs = model(theirs_inputs)[0]
                own = theirs["instances"].pred_masks[0].cpu().numpy()
                own_masks[name].append(own)
                probs = theirs["mask_probs"].cpu().numpy()
                for rule in RANKING_RULES:
                    k = int(np.argmax(rank_tubes(probs, key_boxes, rule)))
                    same[name, rule] += k == out["tube_index"]
                    if k not in masks_of:  # AAMN's own tube: its output as it is
                        chosen = aamn_model([{**inputs[0], "tube_choice": k}])[0]
                        masks_of[k] = chosen["instances"].pred_masks[0].cpu().numpy()
                    preds[name, rule]["AAMN mask"].append(masks_of[k])
                    preds[name, rule]["own mask in the box"].append(
                        mask_inside_box(own, key_boxes[k]))  # fmt: skip
    result = {"AAMN": compute_rvos_metrics(free, gts), "records": len(gts)}
    for (name, rule), kinds in preds.items():
        entry = {kind: compute_rvos_metrics(masks, gts) for kind, masks in kinds.items()}
        entry["same tube as AAMN"] = 100.0 * same[name, rule] / max(len(gts), 1)
        if rule == RANKING_RULES[0]:
            result[name] = {**entry, "own mask": compute_rvos_metrics(own_masks[name], gts)}
        else:
            result[name][f"{rule} rule"] = entry
    return result


def first_budget_checkpoint(runs: str, method: str, trial: str, seed: int = 1) -> str:
    """The checkpoint a curve run wrote at its first budget (``model_<budget - 1>.pth``: the
    curves checkpoint at every evaluation): the comparison's "equal compute" model."""
    from .comparison import budget_of, curve_dir

    path = os.path.join(
        curve_dir(runs, method, trial, seed), f"model_{budget_of(method, trial) - 1:07d}.pth"
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no first-budget checkpoint {path}: train it with `python tools/benchmark.py "
            f"--curves --methods {method} --trials {trial} --seeds {seed} --max-budgets 1`"
        )
    return path


# The models ``run_proposal_conditioned`` compares: each system at its first budget (the
# comparison's "equal compute" models, AAMN on the weak-proposal runs' full detector), or the final
# model of each system's chosen trial (seed 1: after its stop rule and decay, the models the
# headline table scores).
CONDITIONED_MODELS = ("first_budget", "final")


def conditioned_key(models: str) -> str:
    """The results JSON's ``margin`` key (and the file name) of a proposal-conditioned run:
    ``proposal_conditioned`` for the one-budget models, ``proposal_conditioned_<models>``."""
    return "proposal_conditioned" + ("" if models == CONDITIONED_MODELS[0] else f"_{models}")


def proposal_conditioned_file(runs: str, models: str = "first_budget") -> str:
    """Where ``run_proposal_conditioned`` keeps its result for ``models``
    (``collect_proposal_conditioned``)."""
    return os.path.join(runs, "margin", f"{conditioned_key(models)}.json")


def collect_proposal_conditioned(runs: str, models: str = "first_budget") -> Optional[Dict]:
    """The last ``run_proposal_conditioned`` result for ``models`` under ``runs`` (its systems
    named with their trials), or None: kept on disk so that a results JSON rebuilt without
    ``--proposal-conditioned`` does not lose it."""
    return read_json(proposal_conditioned_file(runs, models))


def final_checkpoint(runs: str, method: str, trial: str, seed: int = 1) -> str:
    """The final model of a final curve run (``curve_final``: after its stop rule and decay, or
    at its last budget): the model the comparison's tables score."""
    from .comparison import curve_dir, curve_final, learning_curve

    out = curve_dir(runs, method, trial, seed)
    path = os.path.join(out, "model_final.pth")
    if not os.path.isfile(path) or not curve_final(learning_curve(out, {})):
        raise FileNotFoundError(
            f"no final model {path}: train its curve to the stop rule with `python "
            f"tools/benchmark.py --curves --methods {method} --trials {trial} --seeds {seed}`"
        )
    return path


def run_proposal_conditioned(
    runs: str, chosen_trials: Dict[str, str], limit: int = 0, models: str = "first_budget"
) -> Dict:
    """``proposal_conditioned`` with the comparison's models, written to
    ``proposal_conditioned_file`` and returned.

    ``models="first_budget"``: AAMN trained on the full detector's proposals (the weak-proposal
    runs' ``FULL_DETECTOR`` level, seed 1, with that level's val proposals) and each comparison
    system's chosen trial at its first budget (seed 1 of its curve).  ``models="final"``: the
    final model of every system's chosen trial, seed 1 (``final_checkpoint``; AAMN with the val
    proposals its curve was evaluated with, the main job's)."""
    from .comparison import trial_options

    if models not in CONDITIONED_MODELS:
        raise ValueError(f"models {models!r}: expected one of {CONDITIONED_MODELS}")
    final = models == "final"
    checkpoint = final_checkpoint if final else first_budget_checkpoint
    if final:
        aamn_trial = chosen_trials["AAMN"]
        aamn = (trial_config("AAMN", aamn_trial), [*trial_options("AAMN", aamn_trial),
                "MODEL.WEIGHTS", checkpoint(runs, "AAMN", aamn_trial)])  # fmt: skip
    else:
        level = level_dir(runs, FULL_DETECTOR)
        weights = os.path.join(level, "aamn", "seed1", "model_final.pth")
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"no AAMN model {weights}: run `python tools/benchmark.py --margin "
                f"--margin-iterations {FULL_DETECTOR} --seeds 1` first"
            )
        val = os.path.join(level, "proposals", f"{VAL}.pkl")
        aamn = (config_file("AAMN"), ["MODEL.WEIGHTS", weights,
                                      "DATASETS.PROPOSAL_FILES_TEST", f"('{val}',)"])  # fmt: skip
    systems = {}
    for method, trial in chosen_trials.items():
        if method == "AAMN":
            continue
        opts = [*trial_options(method, trial), "MODEL.WEIGHTS", checkpoint(runs, method, trial)]
        systems[f"{method} ({trial})"] = (trial_config(method, trial), opts)
    result = proposal_conditioned(aamn, systems, limit=limit)
    if final:
        result["AAMN trial"] = aamn_trial
    write_json_atomic(proposal_conditioned_file(runs, models), result)
    return result


# CMDy's two streams on single-actor frames (BENCHMARKS.md): each stream and fusion of one model
# evaluated alone, under <runs>/margin/cmdy_streams/<model>/<dataset>/<variant>/ (eval.json and
# the evaluator's inference/<dataset>/rvos_per_sample.json).
STREAM_DIAGNOSIS = "cmdy_streams"


def mask_box_ratios(per_sample: List[Dict]) -> List[float]:
    """Each sample's predicted box area over its ground-truth box area (``rvos_per_sample.json``
    rows with ``box`` and ``gt_box``, XYXY): how much of the referred actor a mask covers."""

    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    return [area(r["box"]) / max(1.0, area(r["gt_box"])) for r in per_sample if r.get("gt_box")]


def flow_in_boxes(dataset: str, flow_dir: str = "flow") -> Dict[str, float]:
    """The optical flow's mean magnitude (pixels per frame) inside the annotated actors' boxes
    and outside them, over the annotated frames of a registered data set (each frame's mean, then
    the mean over frames): ``{"inside", "outside", "frames"}``.  The flow cache is the data set's
    ``<root>/<flow_dir>`` (``prepare_flow.py``)."""
    import numpy as np
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from aamn.data.flow import _read_meta, read_flow

    root = os.path.join(MetadataCatalog.get(dataset).root, flow_dir)
    frames: Dict = {}
    for r in DatasetCatalog.get(dataset):
        boxes = frames.setdefault((r["video_id"], int(r["frame_idx"])), [])
        boxes += [a["bbox"] for a in r.get("annotations", [])]
    inside, outside = [], []
    for (video, frame), boxes in sorted(frames.items()):
        folder = os.path.join(root, video)
        meta = _read_meta(folder)
        if meta is None:
            raise FileNotFoundError(f"no flow of {video} in {root}: run datasets/prepare_flow.py")
        magnitude = read_flow(folder, [frame], meta["bound"])[0, :, :, 2]  # (H, W)
        mask = np.zeros(magnitude.shape, bool)
        for x0, y0, x1, y1 in boxes:
            mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        if mask.any() and not mask.all():
            inside.append(float(magnitude[mask].mean()))
            outside.append(float(magnitude[~mask].mean()))
    return {"inside": _mean(inside), "outside": _mean(outside), "frames": len(inside)}


def collect_stream_diagnosis(runs: str) -> Dict:
    """``{"models": {model: {dataset: {variant: {"P@0.5", "mean_IoU", "box_ratio_median",
    "below_half_box"}}}}, "flow_in_boxes": {dataset: flow_in_boxes(dataset)}}`` of every
    evaluated variant under ``<runs>/margin/cmdy_streams`` (``box_ratio_median``: the median of
    ``mask_box_ratios``; ``below_half_box``: the percentage of samples whose mask's box covers
    less than half the ground truth's; both kept in the variant's ``mask_sizes.json`` with the
    evaluation they are of, computed again when it changes); the flow statistics of each
    registered data set among them, computed once and kept in
    ``<runs>/margin/cmdy_streams/flow_in_boxes.json`` (the reports read them again from it, not
    from the flow cache)."""
    import glob

    import numpy as np
    from detectron2.data import DatasetCatalog

    base = os.path.join(runs, "margin", STREAM_DIAGNOSIS)
    out: Dict = {}
    for path in sorted(glob.glob(os.path.join(base, "*", "*", "*", "eval.json"))):
        folder = os.path.dirname(path)
        model, dataset, variant = folder.split(os.sep)[-3:]
        segm = (read_json(path) or {}).get("segm")
        if not segm:
            continue
        entry = {"P@0.5": segm["P@0.5"], "mean_IoU": segm["mean_IoU"]}
        # the mask sizes, from the evaluator's per-sample rows once, then from their summary
        # beside eval.json (the runs' records keep it, not the per-sample file)
        sizes_file = os.path.join(folder, "mask_sizes.json")
        sizes = read_json(sizes_file)
        if not sizes or sizes.get("segm") != segm:  # none yet, or of an earlier evaluation
            rows = read_json(os.path.join(folder, "inference", dataset, "rvos_per_sample.json"))
            ratios = mask_box_ratios(rows or [])
            sizes = {"segm": segm}
            if ratios:
                sizes["box_ratio_median"] = float(np.median(ratios))
                sizes["below_half_box"] = 100.0 * sum(r < 0.5 for r in ratios) / len(ratios)
            write_json_atomic(sizes_file, sizes)
        entry.update({k: v for k, v in sizes.items() if k != "segm"})
        out.setdefault(model, {}).setdefault(dataset, {})[variant] = entry
    if not out:
        return {}
    registered = set(DatasetCatalog.list())
    names = sorted({d for datasets in out.values() for d in datasets if d in registered})
    kept_file = os.path.join(base, "flow_in_boxes.json")
    kept = read_json(kept_file) or {}
    if any(d not in kept for d in names):
        kept.update({d: flow_in_boxes(d) for d in names if d not in kept})
        write_json_atomic(kept_file, kept)
    return {"models": out, "flow_in_boxes": {d: kept[d] for d in names}}
