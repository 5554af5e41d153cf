"""The benchmark's report: the tables of BENCHMARKS.md's "Side by side" section (between its
markers), and the plots."""

import json
import math
import os
import statistics
import time

from .accuracy import spread
from .data_scale import (
    chosen_seed_curves,
    collect_data_scale,
    data_scale_markdown,
    run_data_scale,
)
from .margin import (
    WEAK_DETECTOR_ITERATIONS,
    CONDITIONED_MODELS,
    add_margin,
    conditioned_markdown,
    lead_split_markdown,
    margin_markdown,
    plot_margin,
    run_proposal_conditioned,
    run_weak_proposal_curves,
    run_weak_proposals,
)
from .methods import METHODS, PAPER_METRICS, PAPER_MS_PER_CLIP, PAPERS, QUERY_TYPES

MARK_BEGIN = "<!-- tools/benchmark.py: begin -->"
MARK_END = "<!-- tools/benchmark.py: end -->"


def fmt(v, digits=1):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def mean_pm(per_run, section, method, metric):
    s = spread(per_run.get(section, {}).get(method, {}).get(metric, []))
    return "-" if s is None else f"{s['mean']:.1f} ± {s['std']:.1f}"


def table(header, rows):
    """Markdown table lines."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def by_number(values):
    """``{"2": x, "10": y}`` (JSON keys are text) as ``[(2, x), (10, y)]``, numerically sorted."""
    return sorted((int(k), v) for k, v in values.items())


def scaling_table(name, unit, values):
    pairs = by_number(values)
    return table([name, *[str(k) for k, _ in pairs]], [[unit, *[fmt(v) for _, v in pairs]]])


def _accuracy_date(result) -> str:
    """`` (`<command>` on <date>)`` of the run that wrote the accuracy, or ``""``."""
    acc = result.get("accuracy_setting") or {}
    return f" (`{acc['command']}` on {acc['date']})" if acc.get("command") else ""


def markdown(result, per_run, seeds_found, args):
    command = f"python tools/benchmark.py {' '.join(args.argv)}".strip()
    runs = "; ".join(f"{m}: {', '.join(s)}" for m, s in seeds_found.items())
    lines = [MARK_BEGIN, ""]
    written = (
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores, "
        f"{args.threads} threads, device {args.device})."
    )
    if getattr(args, "reuse_accuracy", False):  # the accuracy is the results file's
        written += (
            " The accuracy, curves and trials are the results file's, kept from the run that "
            f"trained and evaluated them{_accuracy_date(result)}."
        )
    lines.append(written)
    if result.get("val"):
        lines += curves_markdown(result)
    if any(seeds_found.values()):  # trainings of the configs as they are (--train)
        lines += [
            "",
            "Each system's config as it is (its own `SOLVER.MAX_ITER` and schedule with a step, "
            "not equal compute: AAMN's runs leave out its detector and proposals, see the compute "
            "table above), on the test split: mean ± sample standard deviation over its runs "
            f"({runs}).",
        ]
        header = [
            "method",
            "P@0.5",
            "P@0.7",
            "P@0.9",
            "mAP",
            "overall IoU",
            "mean IoU",
            "loc P@0.5",
        ]
        header += ["full-video P@0.5", "full-video mean IoU", "J-HMDB P@0.5", "J-HMDB mean IoU"]
        rows = []
        for m in METHODS:
            keys = ("P@0.5", "P@0.7", "P@0.9", "mAP", "overall_IoU", "mean_IoU")
            cells = [mean_pm(per_run, "single_frame", m, k) for k in keys]
            cells += [mean_pm(per_run, "loc", m, "P@0.5")]
            cells += [mean_pm(per_run, "full_video", m, k) for k in ("P@0.5", "mean_IoU")]
            cells += [mean_pm(per_run, "jhmdb", m, k) for k in ("P@0.5", "mean_IoU")]
            rows.append([m, *cells])
        lines += [""] + table(header, rows)
        lines += ["", "By query type (P@0.5 / mean IoU, means over the runs):", ""]
        rows = []
        for m in METHODS:
            q = result["by_query_type"].get(m, {})
            rows.append(
                [m, *[f"{fmt(q.get(t, {}).get('P@0.5'))} / {fmt(q.get(t, {}).get('mean_IoU'))}"
                      for t in QUERY_TYPES]]
            )  # fmt: skip
        lines += table(["method", *QUERY_TYPES], rows)
    speed = result.get("speed")
    if speed:
        setting = result.get("speed_setting", {})
        lines += [
            "",
            f"Speed, in one run (`{setting.get('command', command)}`, {setting.get('date', '')}, "
            f"{setting.get('threads', args.threads)} threads). The model columns time the model "
            "alone on random clips, each system's config and, in rows of their own, the trial "
            "chosen on val where it is another (its model as trained, without its "
            "initialisation); the whole-video columns time everything a system runs on a "
            f"real video (`{setting.get('video', '')}`): decoding, the optical flow of a system "
            "reading flow, AAMN's proposal detector, the model and the results (AAMN's frames "
            "per second over the method's in brackets):",
        ]
        header = ["method", "model ms / clip-query", "model ms / frame"]
        header += ["whole video: ms / frame, all it runs", "whole-video frames / s"]
        header += ["training s / iteration", "peak memory MB"]
        a_fps, rows = speed["AAMN"].get("full_video_fps"), []
        for m, sp in speed.items():
            fps = sp.get("full_video_fps")
            cell = fmt(fps)
            if fps and a_fps and m != "AAMN":
                cell += f" (AAMN {a_fps / fps:.2f}x)"
            rows.append(
                [m, fmt(sp["ms_per_clip"]), fmt(sp["ms_per_frame"]),
                 fmt(1000.0 / fps if fps else None), cell,
                 fmt(sp["train_iter_s"], 3), fmt(sp["peak_mem_mb"], 0)]
            )  # fmt: skip
        lines += [""] + table(header, rows)
    lines += whole_video_markdown(result)
    lines += margin_markdown(result)
    lines += lead_split_markdown(result)
    for models in CONDITIONED_MODELS:
        lines += conditioned_markdown(result, models)
    lines += data_scale_markdown(result)
    prof = result.get("profile", {})
    if prof:
        pm = prof["model"]
        text = (
            f"AAMN's model time per clip-query {pm['total_ms']:.1f} ms, of which the two backbones "
            f"{pm['backbones_ms']:.1f} ms: {100 * pm['outside_share']:.0f} % outside the "
            "backbones (random clips)."
        )
        wv = prof.get("whole_video")
        if wv:
            text += (
                f" Whole video: {wv['total_ms_per_frame']:.1f} ms per frame, of which the "
                f"backbones (its two streams {wv['model_backbones']:.1f}, the detector's "
                f"{wv['proposal_backbone']:.1f}) {wv['backbones_ms_per_frame']:.1f}: "
                f"{100 * wv['outside_share']:.0f} % outside them (model heads "
                f"{wv['model'] - wv['model_backbones']:.1f}, detector heads "
                f"{wv['proposals'] - wv['proposal_backbone']:.1f}, flow {wv['flow']:.1f}, the "
                "rest decoding and bookkeeping)."
            )
        lines += ["", text]
    sc = result.get("scaling")
    if sc:
        lines += ["", "How AAMN's cost grows (ms per clip-query; with several queries on one clip, "
                  "ms per query; against video length, whole-video ms per frame):", ""]  # fmt: skip
        lines += scaling_table("L", "ms", sc["L"]) + [""] + scaling_table("K", "ms", sc["K"])
        lines += [""] + scaling_table("queries per clip", "ms per query", sc["queries"])
        if sc.get("video_length"):
            lines += [""] + scaling_table("video frames", "ms per frame", sc["video_length"])
    lines += ["", "The papers' numbers, as reported (A2D Sentences test / J-HMDB Sentences; not "
              "reproduced here):", ""]  # fmt: skip
    header = ["method", *PAPER_METRICS, "J-HMDB P@0.5", "J-HMDB mAP", "J-HMDB overall IoU"]
    header += ["J-HMDB mean IoU", "ms / clip-query"]
    rows = []
    for name, paper in PAPERS.items():
        j = paper.get("jhmdb") or [None] * 8
        cells = [fmt(v) for v in paper["a2d"]] + [fmt(j[0]), fmt(j[5]), fmt(j[6]), fmt(j[7])]
        rows.append([name, *cells, fmt(PAPER_MS_PER_CLIP.get(name))])
    lines += table(header, rows) + ["", MARK_END]
    return "\n".join(lines)


def pm(values, digits=1):
    """``mean ± std (n)`` of a list of numbers; ``-`` when empty."""
    sp = spread(values or [])
    if sp is None:
        return "-"
    return (
        f"{sp['mean']:.{digits}f} ± {sp['std']:.{digits}f}"
        if sp["n"] > 1
        else fmt(sp["mean"], digits)
    )


def seeds_cell(seeds, in_progress=None, count=False) -> str:
    """The seeds of a trial's finished curves (their number if ``count``), and those of the curves
    still being extended with their iterations so far: ``1, 2 (in progress: seed 3 at 400 it)``."""
    text = str(len(seeds)) if count else ", ".join(map(str, seeds))
    if in_progress:
        more = ", ".join(f"{s} at {i} it" for s, i in sorted(in_progress.items()))
        text += f" (in progress: seed {more})"
    return text


def protocol_text(protocol) -> str:
    """The sentences of BENCHMARKS.md that state the curves' protocol (the results JSON's
    ``protocol``; absent: the comparison's first protocol, 0.5 P@0.5 and no decay)."""
    if not protocol:
        return (
            "Each system is trained with a constant learning rate after warm-up and evaluated on "
            "val every budget (its config's `SOLVER.MAX_ITER`) until two evaluations in a row add "
            "less than 0.5 P@0.5 or 10 budgets are reached, without a learning-rate decay; trials "
            "are compared at the largest iteration count all of them reached (the first protocol, "
            "`python tools/benchmark.py --curves` before the final one)."
        )
    (gain, patience), (factor, periods) = protocol["stop_rule"], protocol["decay"]
    return (
        "Each system is trained with a constant learning rate after warm-up and evaluated on val "
        f"every budget (its config's `SOLVER.MAX_ITER`) until {patience} evaluations in a row add "
        f"less than {gain:g} P@0.5 over the best before them (above the val split's noise) or "
        f"10 budgets are reached; a converged curve then runs {periods} more budget(s) at "
        f"{factor:g}x the learning rate, and its final point is after that decay. Trials run "
        f"{protocol['rank_budgets']} budgets (or to their stop rule) and are compared at their "
        "constant rate where the shortest curve still rising ends (`python tools/benchmark.py "
        "--curves`)."
    )


