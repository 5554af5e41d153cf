"""The synthetic benchmark's second job (``tools/run_layout_job.py``): AAMN and both comparison
systems trained on the Ref-YouTube-VOS layout of the same benchmark, each reported with P@0.5 and
J&F beside it.

It reads the main job's proposal detector (``make main`` first) and runs, skipping what exists:

1. the layout: ``prepare_synthetic.py --layout ytvos`` into ``$AAMN_DATASETS/synthetic_ytvos``
   (the names ``synthetic_ytvos_*`` read it);
2. the flow of its three splits (``prepare_flow.py``);
3. the main job's detector's proposals of ``synthetic_ytvos_train``, ``synthetic_ytvos_valid`` and
   ``synthetic_ytvos_valid_all_frames`` (AAMN's clips);
4. each system's synthetic config trained on ``synthetic_ytvos_train`` and evaluated on
   ``synthetic_ytvos_valid`` (the papers' metrics and J&F on the frames showing the referred actor)
   and ``synthetic_ytvos_valid_all_frames`` (J&F over every frame, the layout's protocol), into
   ``<output>/<system>/`` with ``eval.json``;
5. ``<output>/results.json``: ``{system: {"P@0.5", "mean_IoU", "J&F", "J&F_all_frames"}}``,
   printed as a table.

Choices stay on the validation split: the test split of the layout is not evaluated.
"""

import json
import os
import sys
from typing import Callable, Dict, List, Optional

__all__ = ["SYSTEMS", "layout_job_commands", "layout_results", "run_layout_job"]

TRAIN, VALID = "synthetic_ytvos_train", "synthetic_ytvos_valid"
VALID_ALL = "synthetic_ytvos_valid_all_frames"
# system -> its synthetic config (the model zoo's)
SYSTEMS = {
    "AAMN": "synthetic/aamn.yaml",
    "CMDy": "synthetic/cmdy.yaml",
    "DynamicFilterSeg": "synthetic/dynamic_filter.yaml",
}


def layout_job_commands(
    datasets_dir: str, output_dir: str, detector_weights: str, size: str = "default", workers=2
) -> List[Dict]:
    """The job's steps in order: ``{"name", "outputs", "command"}`` (a step runs when one of its
    outputs is missing)."""
    from aamn.config import get_aamn_cfg

    from ..model_zoo import get_config_file

    py = sys.executable
    layout = os.path.join(datasets_dir, "synthetic_ytvos")
    splits = ("train", "valid", "test")
    steps = [
        {
            "name": "layout",
            "outputs": [os.path.join(layout, "synthetic_layout.json")],
            "command": [
                py,
                "-m",
                "aamn.cli.prepare_synthetic",
                "--layout",
                "ytvos",
                "--size",
                size,
                "--output",
                layout,
                "--workers",
                str(workers),
            ],
        }  # fmt: skip
    ]
    for split in splits:
        steps.append(
            {
                "name": f"flow {split}",
                "outputs": [os.path.join(layout, split, "flow", ".complete")],
                "command": [
                    py,
                    "-m",
                    "aamn.cli.prepare_flow",
                    "--workers",
                    str(workers),
                    "--dataset-root",
                    os.path.join(layout, split),
                ],
            }  # fmt: skip
        )
    half = get_aamn_cfg(get_config_file(SYSTEMS["AAMN"])).INPUT.CLIP.HALF_LENGTH
    names = (TRAIN, VALID, VALID_ALL)
    proposals = [
        os.path.join(layout, "train" if n == TRAIN else "valid", "proposals", f"{n}.pkl")
        for n in names
    ]
    steps.append(
        {
            "name": "proposals",
            "outputs": proposals,
            "command": [
                py,
                "-m",
                "aamn.cli.prepare_proposals",
                "--config-file",
                get_config_file("synthetic/detector.yaml"),
            ]
            + [a for n in names for a in ("--dataset", n)]
            + ["--clip-half-length", str(half), "MODEL.WEIGHTS", detector_weights],
        }  # fmt: skip
    )
    for system, config in SYSTEMS.items():
        out = os.path.join(output_dir, system)
        command = [py, "-m", "aamn.cli.train_net", "--config-file", get_config_file(config)]
        command += ["--results-json", os.path.join(out, "eval.json"), "OUTPUT_DIR", out]
        command += ["DATASETS.TRAIN", f"('{TRAIN}',)"]
        command += ["DATASETS.TEST", f"('{VALID}', '{VALID_ALL}')"]
        if system == "AAMN":  # the shared model starts from the main job's detector
            command += ["MODEL.WEIGHTS", detector_weights]
            command += ["DATASETS.PROPOSAL_FILES_TRAIN", f"('{proposals[0]}',)"]
            command += ["DATASETS.PROPOSAL_FILES_TEST", f"('{proposals[1]}', '{proposals[2]}')"]
        steps.append(
            {"name": system, "outputs": [os.path.join(out, "eval.json")], "command": command}
        )
    return steps


def layout_results(output_dir: str) -> Dict[str, Dict[str, Optional[float]]]:
    """``{system: {"P@0.5", "mean_IoU", "J&F", "J&F_all_frames"}}`` of the systems evaluated."""
    out = {}
    for system in SYSTEMS:
        path = os.path.join(output_dir, system, "eval.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            res = json.load(f)
        valid, every = res.get(VALID, {}), res.get(VALID_ALL, {})
        out[system] = {
            "P@0.5": valid.get("segm", {}).get("P@0.5"),
            "mean_IoU": valid.get("segm", {}).get("mean_IoU"),
            "J&F": valid.get("jf", {}).get("J&F"),
            "J&F_all_frames": every.get("jf", {}).get("J&F"),
        }
    return out


def run_layout_job(
    datasets_dir: str,
    output_dir: str,
    detector_weights: str,
    size: str = "default",
    workers: int = 2,
    run: Optional[Callable] = None,
) -> Dict:
    """Run the steps whose outputs are missing (``layout_job_commands``), then write and print
    the results.  ``run(cmd, env)``: runs one command (default: the main job's
    ``run_command``).

    Raises:
        FileNotFoundError: the main job's detector is missing (named, with ``make main``).
    """
    from ..utils.io import write_json_atomic
    from .main_job import run_command

    if not os.path.isfile(detector_weights):
        raise FileNotFoundError(
            f"no proposal detector at {detector_weights}: run the main job first (make main)"
        )
    run = run or run_command
    env = dict(os.environ, AAMN_DATASETS=os.path.abspath(datasets_dir))
    for step in layout_job_commands(datasets_dir, output_dir, detector_weights, size, workers):
        if all(os.path.exists(p) for p in step["outputs"]):
            print(f"[layout job] {step['name']}: done, skipped", flush=True)
            continue
        print(f"[layout job] {step['name']}", flush=True)
        run(step["command"], env)
    results = layout_results(output_dir)
    write_json_atomic(os.path.join(output_dir, "results.json"), results)
    print("\n| system | val P@0.5 | val mean IoU | val J&F | val J&F, every frame |")
    print("|---|---|---|---|---|")
    for system, r in results.items():
        cells = ["-" if v is None else f"{v:.1f}" for v in r.values()]
        print(f"| {system} | " + " | ".join(cells) + " |")
    return results
