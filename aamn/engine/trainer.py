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
from detectron2.engine import DefaultTrainer, default_setup, hooks
from detectron2.evaluation import COCOEvaluator, print_csv_format
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..config import ConfigError, get_aamn_cfg
from ..data.dataset_mappers import build_dataset_mapper
from ..evaluation import ReferringVideoEvaluator, inference_on_rvos_dataset
from ..evaluation.inference import check_queries
from ..modeling import StreamCheckpointer
from ..modeling.checkpoint import model_vocabulary
from ..modeling.language import checkpoint_vocabulary
from ..utils.io import atomic_path

__all__ = ["Trainer", "build_optimizer", "resume_vocabulary", "setup_cfg", "write_json_atomic"]

logger = logging.getLogger("aamn.engine")


def build_optimizer(cfg, model):
    """detectron2's SGD, or AdamW (``SOLVER.OPTIMIZER``) with the same parameter groups."""
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
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )


def _evaluator_type(cfg, dataset_name):
    meta = MetadataCatalog.get(dataset_name)
    return meta.get("evaluator_type", "rvos" if cfg.INPUT.DATASET_MAPPER_NAME == "clip" else "coco")


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the project's mappers, evaluators, optimizer and checkpointer."""

    def __init__(self, cfg):
        super().__init__(cfg)
        # Same saving as detectron2's plus the vocabulary; loading also fills the Flow stream.
        self.checkpointer = StreamCheckpointer(
            self._trainer.model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        for hook in self._hooks:
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer

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


def resume_vocabulary(cfg) -> None:
    """Resuming: a model must be rebuilt with the vocabulary of the checkpoint it resumes from.

    When ``MODEL.LANGUAGE.VOCAB_FILE`` is empty and ``OUTPUT_DIR/last_checkpoint`` names a
    checkpoint that carries a vocabulary, point ``VOCAB_FILE`` at it (else at
    ``OUTPUT_DIR/vocab.json``,
    written by earlier versions).  Without a checkpoint to resume from nothing changes.
    """
    if "LANGUAGE" not in cfg.MODEL or cfg.MODEL.LANGUAGE.VOCAB_FILE:
        return
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if not os.path.isfile(last):
        return
    with open(last) as f:
        path = os.path.join(cfg.OUTPUT_DIR, f.read().strip())
    if checkpoint_vocabulary(path) is not None:
        cfg.MODEL.LANGUAGE.VOCAB_FILE = path
    elif os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "vocab.json")):
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
    return cfg


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
