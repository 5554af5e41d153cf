#!/usr/bin/env python
"""The main job on the synthetic benchmark, end to end (``make main``).

Stages, each skipped when its outputs are newer than its inputs (like make) and it was made with
the same commands (config files, overrides, sizes, seeds: recorded per stage in
``<output>/main_job_stages.json``; a rerun with other overrides redoes the stages they change and
every later one):

1. ``data``       datasets/prepare_synthetic.py   -> $AAMN_DATASETS/synthetic/{a2d,jhmdb}_sentences
                  (another --size: $AAMN_DATASETS/synthetic_<size>/, outputs in
                  output/synthetic_<size>/; the stages read it through $AAMN_SYNTHETIC)
2. ``flow``       datasets/prepare_flow.py        -> <root>/flow/   (both trees)
3. ``detector``   tools/train_net.py (detector)   -> output/synthetic/detector/model_final.pth
4. ``proposals``  datasets/prepare_proposals.py   -> <root>/proposals/<dataset>.pkl
5. ``aamn``       tools/train_net.py (AAMN)       -> output/synthetic/aamn/model_final.pth, and
                  its evaluation                  -> <output>/aamn/eval_synthetic_a2d_test.json
6. ``evaluate``   train_net.py --eval-only        -> <output>/aamn/eval_synthetic_jhmdb_test.json
7. ``draw``       tools/visualize.py              -> <output>/aamn/visualizations/*.png
                  tools/visualize_tubes.py        -> <output>/aamn/tubes/*.png
                  tools/plot_curves.py            -> <output>/{detector,aamn}/training_curves.png
8. ``demo``       tools/demo.py on one test video -> <output>/aamn/demo/<video>.mp4, .json, frames/

Usage::

    python tools/run_main_job.py                    # everything, skipping what is up to date
    python tools/run_main_job.py --from aamn        # force a stage and everything after it
    python tools/run_main_job.py --size tiny        # a quick smoke run, in its own trees
"""

import argparse
import glob
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

from aamn.config import get_aamn_cfg
from aamn.data.synthetic import synthetic_tree_name
from aamn.utils.io import atomic_path, datasets_root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["data", "flow", "detector", "proposals", "aamn", "evaluate", "draw", "demo"]


