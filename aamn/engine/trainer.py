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
from detectron2.evaluation import COCOEvaluator, print_csv_format
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..config import ConfigError, get_aamn_cfg
from ..data.dataset_mappers import build_dataset_mapper
from ..evaluation import ReferringVideoEvaluator, inference_on_rvos_dataset
from ..evaluation.inference import check_queries
from ..layers import use_separable_roi_align
from ..modeling import StreamCheckpointer
from ..modeling.checkpoint import model_vocabulary, resume_candidates
from ..modeling.language import checkpoint_vocabulary
from ..modeling.rpn import use_prefix_nms
from ..utils.io import atomic_path

__all__ = [
    "Trainer",
    "build_optimizer",
    "build_train_model",
    "resume_vocabulary",
    "setup_cfg",
    "write_json_atomic",
]

logger = logging.getLogger("aamn.engine")


def build_optimizer(cfg, model, fused=True):
    """detectron2's SGD, or AdamW (``SOLVER.OPTIMIZER``) with the same parameter groups; ``fused``:
    AdamW's fused kernel (else its loop over parameters, as before: tools/benchmark_training.py)."""
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
    # the parameters; the training step 4-5 % shorter on 2 cores (tools/benchmark_training.py).
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, fused=fused
    )


def build_train_model(cfg):
    """detectron2's ``build_model``, its RoIAligns training through the separable kernel on CPU
    (``MODEL.SEPARABLE_ROI_ALIGN``, ``aamn.layers.roi_align``) and its RPN's NMS run on a prefix
    first (``MODEL.RPN.NMS_ON_PREFIX``, ``aamn.modeling.rpn``): the model as the trainer runs it."""
    model = build_model(cfg)
    if cfg.MODEL.SEPARABLE_ROI_ALIGN:
        use_separable_roi_align(model)
    if cfg.MODEL.RPN.NMS_ON_PREFIX:
        use_prefix_nms(model)
    return model


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
        model = self.build_model(cfg)
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
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's hooks; with several processes, first a hook that averages the floating
        buffers (BatchNorm running statistics) across them after every step, so the checkpoints
        and evaluations see one model (DDP averages gradients, not buffers)."""
        ret = super().build_hooks()
        if comm.get_world_size() > 1:
            ret.insert(
                0, hooks.CallbackHook(after_step=lambda trainer: average_buffers(trainer.model))
            )
        return ret

    def train(self):
        """detectron2's training loop; with several processes it ends by checking that every rank
        holds the same weights (``same_weights_on_every_rank``)."""
        results = super().train()
        if comm.get_world_size() > 1:
            same_weights_on_every_rank(self.model)
        return results

    @classmethod
    def build_model(cls, cfg):
        """``build_train_model``, logged as detectron2's trainer does."""
        model = build_train_model(cfg)
        logger.info("Model:\n{}".format(model))
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        for name in cfg.DATASETS.TRAIN:
            if _evaluator_type(cfg, name) == "rvos":
                check_queries(DatasetCatalog.get(name), name)
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
        if evaluator_type == "rvos":
            return ReferringVideoEvaluator(
                dataset_name,
                distributed=True,
                output_dir=output_folder,
                save_per_sample=cfg.TEST.RVOS.SAVE_PER_SAMPLE,
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
        if not any(_evaluator_type(cfg, d) == "rvos" for d in cfg.DATASETS.TEST):
            return super().test(cfg, model, evaluators)
        results = OrderedDict()
        vocabulary = model_vocabulary(getattr(model, "module", model))
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            check_queries(DatasetCatalog.get(dataset_name), dataset_name, vocabulary)
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


def resume_vocabulary(cfg) -> None:
    """Resuming: a model must be rebuilt with the vocabulary of the checkpoint it resumes from.

    When ``MODEL.LANGUAGE.VOCAB_FILE`` is empty and ``OUTPUT_DIR/last_checkpoint`` names a
    checkpoint that carries a vocabulary, point ``VOCAB_FILE`` at it (else at
    ``OUTPUT_DIR/vocab.json``,
    written by earlier versions).  Without a checkpoint to resume from nothing changes.
    """
    if "LANGUAGE" not in cfg.MODEL or cfg.MODEL.LANGUAGE.VOCAB_FILE:
        return
    if not os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    for path in resume_candidates(cfg.OUTPUT_DIR):  # the one resumed from: the newest intact
        try:
            vocab = checkpoint_vocabulary(path)
        except ValueError:  # unreadable: StreamCheckpointer.resume_or_load reports it
            continue
        if vocab is not None:
            cfg.MODEL.LANGUAGE.VOCAB_FILE = path
            return
        break
    if os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "vocab.json")):
        cfg.MODEL.LANGUAGE.VOCAB_FILE = os.path.join(cfg.OUTPUT_DIR, "vocab.json")


def setup_cfg(args):
    """The config of a ``tools/train_net.py`` command line, frozen, and detectron2's set-up."""
    try:
        cfg = get_aamn_cfg(args.config_file, args.opts)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE.startswith("cuda"):
        cfg.MODEL.DEVICE = "cpu"
    if args.resume:
        resume_vocabulary(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    # The project's own messages (dropped rows, damaged files, weights checks) in log.txt too.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="aamn")
    return cfg


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
