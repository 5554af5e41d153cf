"""Inference over a test loader with the speed of referring video segmentation models.

``inference_on_rvos_dataset`` is detectron2's ``inference_on_dataset`` (same warm-up, same log
lines, same return value) plus the speed in the units of the papers: milliseconds per clip-query
and frames per second, model time only.
"""

import datetime
import logging
import time
from collections import OrderedDict, abc
from contextlib import ExitStack

import torch
from detectron2.evaluation import DatasetEvaluators, inference_context
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds
from torch import nn

__all__ = ["check_queries", "inference_on_rvos_dataset", "frames_segmented"]

logger = logging.getLogger(__name__)


def check_queries(records, dataset_name: str, vocabulary=None, max_length=None) -> int:
    """Check the queries of a data set's records before a run uses them.

    A record whose query has no word (empty, or punctuation only) raises ``ValueError`` naming
    the data set and the record, before anything runs (the data-set loaders already drop such
    rows with a warning; this guards data sets registered elsewhere).  With a ``vocabulary``
    (``aamn.data.text.Vocabulary``), queries whose every word is unknown to it are scored as
    ``<unk>`` tokens (the protocol scores every sample) with one warning naming how many and
    which.  With ``max_length`` (``INPUT.QUERY_MAX_LENGTH``), one warning counts the queries the
    models read cut to that many tokens.

    Returns:
        the number of queries with only unknown words.
    """
    from ..data.text import query_words, tokenize

    unknown, long = [], []
    for r in records:
        tokens = tokenize(r.get("query", ""))
        if max_length is not None and len(tokens) > max_length:
            long.append(r["query"])
        words = query_words(tokens)
        if not words:
            raise ValueError(
                f"Data set {dataset_name}: the query of {r.get('video_id', '?')} frame "
                f"{r.get('frame_idx', '?')} ({r.get('query', '')!r}) has no word"
            )
        if vocabulary is not None and not any(w in vocabulary for w in words):
            unknown.append(r["query"])
    if long:
        logger.warning(
            "Data set %s: %d of %d queries have more than %d tokens (INPUT.QUERY_MAX_LENGTH) and "
            "are read cut to that length, e.g. %r",
            dataset_name,
            len(long),
            len(records),
            max_length,
            long[0],
        )
    if unknown:
        logger.warning(
            "Data set %s: %d of %d queries have no word of the model's %d-word vocabulary and "
            "are scored as <unk> tokens, e.g. %s",
            dataset_name,
            len(unknown),
            len(records),
            len(vocabulary),
            ", ".join(repr(q) for q in sorted(set(unknown))[:3]),
        )
    return len(unknown)


def frames_segmented(output: dict) -> int:
    """How many frames one model output segments: ``len(output["clip_instances"])`` (AAMN segments
    every frame of its clip), else 1 (a model that predicts the key frame)."""
    return len(output.get("clip_instances", ())) or 1


def inference_on_rvos_dataset(model, data_loader, evaluator):
    """Run ``model`` on every batch of ``data_loader`` and evaluate with ``evaluator``.

    As detectron2's ``inference_on_dataset``: the model runs in eval mode under ``no_grad``; the
    first ``min(5, len(data_loader) - 1)`` iterations are warm-up and left out of the timings.
    The speed counts model time only (the ``model(inputs)`` call, CUDA synchronised; data loading
    and ``evaluator.process`` excluded), on this process:

    - ``ms_per_clip_query``: model time / number of (clip, query) inputs, in milliseconds;
    - ``frames_per_second``: Σ T over those inputs / model time, T = ``frames_segmented`` of each
      input (a clip of 2L + 1 frames segments all its frames, so a clip counts T frames).

    Args:
        model: a callable taking a list of mapper dicts (an ``nn.Module`` is put in eval mode).
        data_loader: an iterable with a length (inference loaders have one).
        evaluator: a ``DatasetEvaluator``, a list of them, or None (benchmark only).
    Returns:
        the evaluator's results (``{}`` where it returns None), to which the main process adds
        ``"speed": {"ms_per_clip_query": float, "frames_per_second": float}``.
    """
    num_devices = comm.get_world_size()
    total = len(data_loader)
    logger.info("Start inference on {} batches".format(total))
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    if isinstance(evaluator, abc.MutableSequence):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()

    num_warmup = max(min(5, total - 1), 0)
    start_time = time.perf_counter()
    total_data_time = total_compute_time = total_eval_time = 0.0
    num_inputs = num_frames = 0
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())

        start_data_time = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            total_data_time += time.perf_counter() - start_data_time
            if idx == num_warmup:
                start_time = time.perf_counter()
                total_data_time = total_compute_time = total_eval_time = 0.0
                num_inputs = num_frames = 0

            start_compute_time = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total_compute_time += time.perf_counter() - start_compute_time
            num_inputs += len(inputs)
            num_frames += sum(frames_segmented(out) for out in outputs)

            start_eval_time = time.perf_counter()
            evaluator.process(inputs, outputs)
            total_eval_time += time.perf_counter() - start_eval_time

            iters = idx + 1 - num_warmup * int(idx >= num_warmup)
            if idx >= num_warmup * 2 or total_compute_time / iters > 5:
                total_seconds_per_iter = (time.perf_counter() - start_time) / iters
                eta = datetime.timedelta(seconds=int(total_seconds_per_iter * (total - idx - 1)))
                log_every_n_seconds(
                    logging.INFO,
                    "Inference done {}/{}. Dataloading: {:.4f} s/iter. Inference: {:.4f} s/iter. "
                    "Eval: {:.4f} s/iter. Total: {:.4f} s/iter. ETA={}".format(
                        idx + 1,
                        total,
                        total_data_time / iters,
                        total_compute_time / iters,
                        total_eval_time / iters,
                        total_seconds_per_iter,
                        eta,
                    ),
                    n=5,
                )
            start_data_time = time.perf_counter()

    timed_iters = max(total - num_warmup, 1)
    total_time = time.perf_counter() - start_time
    # NOTE: the same two lines as detectron2's inference_on_dataset (parsed by grep).
    logger.info(
        "Total inference time: {} ({:.6f} s / iter per device, on {} devices)".format(
            str(datetime.timedelta(seconds=total_time)), total_time / timed_iters, num_devices
        )
    )
    logger.info(
        "Total inference pure compute time: {} ({:.6f} s / iter per device, on {} devices)".format(
            str(datetime.timedelta(seconds=int(total_compute_time))),
            total_compute_time / timed_iters,
            num_devices,
        )
    )
    speed = OrderedDict(
        ms_per_clip_query=1000.0 * total_compute_time / num_inputs if num_inputs else float("nan"),
        frames_per_second=num_frames / total_compute_time
        if total_compute_time > 0
        else float("nan"),
    )
    logger.info(
        "Inference speed (model time only, per device, {} clip-queries / {} frames after {} "
        "warm-up iterations): {:.2f} ms per clip-query, {:.2f} frames per second".format(
            num_inputs,
            num_frames,
            num_warmup,
            speed["ms_per_clip_query"],
            speed["frames_per_second"],
        )
    )

    results = evaluator.evaluate()
    if results is None:
        results = {}
    if comm.is_main_process():
        results = OrderedDict(results)
        results["speed"] = dict(speed)
    return results