def curves_markdown(result) -> list:
    """The lines of the learning-curve comparison: converged and equal-compute tables with the
    reference levels, the compute table and every recipe trial."""
    val, test, compute = result["val"], result["test"], result["compute"]
    methods = [m for m in METHODS if m in val]
    lines = [
        "",
        "**The comparison** on the validation split `synthetic_a2d_val` (100 videos held out of "
        "training; every choice is made there) and, once per final model, the test split. "
        + protocol_text(result.get("protocol"))
        + " Total compute counts everything a system needs from nothing: its training, and "
        "AAMN's detector training and proposal extraction, and the optical flow of a system "
        "reading flow. Means ± sample standard deviation over the seeds at their final points (a "
        "seed's curve still being extended counts in no mean).",
        "",
    ]
    header = ["system (trial)", "seeds", "iterations (converged)", "total CPU-s", "val P@0.5"]
    header += ["val mean IoU"]
    header += ["query swap", "test P@0.5", "test mean IoU", "J-HMDB P@0.5", "J-HMDB mean IoU"]
    rows = []
    for m in methods:
        runs, t = result["val_runs"][m], test[m]
        swap = runs.get("query_swap") or []
        rows.append(
            [f"{m} ({val[m]['trial']})", seeds_cell(t["seeds"], val[m].get("in_progress"), True),
             ", ".join(f"{i} ({'yes' if c else 'no'})" for i, c in
                       zip(compute[m]["iterations"], val[m].get("converged", []))),
             fmt(compute[m]["total_cpu_s"], 0), pm(runs.get("P@0.5")), pm(runs.get("mean_IoU")),
             pm([v / 100.0 for v in swap], 2), pm(t["segm"]["P@0.5"]), pm(t["segm"]["mean_IoU"]),
             pm(t["jhmdb"]["P@0.5"]), pm(t["jhmdb"]["mean_IoU"])]
        )  # fmt: skip
    levels = result.get("reference_levels", {})
    names = {
        "random_actor": "reference: a random actor of the frame (ground truth)",
        "union_of_actors": "reference: the union of the frame's actors (ground truth)",
        "best_tube": "reference: AAMN's best-of-K tube (its bound given the proposals)",
    }
    for key, label in names.items():
        if key in levels:
            lv = levels[key]
            rows.append([label, "", "", "", fmt(lv.get("P@0.5")), fmt(lv.get("mean_IoU"))]
                        + ["", "", "", "", ""])  # fmt: skip
    lines += ["Each system at the end of its curve (converged: the stop rule met; no: it reached "
              "its largest budget first):", ""] + table(header, rows)  # fmt: skip
    eq = result.get("equal_compute", {})
    if eq:
        level = next(iter(eq.values()))["total_cpu_s"]
        lines += [
            "",
            f"At equal total compute ({level:.0f} CPU-s, every part each system needs counted: "
            "the least at which every curve of every system has been evaluated), each curve read "
            "at that many CPU-seconds, interpolated linearly between the two val evaluations "
            "around it (iterations: those evaluations, per seed):",
            "",
        ]
        rows = []
        for m in methods:
            e = eq.get(m, {})
            its = ["-".join(str(q["iterations"]) for q in p) if p else "not reached"
                   for p in e.get("points", [])]  # fmt: skip
            v = e.get("val", {})
            rows.append([m, ", ".join(its), fmt(v.get("P@0.5")), fmt(v.get("mean_IoU"))])
        lines += table(["system", "iterations", "val P@0.5", "val mean IoU"], rows)
    lines += ["", "Total training compute from nothing: CPU-seconds, all threads (wall seconds in "
              "brackets); means over the seeds. The same work costs more CPU-seconds with more "
              "threads (about 1.4x with 2 than with 1 here): compare rows of the same threads "
              "(the detector, proposals and flow of the main job: 2):", ""]  # fmt: skip
    parts = ["detector", "proposals", "flow", "training"]
    rows = []
    for m in methods:
        c = compute[m]
        walls = c.get("parts_wall_s", {})
        cells = [f"{fmt(c['parts'].get(p), 0)} ({fmt(walls.get(p), 0)})" if p in c["parts"]
                 else "-" for p in parts]  # fmt: skip
        threads = ", ".join(map(str, c.get("threads", []))) or "-"
        rows.append([m, *cells, f"{fmt(c['total_cpu_s'], 0)} ({fmt(c.get('total_wall_s'), 0)})",
                     threads])  # fmt: skip
    lines += table(["system", *parts, "total", "training threads"], rows)
    lines += [
        "",
        "Every recipe trial (means over its seeds). A system's trials are compared with the seeds "
        "all of them ran, at the largest iteration count all of them reached:",
        "",
    ]
    rows = []
    for m in methods:
        for e in result["trials"].get(m, []):
            at = e.get("chosen_on")
            choice = f"{fmt(at['P@0.5'])} at {at['iterations']} it" if at else "-"
            seeds = seeds_cell(e["seeds"], e.get("in_progress"))
            its = ", ".join(map(str, e["iterations"]))
            final = [fmt(e["val"].get("P@0.5")), fmt(e["val"].get("mean_IoU"))]
            cost = e.get("train_cpu_s_per_it")
            threads = ", ".join(map(str, e.get("threads", []))) or "-"
            rows.append([m, e["trial"], " ".join(e["overrides"]) or "(the config)", seeds, its,
                         f"{fmt(cost, 2)} ({threads})", choice, *final])  # fmt: skip
    header = ["system", "trial", "overrides", "seeds", "iterations", "CPU-s / it (threads)"]
    header += ["val P@0.5 where compared (the choice)", "final val P@0.5", "final val mean IoU"]
    lines += table(header, rows)
    checks = []
    for m in methods:
        v, third, said = val[m], val[m].get("third_seed") or {}, []
        if "ranked_at_fraction" in v:
            depth = (f"trials compared at {v['ranked_at_fraction']:.0%} of the chosen trial's "
                     "converged length")  # fmt: skip
            every = v.get("ranked_at_fraction_all_seeds", v["ranked_at_fraction"])
            if abs(every - v["ranked_at_fraction"]) > 1e-9:
                depth += f" ({every:.0%} of its longest seed's)"
            wanted = v.get("rank_budgets_wanted")
            if wanted and wanted > v.get("ranked_at_budgets", wanted) + 1e-9:
                depth += (f": half of it wants the trials at {wanted} budgets (`tools/benchmark.py "
                          f"--curves --methods {m} --seeds 1 --max-budgets {wanted}`)")  # fmt: skip
            said.append(depth)
        if third.get("spread") is not None and third.get("lead") is not None:
            said.append(f"its seeds {third['spread']:.1f} apart, its lead {third['lead']:.1f}: "
                        + ("a third seed is wanted" if third["seeds"] == 3
                           else "two seeds suffice"))  # fmt: skip
        if said:
            checks.append(f"{m}: " + "; ".join(said))
    if checks:
        lines += [""] + [f"- {c}." for c in checks]
    lines += ["", "![learning curves](benchmarks/results/synthetic_curves.png)"]
    return lines


