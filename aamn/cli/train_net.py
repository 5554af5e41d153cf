"""Train and evaluate any model of the project (AAMN, or the detector that makes its proposals).

The detectron2 way::

    python tools/train_net.py --config-file configs/synthetic/aamn.yaml
    python tools/train_net.py --config-file configs/synthetic/aamn.yaml --eval-only \\
        MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file configs/synthetic/detector.yaml  # the proposal detector

The trainer (``aamn.engine.Trainer``) picks the data mapper and the evaluator from the config and
the data sets' metadata; a checkpoint carries the model's vocabulary, so ``--eval-only`` needs only
``MODEL.WEIGHTS``."""

import logging
import os
import sys

import torch

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results

import aamn  # noqa: F401  (registers the project's components)
from aamn.config import ConfigError, check_weights, get_aamn_cfg
from aamn.data.datasets.provenance import (
    TRAINING_DATA_KEY,
    DatasetMismatchError,
    check_evaluation_data,
)
from aamn.engine import Trainer, launch_from_args, setup_cfg, write_json_atomic
from aamn.modeling import StreamCheckpointer
from aamn.utils.cli import run_tool
from aamn.modeling.checkpoint import (
    CheckpointFileError,
    IncompatibleCheckpointError,
    VocabularyMismatchError,
)

# A weights file that cannot be used ends the run with its message (it names the file).
CHECKPOINT_ERRORS = (
    CheckpointFileError,
    DatasetMismatchError,
    IncompatibleCheckpointError,
    VocabularyMismatchError,
)


def argument_parser():
    parser = default_argument_parser()
    # detectron2's default URL is one fixed port per user, so two runs on a machine collided;
    # "auto": one machine meets through a new file (aamn.engine.launch), several need a URL.
    parser.set_defaults(dist_url="auto")
    parser.add_argument(
        "--results-json",
        default="",
        help="also write the final evaluation's metrics to this JSON file",
    )
    return parser


def main(args):
    # A log file that cannot be written (a full disk) drops its records instead of printing a
    # traceback for each of them: the error that ends the run stays readable.
    logging.raiseExceptions = False
    try:
        return run(args)
    except (ConfigError, *CHECKPOINT_ERRORS) as e:
        raise SystemExit(f"error: {e}") from None


def run(args):
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    cfg = setup_cfg(args)
    if args.eval_only:
        checkpointer = StreamCheckpointer(
            Trainer.build_model(cfg), save_dir=cfg.OUTPUT_DIR, strict=True
        )
        if not (args.resume and checkpointer.has_checkpoint()):
            try:  # evaluating a model that starts from nothing is never what is meant
                check_weights(cfg, "the checkpoint to evaluate (--eval-only)")
            except FileNotFoundError as e:
                raise SystemExit(f"error: {e}") from None
        extra = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        # A synthetic test set of another size or seed than the model was trained beside: refused.
        check_evaluation_data(
            extra.get(TRAINING_DATA_KEY), cfg.DATASETS.TEST, cfg.MODEL.WEIGHTS or cfg.OUTPUT_DIR
        )
        model = checkpointer.model
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
            if args.results_json:
                write_json_atomic(args.results_json, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()
    # Training ends with an evaluation on DATASETS.TEST (detectron2's EvalHook); train() returns it
    # only when TEST.EXPECTED_RESULTS is set, the trainer keeps it in any case.
    res = res or getattr(trainer, "_last_eval_results", None)
    if comm.is_main_process() and args.results_json and res:
        write_json_atomic(args.results_json, res)
    return res


def cli(argv=None):
    """The command line: a bad config, a process count no run can use or a batch that does not
    split over the processes ends here, once, before any process starts."""
    args = argument_parser().parse_args(argv)
    check_launch(args)
    launch_from_args(main, args, (args,))
    return 0


def check_launch(args) -> None:
    """``SystemExit`` naming the option or key: ``--num-gpus`` / ``--num-machines`` below 1, a
    ``--machine-rank`` outside them, a config that cannot be read, or ``SOLVER.IMS_PER_BATCH``
    that the run's processes cannot share equally (detectron2 would assert deep inside)."""
    for flag, value in (("--num-gpus", args.num_gpus), ("--num-machines", args.num_machines)):
        if value < 1:
            raise SystemExit(f"error: {flag} must be at least 1 (processes on CPU), got {value}")
    if not 0 <= args.machine_rank < args.num_machines:
        raise SystemExit(
            f"error: --machine-rank must be in [0, {args.num_machines}), got {args.machine_rank}"
        )
    try:
        cfg = get_aamn_cfg(args.config_file, args.opts)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    world = args.num_gpus * args.num_machines
    if not args.eval_only and cfg.SOLVER.IMS_PER_BATCH % world:
        raise SystemExit(
            f"error: SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} cannot be split over {world} "
            f"processes (--num-gpus {args.num_gpus} x --num-machines {args.num_machines}); "
            "give a multiple of the process count"
        )


if __name__ == "__main__":
    sys.exit(run_tool(cli))