def log(msg):
    print(f"\n[main job {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def newest_mtime(paths):
    times = [os.path.getmtime(p) for p in paths if os.path.exists(p)]
    return max(times) if times else None


def up_to_date(outputs, inputs):
    """True when every output exists and is newer than every existing input."""
    if not outputs or not all(os.path.exists(o) for o in outputs):
        return False
    oldest_output = min(os.path.getmtime(o) for o in outputs)
    newest_input = newest_mtime(inputs)
    return newest_input is None or oldest_output >= newest_input


def recipe(cmds):
    """A stage's commands without the interpreter's path, hashed: what the outputs were made by."""
    return hashlib.sha1(json.dumps([c[1:] for c in cmds]).encode("utf-8")).hexdigest()


def read_recipes(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run(cmd, env):
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    start = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    log(f"done in {time.time() - start:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        default="default",
        choices=["tiny", "default", "large"],
        help="synthetic benchmark size",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir",
        default=None,
        help="default: output/synthetic for the default size, output/synthetic_<size> otherwise",
    )
    parser.add_argument("--datasets-dir", default=datasets_root())
    parser.add_argument(
        "--detector-config", default=os.path.join(REPO, "configs", "synthetic", "detector.yaml")
    )
    parser.add_argument(
        "--aamn-config", default=os.path.join(REPO, "configs", "synthetic", "aamn.yaml")
    )
    parser.add_argument(
        "--from", dest="from_stage", choices=STAGES, help="redo this stage and every later one"
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--detector-opts",
        default="",
        help="config overrides for the detector, one string: 'KEY VALUE ...'",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides for AAMN (training, evaluation, drawing), KEY VALUE ...",
    )
    args = parser.parse_args(argv)

    py = sys.executable
    det_opts = shlex.split(args.detector_opts)
    # Each size has its own benchmark tree and outputs: a smoke run never touches the default's.
    tree_name = synthetic_tree_name(args.size)
    args.output_dir = args.output_dir or os.path.join(REPO, "output", tree_name)
    env = dict(os.environ, AAMN_DATASETS=os.path.abspath(args.datasets_dir))
    synth = os.path.join(env["AAMN_DATASETS"], tree_name)
    env["AAMN_SYNTHETIC"] = synth
    a2d_root, jhmdb_root = (
        os.path.join(synth, "a2d_sentences"),
        os.path.join(synth, "jhmdb_sentences"),
    )
    det_dir, aamn_dir = (
        os.path.join(args.output_dir, "detector"),
        os.path.join(args.output_dir, "aamn"),
    )
    forced = set(STAGES[STAGES.index(args.from_stage) :]) if args.from_stage else set()
    t0 = time.time()

    recipes_file = os.path.join(args.output_dir, "main_job_stages.json")
    done = set()  # stages run now: every later stage runs too

    def stage(name, outputs, inputs, cmds):
        made_by = read_recipes(recipes_file).get(name)
        if (
            name not in forced
            and not done
            and up_to_date(outputs, inputs)
            and made_by == recipe(cmds)
        ):
            log(f"stage {name}: up to date, skipped")
            return
        if made_by not in (None, recipe(cmds)) and up_to_date(outputs, inputs):
            log(f"stage {name}: made with other commands or overrides, redone")
        log(f"stage {name}")
        for cmd in cmds:
            run(cmd, env)
        done.add(name)
        recipes = read_recipes(recipes_file)
        recipes[name] = recipe(cmds)
        with atomic_path(recipes_file) as tmp, open(tmp, "w") as f:
            json.dump(recipes, f, indent=2)

    # 1. the synthetic benchmark (prepare_synthetic.py itself skips a tree of the same size and
    # seed)
    data_stamp = os.path.join(synth, "synthetic_info.json")
    gen_cmd = [
        py,
        "datasets/prepare_synthetic.py",
        "--size",
        args.size,
        "--seed",
        str(args.seed),
        "--output",
        synth,
        "--workers",
        str(args.workers),
    ]
    if "data" in forced:
        gen_cmd.append("--overwrite")
    run(gen_cmd, env)

    # 2. optical flow (resumable: finished videos are skipped)
    flow_stamps = [
        os.path.join(a2d_root, "flow", ".complete"),
        os.path.join(jhmdb_root, "flow", ".complete"),
    ]
    stage(
        "flow",
        flow_stamps,
        [data_stamp],
        [
            [
                py,
                "datasets/prepare_flow.py",
                "--dataset-root",
                a2d_root,
                "--workers",
                str(args.workers),
            ],
            [
                py,
                "datasets/prepare_flow.py",
                "--dataset-root",
                jhmdb_root,
                "--workers",
                str(args.workers),
            ],
        ],
    )

    # 3. the proposal detector
    det_weights = os.path.join(det_dir, "model_final.pth")
    stage(
        "detector",
        [det_weights],
        [data_stamp, args.detector_config],
        [
            [
                py,
                "tools/train_net.py",
                "--config-file",
                args.detector_config,
                "OUTPUT_DIR",
                det_dir,
                *det_opts,
            ],
        ],
    )

    # 4. proposals: the frames the clips of the AAMN config read (within INPUT.CLIP.HALF_LENGTH of
    # an annotated frame), of the training and the test splits (both protocols score annotated
    # frames only; the demo and the whole-video tools run the detector themselves)
    half_length = get_aamn_cfg(args.aamn_config, args.opts).INPUT.CLIP.HALF_LENGTH
    splits = ["synthetic_a2d_train", "synthetic_a2d_test", "synthetic_jhmdb_test"]
    proposal_files = [os.path.join(a2d_root, "proposals", f"{s}.pkl") for s in splits[:2]] + [
        os.path.join(jhmdb_root, "proposals", f"{splits[2]}.pkl")
    ]
    proposals = [py, "datasets/prepare_proposals.py", "--config-file", args.detector_config]
    stage(
        "proposals",
        proposal_files,
        [det_weights],
        [
            [
                *proposals,
                *[a for s in splits for a in ("--dataset", s)],
                "--clip-half-length",
                str(half_length),
                "MODEL.WEIGHTS",
                det_weights,
                *det_opts,
            ],
        ],
    )

    # 5. AAMN, ending with its evaluation on synthetic_a2d_test (DATASETS.TEST of the config)
    aamn_weights = os.path.join(aamn_dir, "model_final.pth")
    a2d_eval = os.path.join(aamn_dir, "eval_synthetic_a2d_test.json")
    stage(
        "aamn",
        [aamn_weights, a2d_eval],
        proposal_files + [args.aamn_config],
        [
            [
                py,
                "tools/train_net.py",
                "--config-file",
                args.aamn_config,
                "--results-json",
                a2d_eval,
                "OUTPUT_DIR",
                aamn_dir,
                "DATASETS.TEST",
                "('synthetic_a2d_test',)",
                *args.opts,
            ],
        ],
    )

    # 6. evaluation of the A2D-trained model on the J-HMDB-layout test set
    jhmdb_eval = os.path.join(aamn_dir, "eval_synthetic_jhmdb_test.json")
    stage(
        "evaluate",
        [jhmdb_eval],
        [aamn_weights],
        [
            [
                py,
                "tools/train_net.py",
                "--config-file",
                args.aamn_config,
                "--eval-only",
                "--results-json",
                jhmdb_eval,
                "MODEL.WEIGHTS",
                aamn_weights,
                "OUTPUT_DIR",
                aamn_dir,
                "DATASETS.TEST",
                "('synthetic_jhmdb_test',)",
                *args.opts,
            ],
        ],
    )
    eval_files = [a2d_eval, jhmdb_eval]

    # 7. drawings of masks, of every tube, and the training curves
    vis_dir = os.path.join(aamn_dir, "visualizations")
    tubes_dir = os.path.join(aamn_dir, "tubes")
    curves = [os.path.join(d, "training_curves.png") for d in (det_dir, aamn_dir)]
    model_opts = ["MODEL.WEIGHTS", aamn_weights, "OUTPUT_DIR", aamn_dir, *args.opts]
    draw_args = ["--config-file", args.aamn_config, "--dataset", "synthetic_a2d_test"]
    stage(
        "draw",
        [os.path.join(vis_dir, "index.txt"), os.path.join(tubes_dir, "index.txt"), *curves],
        [aamn_weights],
        [
            [py, "tools/visualize.py", *draw_args, "--num", "8", "--output", vis_dir, *model_opts],
            [
                py,
                "tools/visualize_tubes.py",
                *draw_args,
                "--num",
                "4",
                "--output",
                tubes_dir,
                *model_opts,
            ],
            [py, "tools/plot_curves.py", det_dir, aamn_dir],
        ],
    )

    # 8. the demo on one test video, as a user runs it on their own (frames, flow and proposals
    # computed on the fly; the proposal detector is the one AAMN's checkpoint names)
    video, queries = demo_sample(a2d_root)
    demo_dir = os.path.join(aamn_dir, "demo")
    demo_video = os.path.join(demo_dir, os.path.basename(video))
    demo_json = os.path.splitext(demo_video)[0] + ".json"
    stage(
        "demo",
        [demo_video, demo_json],
        [aamn_weights, det_weights],
        [
            [
                py,
                "tools/demo.py",
                "--config-file",
                args.aamn_config,
                "--video",
                video,
                *[a for q in queries for a in ("--query", q)],
                "--output",
                demo_video,
                "--json",
                demo_json,
                "--png-dir",
                os.path.join(demo_dir, "frames"),
                "--quiet",
                *model_opts,
            ],
        ],
    )

    log(f"main job finished in {(time.time() - t0) / 60:.1f} min")
    for path in eval_files:
        if os.path.exists(path):
            with open(path) as f:
                results = json.load(f)
            print(f"\n== {os.path.basename(path)}")
            for task, metrics in results.items():
                if isinstance(metrics, dict):
                    print(
                        f"  {task}: "
                        + ", ".join(
                            f"{k}={v:.1f}"
                            for k, v in metrics.items()
                            if isinstance(v, (int, float))
                        )
                    )
    print("\nPictures:")
    for folder in (vis_dir, tubes_dir, os.path.join(demo_dir, "frames")):
        print(f"  {folder}/  ({len(glob.glob(os.path.join(folder, '*.png')))} PNG)")
    for path in curves + [demo_video, demo_json]:
        print(f"  {path}")
    return 0


def demo_sample(a2d_root):
    """The demo's input: the first test video of the synthetic A2D tree and its first two queries
    (distinct)."""
    from aamn.data import load_a2d_sentences

    records = sorted(load_a2d_sentences(a2d_root, "test"), key=lambda r: r["video_id"])
    if not records:
        raise SystemExit(f"[main job] no test records under {a2d_root}")
    video = records[0]["file_name"]
    queries = []
    for r in records:
        if r["file_name"] == video and r["query"] not in queries:
            queries.append(r["query"])
    return video, queries[:2]


if __name__ == "__main__":
    sys.exit(main())
