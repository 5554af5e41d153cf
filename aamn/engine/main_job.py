"""The main job on the synthetic benchmark (``make main``, ``tools/run_main_job.py``): a list of
named stages, each with its inputs, its outputs and its commands.

A stage is skipped when its outputs are newer than its inputs (like make) and were made with the
same commands (config files, overrides, sizes, seeds: recorded per stage in
``<output>/main_job_stages.json``); once a stage runs, every later one runs too.  The ``data``
stage always runs its command: ``prepare_synthetic.py`` itself keeps a tree of the same size and
seed.  Each size has its own benchmark tree and outputs (``synthetic_tree_name``), which the stages
read through ``$AAMN_SYNTHETIC``.
"""

import glob
import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..data.synthetic import synthetic_tree_name
from ..utils.io import atomic_path

__all__ = ["STAGES", "MainJob", "Stage", "data_stage", "main_job_stages", "run_main_job"]

# The wall and CPU seconds of each stage's last run (record_compute).
COMPUTE_FILE = "main_job_compute.json"
STAGES = ["data", "flow", "detector", "proposals", "aamn", "evaluate", "draw", "demo"]


@dataclass
class Stage:
    """``name``, the files it makes (``outputs``) from the files it reads (``inputs``) with
    ``commands``; ``always``: its commands run every time (they skip their own work)."""

    name: str
    outputs: List[str]
    inputs: List[str]
    commands: List[List[str]]
    always: bool = False


@dataclass
class MainJob:
    """The job's settings (``tools/run_main_job.py``'s options) and the paths derived from them."""

    size: str = "default"
    seed: int = 0
    output_dir: str = ""
    datasets_dir: str = "datasets"
    detector_config: str = ""  # default: the zoo's synthetic/detector.yaml
    aamn_config: str = ""  # default: the zoo's synthetic/aamn.yaml
    workers: int = 2
    detector_opts: List[str] = field(default_factory=list)
    opts: List[str] = field(default_factory=list)

    def __post_init__(self):
        from ..model_zoo import get_config_file

        tree = synthetic_tree_name(self.size)
        # Relative paths are the folder's the job runs in (detectron2's ./output, ./datasets).
        self.output_dir = os.path.abspath(self.output_dir or os.path.join("output", tree))
        self.detector_config = self.detector_config or get_config_file("synthetic/detector.yaml")
        self.aamn_config = self.aamn_config or get_config_file("synthetic/aamn.yaml")
        self.datasets_dir = os.path.abspath(self.datasets_dir)
        self.synth = os.path.join(self.datasets_dir, tree)
        self.a2d_root = os.path.join(self.synth, "a2d_sentences")
        self.jhmdb_root = os.path.join(self.synth, "jhmdb_sentences")
        self.det_dir = os.path.join(self.output_dir, "detector")
        self.aamn_dir = os.path.join(self.output_dir, "aamn")

    def env(self) -> Dict[str, str]:
        return dict(os.environ, AAMN_DATASETS=self.datasets_dir, AAMN_SYNTHETIC=self.synth)


def data_stage(job: MainJob, overwrite: bool = False) -> Stage:
    """The ``data`` stage: ``prepare_synthetic.py`` into the size's tree (it keeps a tree of the
    same size and seed itself, so its command runs every time)."""
    return Stage(
        "data",
        [os.path.join(job.synth, "synthetic_info.json")],
        [],
        [
            [sys.executable, "-m", "aamn.cli.prepare_synthetic", "--size", job.size]
            + ["--seed", str(job.seed), "--output", job.synth, "--workers", str(job.workers)]
            + ["--overwrite"] * overwrite
        ],
        always=True,
    )


