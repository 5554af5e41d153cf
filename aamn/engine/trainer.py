"""One trainer for every model of the project: the referring-video models and the proposal detector.

Nothing here depends on which meta-architecture is trained:

* the data mapper of a loader comes from ``INPUT.DATASET_MAPPER_NAME`` or from the data sets'
  metadata (``aamn.data.dataset_mappers.build_dataset_mapper``: clips for ``evaluator_type
  "rvos"``, single frames otherwise);
* the evaluator from the data set's ``evaluator_type`` (``"rvos"``: ``ReferringVideoEvaluator``,
  run by ``inference_on_rvos_dataset``, which also logs ms per clip-query and frames per second;
  ``"coco"``: detectron2's ``COCOEvaluator``);
* checkpoints are written and read by ``StreamCheckpointer`` (Flow stream from RGB weights, the
  vocabulary inside the checkpoint; a model without them is saved as by detectron2).

``tools/train_net.py`` is this module's command line.
"""

import hashlib
import json
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict

import torch

import detectron2.utils.comm as comm
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    default_setup,
    hooks,
)
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    print_csv_format,
    verify_results,
)
from detectron2.utils.events import EventStorage
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..config import ConfigError, check_device, check_weights, get_aamn_cfg
from ..data.dataset_mappers import build_dataset_mapper
from ..data.datasets.builtin import check_registered
from ..data.datasets.common import REFERRING_TYPES
from ..data.datasets.provenance import TRAINING_DATA_KEY, training_data
from ..data.proposals import proposal_file_detector
from ..evaluation import JFEvaluator, ReferringVideoEvaluator, inference_on_rvos_dataset
from ..evaluation.inference import check_queries
from ..modeling import StreamCheckpointer
from ..modeling.checkpoint import resume_candidates
from ..modeling.shared_detector import check_proposal_detector
from ..modeling.vocabulary import model_vocabulary, resolve_vocabulary
from ..utils.io import load_plain_pth, write_json_atomic
from .learning_curve import LearningCurveHook
from .proposal_detector import PROPOSAL_DETECTOR_KEY

__all__ = [
    "Trainer",
    "build_optimizer",
    "check_resume_solver",
    "claim_output_dir",
    "setup_cfg",
    "write_json_atomic",
]

logger = logging.getLogger("aamn.engine")


def build_optimizer(cfg, model, fused=True):
    """detectron2's SGD, or AdamW (``SOLVER.OPTIMIZER``) with the same parameter groups; ``fused``:
    AdamW's fused kernel (else its loop over the parameters; tools/benchmark_training.py compares
    them)."""
    if cfg.SOLVER.OPTIMIZER == "SGD":
        return DefaultTrainer.build_optimizer(cfg, model)
    if cfg.SOLVER.OPTIMIZER != "AdamW":
        raise ConfigError(
            f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {cfg.SOLVER.OPTIMIZER!r}"
        )
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    # The fused kernel (CPU and CUDA): AdamW's update up to float rounding, in fewer passes over
    # the parameters (tools/benchmark_training.py measures it).
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, fused=fused
    )


