#!/usr/bin/env python
"""Train and evaluate AAMN, or the external detector that makes its proposals.

The detectron2 way::

    python tools/train_net.py --config-file configs/synthetic/aamn.yaml
    python tools/train_net.py --config-file configs/synthetic/aamn.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file configs/synthetic/detector.yaml      # the proposal detector

One trainer serves both: ``MODEL.META_ARCHITECTURE: AAMN`` reads clips (``ClipDatasetMapper``) and
evaluates with the referring-video evaluator; any other architecture (the Faster R-CNN detector)
reads the annotated frames of the ``*_frames`` data sets (``VideoFrameDatasetMapper``) and is
evaluated with COCO box AP.
"""
import json
import logging
import os
import weakref
from collections import OrderedDict

import torch

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, print_csv_format, verify_results

import aamn  # noqa: F401  (registers the project's components)
from aamn.config import ConfigError, get_aamn_cfg
from aamn.data.dataset_mappers import ClipDatasetMapper, VideoFrameDatasetMapper
from aamn.evaluation import ReferringVideoEvaluator, inference_on_rvos_dataset
from aamn.modeling import AAMNCheckpointer
from aamn.utils.io import atomic_path

logger = logging.getLogger("aamn.train_net")


def is_aamn(cfg):
    return cfg.MODEL.META_ARCHITECTURE == "AAMN"


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the project's mappers and evaluators."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if is_aamn(cfg):
            # Same saving as detectron2's; loading also fills the Flow stream from MODEL.WEIGHTS.
            # (The periodic-checkpoint hook keeps the default checkpointer: saving is identical.)
            self.checkpointer = AAMNCheckpointer(self._trainer.model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD, or AdamW (``SOLVER.OPTIMIZER``) with the same parameter groups."""
        if cfg.SOLVER.OPTIMIZER == "SGD":
            return super().build_optimizer(cfg, model)
        if cfg.SOLVER.OPTIMIZER != "AdamW":
            raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {cfg.SOLVER.OPTIMIZER!r}")
        params = get_default_optimizer_params(
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = ClipDatasetMapper(cfg, is_train=True) if is_aamn(cfg) else VideoFrameDatasetMapper(cfg, is_train=True)
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        mapper = ClipDatasetMapper(cfg, is_train=False) if is_aamn(cfg) else VideoFrameDatasetMapper(cfg, is_train=False)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "rvos" if is_aamn(cfg) else "coco")
        if evaluator_type == "rvos":
            return ReferringVideoEvaluator(dataset_name, distributed=True, output_dir=output_folder,
                                           save_per_sample=cfg.TEST.RVOS.SAVE_PER_SAMPLE)
        if evaluator_type == "coco":
            # The fast C++ COCO evaluator is not available in the CPU fallback build of detectron2.
            return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
        raise NotImplementedError(f"no evaluator for evaluator_type {evaluator_type!r} of data set {dataset_name!r}")

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every ``DATASETS.TEST`` entry; AAMN also logs ms per clip-query and frames/s."""
        if not is_aamn(cfg):
            return super().test(cfg, model, evaluators)
        results = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, dataset_name)
            results_i = inference_on_rvos_dataset(model, loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                logger.info(f"Evaluation results for {dataset_name} in csv format:")
                print_csv_format(results_i)
        if len(results) == 1:
            results = list(results.values())[0]
        return results


def setup(args):
    try:
        cfg = get_aamn_cfg(args.config_file, args.opts)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE.startswith("cuda"):
        cfg.MODEL.DEVICE = "cpu"
    resolve_vocabulary(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def resolve_vocabulary(cfg):
    """Evaluation must use the vocabulary the model was trained with.

    When ``MODEL.LANGUAGE.VOCAB_FILE`` is empty, training writes ``OUTPUT_DIR/vocab.json``; a later
    run (``--eval-only``, resume) reads the one next to ``MODEL.WEIGHTS`` or in ``OUTPUT_DIR``.
    """
    if not is_aamn(cfg) or cfg.MODEL.LANGUAGE.VOCAB_FILE:
        return
    candidates = []
    if cfg.MODEL.WEIGHTS and os.path.isfile(cfg.MODEL.WEIGHTS):
        candidates.append(os.path.join(os.path.dirname(cfg.MODEL.WEIGHTS), "vocab.json"))
    candidates.append(os.path.join(cfg.OUTPUT_DIR, "vocab.json"))
    for path in candidates:
        if os.path.isfile(path):
            cfg.MODEL.LANGUAGE.VOCAB_FILE = path
            return


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument("--results-json", default="", help="also write the final evaluation's metrics to this JSON file")
    return parser


def main(args):
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = AAMNCheckpointer if is_aamn(cfg) else DetectionCheckpointer
        checkpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
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


if __name__ == "__main__":
    args = argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