def plot_curves(result, out_dir):
    """val P@0.5 and mean IoU against total training compute, every seed of each system's chosen
    trial (AAMN's curve starts at its detector's and proposals' cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aamn.utils.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("P@0.5", "mean_IoU")):
        for i, m in enumerate(METHODS):
            runs = result["learning_curve_runs"].get(m, {})
            for j, points in enumerate(runs.values()):
                xs = [p["total_cpu_s"] / 3600 for p in points]
                ys = [p["val"].get(metric) for p in points]
                label = m if j == 0 else None
                ax.plot(xs, ys, "o-", color=f"C{i}", alpha=1.0 - 0.5 * (j > 0), label=label, ms=3)
            fixed = sum(v for k, v in result["compute"].get(m, {}).get("parts", {}).items()
                        if k != "training")  # fmt: skip
            if fixed:
                ax.axvline(fixed / 3600, color=f"C{i}", ls=":", lw=1)
        levels = result.get("reference_levels", {})
        for key, style in (("random_actor", "--"), ("union_of_actors", "-."), ("best_tube", ":")):
            if key in levels and levels[key].get(metric) is not None:
                ax.axhline(levels[key][metric], color="gray", ls=style, lw=1,
                           label=key.replace("_", " "))  # fmt: skip
        ax.set_xlabel("total training compute (CPU-hours, from nothing)", fontsize=8)
        ax.set_ylabel(f"val {metric}", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
    axes[0].legend(fontsize=7)
    fig.suptitle("learning curves on synthetic_a2d_val (dotted: compute before the training)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    path = os.path.join(out_dir, "synthetic_curves.png")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_markdown(path, text):
    with open(path) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        doc = doc[: doc.index(MARK_BEGIN)] + text + doc[doc.index(MARK_END) + len(MARK_END) :]
    else:
        doc = doc.rstrip("\n") + "\n\n## Side by side (`tools/benchmark.py`)\n\n" + text + "\n"
    from aamn.utils.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(doc)


def plot(result, per_run, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aamn.utils.io import atomic_path

    paths = []
    if not any(per_run.get("single_frame", {}).values()):  # no training of the configs as they are
        return paths + plot_scaling(result, out_dir)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("single_frame", "P@0.5", "P@0.5 (single frame)"),
              ("single_frame", "mean_IoU", "mean IoU (single frame)"),
              ("jhmdb", "P@0.5", "J-HMDB layout P@0.5")]  # fmt: skip
    for ax, (section, metric, title) in zip(axes, panels):
        for i, m in enumerate(METHODS):
            vals = per_run.get(section, {}).get(m, {}).get(metric, [])
            if not vals:
                continue
            ax.bar(i, statistics.mean(vals), color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
        ax.set_xticks(range(len(METHODS)), list(METHODS), fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 100)
    fig.suptitle("synthetic benchmark: means over seeds (bars) and each run (dots)", fontsize=9)
    fig.tight_layout()
    paths = [os.path.join(out_dir, "synthetic_accuracy.png")]
    with atomic_path(paths[0], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return paths + plot_scaling(result, out_dir)


def plot_scaling(result, out_dir):
    """``synthetic_scaling.png``: AAMN's cost against L, K, queries and video length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aamn.utils.io import atomic_path

    paths = []
    sc = result.get("scaling")
    if sc:
        keys = [("L", "half clip length L", "ms / clip-query"), ("K", "tubes K", "ms / clip-query"),
                ("queries", "queries per clip", "ms per query"),
                ("video_length", "video frames", "whole-video ms / frame")]  # fmt: skip
        keys = [k for k in keys if sc.get(k[0])]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2))
        for ax, (key, xlabel, ylabel) in zip(axes, keys):
            pairs = by_number(sc[key])
            ax.plot([k for k, _ in pairs], [v for _, v in pairs], "o-")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_ylim(bottom=0)
        fig.suptitle("AAMN: how the cost grows", fontsize=9)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "synthetic_scaling.png"))
        with atomic_path(paths[0], suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
    return paths


def reference_levels(curves, runs) -> dict:
    """``random_actor``, ``union_of_actors`` (from the validation split's records) and
    ``best_tube`` (AAMN's chosen trial, its first seed's final model) on the validation split."""
    from detectron2.data import DatasetCatalog

    from aamn.evaluation.reference_levels import actor_reference_levels

    from .comparison import TRIALS, VAL, best_tube_cached, curve_dir, trial_config

    levels = actor_reference_levels(DatasetCatalog.get(VAL))
    if "AAMN" in curves["val"]:
        trial = curves["val"]["AAMN"]["trial"]
        seed = curves["trials"]["AAMN"][0]["seeds"][0]
        for entry in curves["trials"]["AAMN"]:
            if entry["trial"] == trial:
                seed = entry["seeds"][0]
        config = trial_config("AAMN", trial)
        out = curve_dir(runs, "AAMN", trial, seed)
        levels["best_tube"] = best_tube_cached(out, config, TRIALS["AAMN"].get(trial, []))
    return levels


def main_job_stages(main_job_output: str) -> dict:
    """The main job's stages as its last run recorded them (``main_job_compute.json``): ``{stage:
    {wall_s, cpu_s}}`` in the job's order, ``{}`` when the main job has not run."""
    path = os.path.join(main_job_output, "main_job_compute.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        compute = json.load(f)
    return {
        k: {"wall_s": v["wall_s"], "cpu_s": v["cpu_s"], "date": v.get("date", "")}
        for k, v in compute.items()
        if isinstance(v, dict) and "wall_s" in v
    }


def whole_video_markdown(result) -> list:
    """The tables of the whole-video settings (``run_whole_video``) and the main job's stages."""
    lines = []
    wv = result.get("whole_video")
    if wv:
        shared = next((v["frames_per_s"] for k, v in wv.items() if "shared" in k), None)
        lines += ["", "Whole video, every system's base config and its trial chosen on val, and "
                  "AAMN's shared model, in the same run (each a child process, the settings "
                  "interleaved, the fastest of the rounds kept; milliseconds per frame; rest: "
                  "decoding, resizing and the results):", ""]  # fmt: skip
        header = ["setting", "frames / s", "ms / frame", "model", "proposals", "flow", "rest"]
        header.append("AAMN shared over it")
        rows = []
        for label, v in wv.items():
            ms = v["ms_per_frame"]
            ratio = f"{shared / v['frames_per_s']:.2f}x" if shared else ""
            rows.append([label, fmt(v["frames_per_s"]), *[fmt(ms[k], 2) for k in
                         ("total", "model", "proposals", "flow", "rest")], ratio])  # fmt: skip
        lines += table(header, rows)
    stages = result.get("main_job_stages")
    if stages:
        lines += ["", "The main job's stages, as its last run recorded them "
                  "(`main_job_compute.json`):", ""]  # fmt: skip
        rows = [[k, fmt(v["wall_s"], 0), fmt(v["cpu_s"], 0)] for k, v in stages.items()]
        total = [sum(v[k] for v in stages.values()) for k in ("wall_s", "cpu_s")]
        rows.append(
            ["**total**", f"**{total[0]:.0f}** ({total[0] / 60:.1f} min)", fmt(total[1], 0)]
        )
        lines += table(["stage", "wall s", "CPU s"], rows)
    return lines


def chosen_trials(args) -> dict:
    """``{method: trial}`` chosen on val: the results file's (``--reuse-accuracy``) or the curve
    runs' (``collect_curves``)."""
    from .comparison import collect_curves

    if getattr(args, "reuse_accuracy", False):
        with open(args.output) as f:
            val = json.load(f).get("val") or {}
    else:
        val = collect_curves(args.runs, args.main_job_output)["val"]
    if not val:
        raise ValueError("--data-scale needs the trials chosen on val: run --curves first")
    return {m: v["trial"] for m, v in val.items()}


def run_benchmark(args) -> str:
    """``tools/benchmark.py``'s work: the accuracy of the runs (training the missing ones with
    ``--train``), the speed in child processes (or the last file's with ``--reuse-speed``), the
    results JSON, the plots and BENCHMARKS.md's section; returns the section's text.

    Raises:
        ValueError: no evaluated run was found.
    """
    from aamn.utils.io import atomic_path

    from .accuracy import collect_accuracy, train_missing
    from .comparison import collect_curves, equal_compute_of, evaluate_chosen_on_test
    from .speed import default_video, run_speed, run_whole_video

    if args.train:
        for seed in args.seeds:
            for method in METHODS:
                train_missing(args, method, seed)
    if getattr(args, "curves", False):
        from .comparison import TRIALS, train_curve

        for method in args.methods or list(METHODS):
            for trial in args.trials or list(TRIALS[method]):
                if trial not in TRIALS[method]:
                    raise ValueError(f"no trial {trial!r} of {method}: {sorted(TRIALS[method])}")
                for seed in args.seeds:
                    train_curve(
                        args.runs, method, trial, seed, args.max_budgets, args.main_job_output
                    )
    if getattr(args, "margin", False):
        levels = args.margin_iterations or WEAK_DETECTOR_ITERATIONS
        run_weak_proposals(args.runs, levels, args.seeds)
    if getattr(args, "margin_curves", False):
        levels = args.margin_iterations or WEAK_DETECTOR_ITERATIONS
        run_weak_proposal_curves(args.runs, levels, args.seeds, args.max_budgets)
    if getattr(args, "data_scale", None):
        run_data_scale(
            args.runs, args.data_scale, chosen_trials(args), max_budgets=args.max_budgets
        )
    if getattr(args, "reuse_accuracy", False):  # the accuracy of the last run
        if not os.path.isfile(args.output):
            raise ValueError(f"--reuse-accuracy: no results file {args.output} to keep")
        with open(args.output) as f:
            result = json.load(f)
        per_run, seeds_found = result["runs"]["values"], result["runs"]["seeds"]
        curves = {"val": result.get("val") or {}}
        if result.get("learning_curve_runs"):  # read again from the kept curves
            result["equal_compute"] = equal_compute_of(result)
    else:
        sections, per_run, seeds_found = collect_accuracy(args)
        if getattr(args, "evaluate_test", False):  # the chosen trials' final models, once each
            evaluate_chosen_on_test(args.runs, args.main_job_output)
        curves = collect_curves(args.runs, args.main_job_output)
        if not any(seeds_found.values()) and not curves["val"]:
            raise ValueError(
                f"no evaluated run under {args.runs} (<method>/seed<S>/eval_*.json or "
                "curves/<method>/<trial>/seed<S>/learning_curve.json); --train or --curves"
            )
        result = dict(sections)
        if curves["val"]:
            result.update(curves)
            result["reference_levels"] = reference_levels(curves, args.runs)
        result["runs"] = {"seeds": seeds_found, "values": per_run}
        result["accuracy_setting"] = {
            "command": "python tools/benchmark.py " + " ".join(args.argv),
            "date": time.strftime("%Y-%m-%d"),
        }
        result["papers_reported"] = {"metrics": PAPER_METRICS, "rows": PAPERS,
                                     "ms_per_clip": PAPER_MS_PER_CLIP}  # fmt: skip
    chosen = {m: v["trial"] for m, v in (result.get("val") or {}).items()}  # on val
    if args.reuse_speed:  # the speed section of the last run, accuracy recomputed
        with open(args.output) as f:
            last = json.load(f)
        for key in ("speed", "profile", "scaling", "speed_setting", "whole_video"):
            if key in last:
                result[key] = last[key]
    elif not args.no_speed:
        args.video = args.video or default_video()
        result["speed"], result["profile"], result["scaling"] = run_speed(args, chosen)
        result["whole_video"] = run_whole_video(args, chosen)
        result["speed_setting"] = {
            "threads": args.threads,
            "device": args.device,
            "video": os.path.basename(args.video),
            "command": "python tools/benchmark.py " + " ".join(args.argv),
            "date": time.strftime("%Y-%m-%d"),
        }
    for models in getattr(args, "proposal_conditioned", None) or ():
        run_proposal_conditioned(args.runs, chosen, models=models)
    scale = collect_data_scale(args.runs, chosen_seed_curves(result), args.main_job_output)
    if scale:  # a scale run beside the comparison's own
        result.setdefault("margin", {})["data_scale"] = scale
    add_margin(result, args.runs)
    stages = main_job_stages(args.main_job_output)
    if stages:
        result["main_job_stages"] = stages
    os.makedirs(os.path.dirname(args.output), exist_ok=True)

    with atomic_path(args.output) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    pictures = plot(result, per_run, os.path.dirname(args.output))
    if result.get("val"):
        pictures.append(plot_curves(result, os.path.dirname(args.output)))
    margin_plot = plot_margin(result, os.path.dirname(args.output))
    if margin_plot:
        pictures.append(margin_plot)
    text = markdown(result, per_run, seeds_found, args)
    if args.markdown:
        write_markdown(args.markdown, text)
    print(f"\n[benchmark] wrote {args.output}, {', '.join(pictures)}"
          + (f" and the section of {args.markdown}" if args.markdown else ""))  # fmt: skip
    return text