def main_job_stages(job: MainJob, overwrite_data: bool = False) -> List[Stage]:
    """The stages of ``job``, in order (``STAGES``)."""
    from ..config import get_aamn_cfg

    py = sys.executable
    data_stamp = os.path.join(job.synth, "synthetic_info.json")
    det_weights = os.path.join(job.det_dir, "model_final.pth")
    aamn_weights = os.path.join(job.aamn_dir, "model_final.pth")
    splits = ["synthetic_a2d_train", "synthetic_a2d_val", "synthetic_a2d_test"]
    splits.append("synthetic_jhmdb_test")
    proposal_files = [os.path.join(job.a2d_root, "proposals", f"{s}.pkl") for s in splits[:3]]
    proposal_files.append(os.path.join(job.jhmdb_root, "proposals", f"{splits[3]}.pkl"))
    # The proposals of the frames the AAMN config's clips read (within INPUT.CLIP.HALF_LENGTH of an
    # annotated frame), of the training, validation and test splits: both protocols score annotated
    # frames only; the demo and the whole-video tools run the detector themselves.
    aamn_cfg = get_aamn_cfg(job.aamn_config, job.opts)
    half_length = aamn_cfg.INPUT.CLIP.HALF_LENGTH
    # A model sharing the detector's backbone (MODEL.AAMN.SHARED_DETECTOR) starts from the trained
    # detector: this job's, whatever the config's MODEL.WEIGHTS names.
    shared = ["MODEL.WEIGHTS", det_weights] if aamn_cfg.MODEL.AAMN.SHARED_DETECTOR.ENABLED else []
    a2d_eval = os.path.join(job.aamn_dir, "eval_synthetic_a2d_test.json")
    jhmdb_eval = os.path.join(job.aamn_dir, "eval_synthetic_jhmdb_test.json")
    vis_dir, tubes_dir = (
        os.path.join(job.aamn_dir, "visualizations"),
        os.path.join(job.aamn_dir, "tubes"),
    )
    curves = [os.path.join(d, "training_curves.png") for d in (job.det_dir, job.aamn_dir)]
    model_opts = ["MODEL.WEIGHTS", aamn_weights, "OUTPUT_DIR", job.aamn_dir, *job.opts]
    draw = ["--config-file", job.aamn_config, "--dataset", "synthetic_a2d_test"]
    video, queries = demo_sample(job.a2d_root) if os.path.isdir(job.a2d_root) else ("", [])
    demo_dir = os.path.join(job.aamn_dir, "demo")
    demo_video = os.path.join(demo_dir, os.path.basename(video) or "demo.mp4")
    demo_json = os.path.splitext(demo_video)[0] + ".json"
    flow = [py, "-m", "aamn.cli.prepare_flow", "--workers", str(job.workers), "--dataset-root"]
    train = [py, "-m", "aamn.cli.train_net", "--config-file"]
    return [
        data_stage(job, overwrite_data),
        Stage(
            "flow",
            [os.path.join(r, "flow", ".complete") for r in (job.a2d_root, job.jhmdb_root)],
            [data_stamp],
            [flow + [job.a2d_root], flow + [job.jhmdb_root]],
        ),
        Stage(
            "detector",
            [det_weights],
            [data_stamp, job.detector_config],
            [train + [job.detector_config, "OUTPUT_DIR", job.det_dir, *job.detector_opts]],
        ),
        Stage(
            "proposals",
            proposal_files,
            [det_weights],
            [
                [py, "-m", "aamn.cli.prepare_proposals", "--config-file", job.detector_config]
                + [a for s in splits for a in ("--dataset", s)]
                + ["--clip-half-length", str(half_length), "MODEL.WEIGHTS", det_weights]
                + job.detector_opts
            ],
        ),
        Stage(  # AAMN, ending with its evaluation on synthetic_a2d_test (its DATASETS.TEST)
            "aamn",
            [aamn_weights, a2d_eval],
            proposal_files + [job.aamn_config] + [det_weights] * bool(shared),
            [
                train
                + [job.aamn_config, "--results-json", a2d_eval, "OUTPUT_DIR", job.aamn_dir]
                + ["DATASETS.TEST", "('synthetic_a2d_test',)", *shared, *job.opts]
            ],
        ),
        Stage(  # the A2D-trained model on the J-HMDB-layout test set
            "evaluate",
            [jhmdb_eval],
            [aamn_weights],
            [
                train
                + [job.aamn_config, "--eval-only", "--results-json", jhmdb_eval]
                + ["MODEL.WEIGHTS", aamn_weights, "OUTPUT_DIR", job.aamn_dir]
                + ["DATASETS.TEST", "('synthetic_jhmdb_test',)", *job.opts]
            ],
        ),
        Stage(  # drawings of masks, of every tube, and the training curves
            "draw",
            [os.path.join(vis_dir, "index.txt"), os.path.join(tubes_dir, "index.txt"), *curves],
            [aamn_weights],
            [
                [py, "-m", "aamn.cli.visualize", *draw, "--num", "8", "--output", vis_dir]
                + model_opts,
                [py, "-m", "aamn.cli.visualize_tubes", *draw, "--num", "4", "--output", tubes_dir]
                + model_opts,
                [py, "-m", "aamn.cli.plot_curves", job.det_dir, job.aamn_dir],
            ],
        ),
        Stage(  # the demo on one test video, as a user runs it (the checkpoint names the detector)
            "demo",
            [demo_video, demo_json],
            [aamn_weights, det_weights],
            [
                [py, "-m", "aamn.cli.demo", "--config-file", job.aamn_config, "--video", video]
                + [a for q in queries for a in ("--query", q)]
                + ["--output", demo_video, "--json", demo_json]
                + ["--png-dir", os.path.join(demo_dir, "frames"), "--quiet", *model_opts]
            ],
        ),
    ]