def _evaluator_type(cfg, dataset_name):
    meta = MetadataCatalog.get(dataset_name)
    return meta.get("evaluator_type", "rvos" if cfg.INPUT.DATASET_MAPPER_NAME == "clip" else "coco")


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the project's mappers, evaluators, optimizer and checkpointer."""

    def __init__(self, cfg):
        """detectron2's ``DefaultTrainer.__init__`` with two differences: several processes on CPU
        wrap the model in a CPU ``DistributedDataParallel`` (gloo; detectron2 v0.6 would pass a GPU
        id), and checkpoints are ``StreamCheckpointer``'s (vocabulary, Flow stream, atomic
        writes, strict resume)."""
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        detector = training_proposal_detector(cfg)
        if cfg.MODEL.AAMN.SHARED_DETECTOR.ENABLED:  # the model holds the files' detector: checked
            check_proposal_detector(cfg, detector)  # before anything is built
        model = self.build_model(cfg)  # the vocabulary resolved first (a no-op after setup_cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_gpu = next(model.parameters()).device.type == "cuda"
        model = create_ddp_model(
            model, broadcast_buffers=False, **({} if on_gpu else {"device_ids": None})
        )
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = StreamCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.checkpointer.extra_data = {
            TRAINING_DATA_KEY: training_data(cfg.DATASETS.TRAIN),
            SOLVER_KEY: solver_record(cfg),
        }
        if detector is not None:  # the model needs it at inference: the checkpoint names it
            self.checkpointer.extra_data[PROPOSAL_DETECTOR_KEY] = detector
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's hooks, its ``EvalHook`` replaced by ``LearningCurveHook`` (the same
        evaluations, plus ``compute.json``, ``learning_curve.json`` and the stop of a converged
        curve: ``TEST.CURVE``); with several processes, first a hook that averages the floating
        buffers (BatchNorm running statistics) across them after every step, so the checkpoints
        and evaluations see one model (DDP averages gradients, not buffers)."""
        ret = super().build_hooks()
        for i, hook in enumerate(ret):
            if type(hook) is hooks.EvalHook:
                curve = self.cfg.TEST.CURVE
                ret[i] = self.curve_hook = LearningCurveHook(
                    self.cfg.TEST.EVAL_PERIOD,
                    hook._func,
                    self.cfg.OUTPUT_DIR,
                    metric=curve.METRIC,
                    min_gain=curve.STOP_MIN_GAIN,
                    patience=curve.STOP_PATIENCE,
                    decay_factor=curve.DECAY_FACTOR,
                    decay_periods=curve.DECAY_PERIODS,
                    checkpoint_period=self.cfg.SOLVER.CHECKPOINT_PERIOD,
                )
        averaging = buffer_averaging_hook()
        if averaging is not None:
            ret.insert(0, averaging)
        return ret

    def train(self):
        """detectron2's training loop (``TrainerBase.train``), which also ends once the learning
        curve has converged (``TEST.CURVE.STOP_PATIENCE``; the model is then saved as
        ``model_final`` at the iteration reached), and which saves ``model_final`` of a training
        resumed at its ``SOLVER.MAX_ITER`` that has none (a run stopped after a checkpoint is
        finished this way, its last evaluation not repeated); with several processes it ends by
        checking that every rank holds the same weights (``same_weights_on_every_rank``)."""
        logger.info("Starting training from iteration {}".format(self.start_iter))
        self.iter = self.start_iter
        with EventStorage(self.start_iter) as self.storage:
            try:
                self.before_train()
                # an evaluation a kill interrupted, run at the resume, may end the curve at once
                end = self.start_iter if self.curve_hook.stop_requested else self.max_iter
                for self.iter in range(self.start_iter, end):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    if self.curve_hook.stop_requested:
                        if comm.is_main_process():
                            self.checkpointer.save("model_final", iteration=self.iter)
                        break
                # the iterations run (after_train tells an ended training by it)
                self.iter = self.iter + 1 if end > self.start_iter else self.start_iter
                final = os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")
                if end <= self.start_iter and (
                    self.curve_hook.stop_requested or not os.path.exists(final)
                ):
                    # no step ran: resumed at its end (a run stopped after a checkpoint,
                    # SOLVER.MAX_ITER set to that iteration), or ended by the evaluation run at the
                    # resume; the checkpoint resumed from becomes model_final
                    if comm.is_main_process():
                        self.iter = self.start_iter - 1  # as saved: a resume starts after it
                        self.checkpointer.save("model_final", iteration=self.iter)
                        self.iter = self.start_iter
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()
        results = getattr(self, "_last_eval_results", None)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            verify_results(self.cfg, results)
        if comm.get_world_size() > 1:
            same_weights_on_every_rank(self.model)
        return results

    @classmethod
    def build_model(cls, cfg):
        """detectron2's ``build_model`` of ``cfg`` (its vocabulary resolved first, in place:
        ``resolve_vocabulary``), logged through the project's logger."""
        resolve_vocabulary(cfg, build=True)
        model = build_model(cfg)
        logger.info("Model:\n{}".format(model))
        if cfg.MODEL.COMPILE_BACKBONES:
            from ..modeling.compile import compile_backbones

            logger.info(f"torch.compile: {compile_backbones(model)}")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        for name in cfg.DATASETS.TRAIN:
            if not DatasetCatalog.get(name):
                raise ConfigError(f"DATASETS.TRAIN names {name}, which has no sample to train on")
            if _evaluator_type(cfg, name) in REFERRING_TYPES:
                check_queries(DatasetCatalog.get(name), name, None, cfg.INPUT.QUERY_MAX_LENGTH)
        return build_detection_train_loader(
            cfg, mapper=build_dataset_mapper(cfg, cfg.DATASETS.TRAIN, True)
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        mapper = build_dataset_mapper(cfg, [dataset_name], False)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = _evaluator_type(cfg, dataset_name)
        if evaluator_type == "rvos":  # the papers' metrics and the DAVIS protocol's J&F
            return DatasetEvaluators(
                [
                    ReferringVideoEvaluator(
                        dataset_name,
                        distributed=True,
                        output_dir=output_folder,
                        save_per_sample=cfg.TEST.RVOS.SAVE_PER_SAMPLE,
                    ),
                    JFEvaluator(dataset_name, distributed=True),
                ]
            )
        if evaluator_type == "jf":  # every frame of every expression: the DAVIS protocol alone
            return JFEvaluator(dataset_name, distributed=True)
        if evaluator_type == "none":
            raise ValueError(
                f"{dataset_name} has no masks (inference only: tools/infer.py writes its "
                "submission); DATASETS.TEST needs a data set with masks"
            )
        if evaluator_type == "coco":
            # The fast C++ COCO evaluator is not available in the CPU fallback build of detectron2.
            return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
        raise NotImplementedError(
            f"no evaluator for evaluator_type {evaluator_type!r} of data set {dataset_name!r}"
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every ``DATASETS.TEST`` entry; referring-video data sets also log ms per
        clip-query and frames per second."""
        if not any(_evaluator_type(cfg, d) in REFERRING_TYPES for d in cfg.DATASETS.TEST):
            return super().test(cfg, model, evaluators)
        results = OrderedDict()
        vocabulary = model_vocabulary(getattr(model, "module", model))
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            records = DatasetCatalog.get(dataset_name)
            if not records:
                raise ConfigError(
                    f"DATASETS.TEST names {dataset_name}, which has no sample to evaluate (its "
                    "split lists no video with an annotated frame and a query)"
                )
            check_queries(records, dataset_name, vocabulary, cfg.INPUT.QUERY_MAX_LENGTH)
            loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = (
                evaluators[idx]
                if evaluators is not None
                else cls.build_evaluator(cfg, dataset_name)
            )
            results_i = inference_on_rvos_dataset(model, loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                logger.info(f"Evaluation results for {dataset_name} in csv format:")
                print_csv_format(results_i)
        if len(results) == 1:
            results = list(results.values())[0]
        return results


def training_proposal_detector(cfg):
    """The detector that made the proposals of the training data (the ``"detector"`` record of
    their proposal files, ``datasets/prepare_proposals.py``), or None (a model that reads no
    proposals, or files that name none).  Files naming different detectors: the first, with a
    warning."""
    if not cfg.INPUT.CLIP.LOAD_PROPOSALS:
        return None
    files = list(cfg.DATASETS.PROPOSAL_FILES_TRAIN) or [
        MetadataCatalog.get(name).get("proposal_file", None) for name in cfg.DATASETS.TRAIN
    ]
    records = [proposal_file_detector(f) for f in files if f and os.path.isfile(f)]
    records = [r for r in records if r is not None]
    if not records:
        return None
    if any(r["sha256"] != records[0]["sha256"] for r in records[1:]):
        logger.warning(
            "The training proposal files were made by different detectors; the checkpoint "
            "names the first (%s)",
            records[0]["weights"],
        )
    return records[0]


def buffer_averaging_hook():
    """With several processes, a hook that averages the model's floating buffers across them
    after every step (``average_buffers``); None in a one-process run."""
    if comm.get_world_size() <= 1:
        return None
    return hooks.CallbackHook(after_step=lambda trainer: average_buffers(trainer.model))


@torch.no_grad()
def average_buffers(model) -> None:
    """All-reduce mean of every floating-point buffer of ``model`` across the processes."""
    world = comm.get_world_size()
    for buf in getattr(model, "module", model).buffers():
        if buf.is_floating_point():
            torch.distributed.all_reduce(buf)
            buf.div_(world)


def same_weights_on_every_rank(model) -> str:
    """SHA-1 of the model's state dict (parameters and buffers, in key order), compared across
    the processes of a distributed run.  Returns the digest; raises ``RuntimeError`` naming the
    ranks whose weights differ (a run whose ranks diverged has no single trained model)."""
    per_key = {
        key: hashlib.sha1(
            value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
        ).hexdigest()
        for key, value in getattr(model, "module", model).state_dict().items()
    }
    digest = hashlib.sha1(json.dumps(sorted(per_key.items())).encode("utf-8")).hexdigest()
    gathered = comm.all_gather(per_key)
    differ = sorted(k for k in per_key if len({g.get(k) for g in gathered}) > 1)
    if differ:
        raise RuntimeError(
            f"The {len(gathered)} processes of this distributed run ended with different weights "
            f"in {len(differ)} tensors, e.g. {', '.join(differ[:5])}"
        )
    logger.info("Weights identical on %d processes (sha1 %s)", len(gathered), digest)
    return digest


def resumed_checkpoint(output_dir: str):
    """``(path, dict)`` of the checkpoint a ``--resume`` run in ``output_dir`` starts from (the
    newest intact one of ``resume_candidates``, read memory-mapped with ``weights_only``), or None
    when there is none (no ``last_checkpoint``, or no file that reads)."""
    if not os.path.isfile(os.path.join(output_dir, "last_checkpoint")):
        return None
    for path in resume_candidates(output_dir):
        if not (path.endswith(".pth") and os.path.isfile(path)):
            continue
        try:
            data = load_plain_pth(path)
        except Exception:  # noqa: BLE001 - unreadable: StreamCheckpointer.resume_or_load reports it
            continue
        if isinstance(data, dict):
            return path, data
    return None


# The SOLVER keys whose values a resumed run takes from the checkpoint (the optimizer's parameter
# groups and the scheduler's base learning rates), not from the config.
RESUMED_SOLVER_KEYS = (
    "OPTIMIZER",
    "BASE_LR",
    "MOMENTUM",
    "NESTEROV",
    "WEIGHT_DECAY",
    "WEIGHT_DECAY_NORM",
    "WEIGHT_DECAY_BIAS",
    "BIAS_LR_FACTOR",
)
SOLVER_KEY = "solver"


def solver_record(cfg) -> Dict:
    """``{key: value}`` of ``RESUMED_SOLVER_KEYS`` (what a checkpoint records)."""
    return {k: cfg.SOLVER.get(k) for k in RESUMED_SOLVER_KEYS}


def check_resume_solver(cfg, resumed) -> None:
    """Raise ``ConfigError`` when the config changes a solver setting that resuming from
    ``resumed`` (``resumed_checkpoint``) would silently keep (the optimizer state restores the old
    learning rate, weight decay, ...), naming the keys with both values."""
    if resumed is None or not isinstance(resumed[1].get(SOLVER_KEY), dict):
        return
    saved, now = resumed[1][SOLVER_KEY], solver_record(cfg)
    changed = [
        f"SOLVER.{k} {saved[k]!r} -> {now[k]!r}" for k in now if k in saved and saved[k] != now[k]
    ]
    if changed:
        raise ConfigError(
            f"--resume from {resumed[0]}: the config changes {', '.join(changed)}, but a resumed "
            "run keeps the optimizer state of the checkpoint, and with it the old values.  Set "
            "them back to resume, or train into a new OUTPUT_DIR (MODEL.WEIGHTS the checkpoint)"
        )


def setup_cfg(args):
    """The config of a ``tools/train_net.py`` command line, frozen, and detectron2's set-up, once
    the output folder is known to be usable (``claim_output_dir``) and a resume keeps what the
    config says (``check_resume_solver``).  A problem ends the run with ``SystemExit`` naming it,
    before anything in ``OUTPUT_DIR`` is written."""
    try:
        cfg = get_aamn_cfg(args.config_file, args.opts)
        check_device(cfg)
        eval_only = bool(getattr(args, "eval_only", False))
        check_registered("DATASETS.TEST", cfg.DATASETS.TEST)
        if not eval_only:
            check_registered("DATASETS.TRAIN", cfg.DATASETS.TRAIN)
        elif not args.resume:  # evaluating a model that starts from nothing is never meant
            check_weights(cfg, "the checkpoint to evaluate (--eval-only)")
        if comm.is_main_process():
            claim_output_dir(cfg.OUTPUT_DIR)
        resumed = resumed_checkpoint(cfg.OUTPUT_DIR) if args.resume else None
        if resumed is not None:
            check_resume_solver(cfg, resumed)
        # The vocabulary every model of this run is built with (a resumed model keeps its own;
        # built from data only to train).
        resolve_vocabulary(cfg, build=not eval_only, resumed=resumed)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyError as e:
        raise SystemExit(f"error: {e.args[0]}") from None
    cfg.freeze()
    default_setup(cfg, args)
    # The project's own messages (dropped rows, damaged files, weights checks) in log.txt too.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="aamn")
    return cfg


_held_locks = {}  # real path of an OUTPUT_DIR -> the open lock file of this process


def claim_output_dir(output_dir: str) -> None:
    """Make ``output_dir`` ready for a run of this process, or raise ``ConfigError`` naming it.

    * it must be a folder (created if missing);
    * it must hold no symbolic link: detectron2 appends to ``log.txt`` and ``metrics.json`` and
      rewrites ``config.yaml`` in place, which would write into whatever a link points at;
    * one run at a time: the folder is locked (``flock`` on ``OUTPUT_DIR/.lock``, held until the
      process ends); a second run into it stops, naming the process that holds it.
    """
    import fcntl

    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"OUTPUT_DIR {output_dir} is a file; it must name a folder")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"OUTPUT_DIR {output_dir} cannot be created: {e.strerror or e}") from None
    links = sorted(n for n in os.listdir(output_dir) if os.path.islink(os.path.join(output_dir, n)))
    if links:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} holds symbolic links ({', '.join(links)}); a run writes its "
            "files there and would write through them into other files: remove them"
        )
    key = os.path.realpath(output_dir)
    if key in _held_locks:
        return
    path = os.path.join(output_dir, ".lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise ConfigError(f"OUTPUT_DIR {output_dir} cannot be written: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} is in use by another run (process {holder}): two runs "
            "would interleave their checkpoints and metrics.  Wait for it, or choose another "
            "OUTPUT_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _held_locks[key] = fd