def demo_sample(a2d_root: str):
    """The demo's input: the first test video of the synthetic A2D tree and its first two
    (distinct) queries."""
    from ..data import load_a2d_sentences

    records = sorted(load_a2d_sentences(a2d_root, "test"), key=lambda r: r["video_id"])
    if not records:
        raise SystemExit(f"[main job] no test records under {a2d_root}")
    video = records[0]["file_name"]
    queries = []
    for r in records:
        if r["file_name"] == video and r["query"] not in queries:
            queries.append(r["query"])
    return video, queries[:2]


def log(msg: str) -> None:
    print(f"\n[main job {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def up_to_date(outputs: Sequence[str], inputs: Sequence[str]) -> bool:
    """True when every output exists and is newer than every existing input."""
    if not outputs or not all(os.path.exists(o) for o in outputs):
        return False
    times = [os.path.getmtime(p) for p in inputs if os.path.exists(p)]
    return not times or min(os.path.getmtime(o) for o in outputs) >= max(times)


def recipe(cmds: Sequence[Sequence[str]]) -> str:
    """A stage's commands without the interpreter's path, hashed: what the outputs were made by."""
    return hashlib.sha1(json.dumps([c[1:] for c in cmds]).encode("utf-8")).hexdigest()


def read_recipes(path: str) -> Dict[str, str]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children, all their threads."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(cmd: Sequence[str], env: Dict[str, str]) -> Dict[str, float]:
    """Run one command; returns its ``{"wall_s", "cpu_s"}`` (CPU of it and its children)."""
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    start, cpu = time.time(), children_cpu_s()
    subprocess.run(list(cmd), check=True, env=env)
    used = {"wall_s": time.time() - start, "cpu_s": children_cpu_s() - cpu}
    log(f"done in {used['wall_s']:.0f} s ({used['cpu_s']:.0f} CPU-s)")
    return used


def record_compute(path: str, stage: str, used: Sequence[Dict[str, float]]) -> None:
    """Add a stage's wall and CPU seconds (its commands summed) to ``path``
    (``<output>/main_job_compute.json``: ``{stage: {"wall_s", "cpu_s", "commands", "cpu_count",
    "date"}}``, ``commands`` each command's ``{"wall_s", "cpu_s"}``), keeping the
    other stages' records: what each part of a system's total training compute costs
    (``tools/benchmark.py`` reads it)."""
    records = read_recipes(path)
    records[stage] = {
        "wall_s": round(sum(u["wall_s"] for u in used), 2),
        "cpu_s": round(sum(u["cpu_s"] for u in used), 2),
        "commands": [{k: round(v, 2) for k, v in u.items()} for u in used],
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(records, f, indent=2)


def run_main_job(
    job: MainJob, from_stage: Optional[str] = None, until_stage: Optional[str] = None
) -> None:
    """Run the stages of ``job`` that are not up to date (all from ``from_stage`` on, none after
    ``until_stage``), then print the evaluations and where every picture is."""
    forced = set(STAGES[STAGES.index(from_stage) :]) if from_stage else set()
    env = job.env()
    recipes_file = os.path.join(job.output_dir, "main_job_stages.json")
    compute_file = os.path.join(job.output_dir, COMPUTE_FILE)
    done = False  # a stage ran: every later one runs too
    t0 = time.time()
    os.makedirs(job.output_dir, exist_ok=True)
    used = [run_command(cmd, env) for cmd in data_stage(job, "data" in forced).commands]
    record_compute(compute_file, "data", used)
    # the other stages once the data exists (the demo reads its first test video)
    last = STAGES.index(until_stage) if until_stage else len(STAGES) - 1
    for stage in main_job_stages(job, "data" in forced)[1 : last + 1]:
        name = stage.name
        made_by = read_recipes(recipes_file).get(name)
        fresh = up_to_date(stage.outputs, stage.inputs)
        if name not in forced and not done and fresh and made_by == recipe(stage.commands):
            log(f"stage {name}: up to date, skipped")
            continue
        if made_by not in (None, recipe(stage.commands)) and fresh:
            log(f"stage {name}: made with other commands or overrides, redone")
        log(f"stage {name}")
        record_compute(compute_file, name, [run_command(cmd, env) for cmd in stage.commands])
        done = True
        recipes = read_recipes(recipes_file)
        recipes[name] = recipe(stage.commands)
        with atomic_path(recipes_file) as tmp, open(tmp, "w") as f:
            json.dump(recipes, f, indent=2)
    log(f"main job finished in {(time.time() - t0) / 60:.1f} min")
    report(job)


def report(job: MainJob) -> None:
    """The evaluations' metrics and the pictures' paths."""
    for name in ("eval_synthetic_a2d_test.json", "eval_synthetic_jhmdb_test.json"):
        path = os.path.join(job.aamn_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            results = json.load(f)
        print(f"\n== {name}")
        for task, metrics in results.items():
            if isinstance(metrics, dict):
                values = [f"{k}={v:.1f}" for k, v in metrics.items() if isinstance(v, (int, float))]
                print(f"  {task}: " + ", ".join(values))
    pictures = []
    for folder in ("visualizations", "tubes", os.path.join("demo", "frames")):
        path = os.path.join(job.aamn_dir, folder)
        count = len(glob.glob(os.path.join(path, "*.png")))
        if count:
            pictures.append(f"  {path}/  ({count} PNG)")
    for d in (job.det_dir, job.aamn_dir):
        if os.path.isfile(os.path.join(d, "training_curves.png")):
            pictures.append(f"  {os.path.join(d, 'training_curves.png')}")
    demo_dir = os.path.join(job.aamn_dir, "demo")
    for pattern in ("*.mp4", "*.json"):
        pictures += [f"  {p}" for p in sorted(glob.glob(os.path.join(demo_dir, pattern)))]
    # Only what exists (a job stopped with --until has not drawn everything).
    print("\nPictures:" if pictures else "\nNo picture yet (the draw and demo stages make them).")
    for line in pictures:
        print(line)
