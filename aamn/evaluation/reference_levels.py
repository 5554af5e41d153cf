"""Reference levels of the single-frame protocol on a data set: what answers that use no language,
or that know the answer among a model's candidates, score.

``random_actor``
    the ground-truth mask of an actor chosen uniformly among the actors annotated in the sample's
    frame: the expected P@t (the fraction of the frame's actors whose mask has IoU >= t with the
    referred actor's) and the expected IoU, averaged over the samples.
``union_of_actors``
    the union of the masks of every actor annotated in the frame, scored like a prediction
    (P@t, mAP, overall and mean IoU).
``best_tube``
    AAMN given the answer among its own candidates: of the K tubes it links from the proposals,
    the one whose key-frame box overlaps the referred actor's box most is segmented by AAMN's mask
    head (its upper bound given the proposals).  Needs a trained AAMN (:func:`best_tube_level`).

A system whose accuracy sits near ``random_actor`` or ``union_of_actors`` has not learnt to use
the sentence; ``query_swap`` of :class:`ReferringVideoEvaluator` measures that directly.
"""

import contextlib
import types
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import torch

from .metrics import PRECISION_THRESHOLDS, summarize_ious

__all__ = ["actor_reference_levels", "best_tube_level", "oracle_tube_selection"]


def _rle(segm, height, width):
    from .rvos_evaluation import _segmentation_to_rle

    return _segmentation_to_rle(segm, height, width)


def actor_reference_levels(records: List[Dict]) -> Dict[str, Dict[str, float]]:
    """``{"random_actor": {"P@0.5", ..., "mean_IoU"}, "union_of_actors": {...}}`` (percent) over
    records of the record contract (the module docstring)."""
    expected = {t: 0.0 for t in PRECISION_THRESHOLDS}
    expected_iou = 0.0
    inters, unions = [], []
    for r in records:
        h, w = int(r["height"]), int(r["width"])
        anns = [a for a in r["annotations"] if "segmentation" in a]
        rles = [_rle(a["segmentation"], h, w) for a in anns]
        (target,) = [
            rle for a, rle in zip(anns, rles) if int(a["instance_id"]) == int(r["instance_id"])
        ]
        ious = mask_util.iou(rles, [target], [False])[:, 0]  # (actors,)
        for t in PRECISION_THRESHOLDS:
            expected[t] += float(np.mean(ious >= t / 100.0))  # t: integer percent
        expected_iou += float(np.mean(ious))
        union = mask_util.merge(rles, intersect=False)
        target_mask = mask_util.decode(target).astype(bool)
        union_mask = mask_util.decode(union).astype(bool)
        inters.append(float((target_mask & union_mask).sum()))
        unions.append(float((target_mask | union_mask).sum()))
    n = max(len(records), 1)
    random_actor = {f"P@{t / 100.0:g}": 100.0 * v / n for t, v in expected.items()}
    random_actor["mean_IoU"] = 100.0 * expected_iou / n
    return {"random_actor": random_actor, "union_of_actors": dict(summarize_ious(inters, unions))}


@contextlib.contextmanager
def oracle_tube_selection(model):
    """Within the block, an AAMN ``model`` selects for each input the tube whose key-frame box
    (the clip's middle frame) has the highest IoU with the input's ``oracle_box`` (XYXY at the
    original frame size) instead of its best-scored tube."""
    from detectron2.structures import Boxes, pairwise_iou

    from aamn.modeling.meta_arch.aamn import input_box

    def select(self, batched_inputs, own, tube_boxes):
        key = tube_boxes.shape[2] // 2
        chosen = []
        for b, x in enumerate(batched_inputs):
            gt = input_box(x, x["oracle_box"], self.device)
            chosen.append(int(pairwise_iou(Boxes(tube_boxes[b, :, key]), Boxes(gt))[:, 0].argmax()))
        return torch.tensor(chosen, device=own.device)

    model.select_tubes = types.MethodType(select, model)
    try:
        yield model
    finally:
        del model.select_tubes


def best_tube_level(model, loader, dataset_name: str) -> Dict[str, float]:
    """The single-frame metrics of ``model`` (a trained AAMN) on ``dataset_name`` with the oracle
    tube selection (``best_tube``); ``loader``: the data set's test loader (batches of the
    mapper's dicts)."""
    from detectron2.data import DatasetCatalog

    from .inference import inference_on_rvos_dataset
    from .rvos_evaluation import ReferringVideoEvaluator

    boxes = {}
    for r in DatasetCatalog.get(dataset_name):
        (ann,) = [a for a in r["annotations"] if int(a["instance_id"]) == int(r["instance_id"])]
        boxes[r["image_id"]] = [float(v) for v in ann["bbox"]]

    class WithOracleBox:
        """The loader's batches, each input given its referred actor's box (``oracle_box``)."""

        def __len__(self):
            return len(loader)

        def __iter__(self):
            for batch in loader:
                for x in batch:
                    x["oracle_box"] = boxes[x["image_id"]]
                yield batch

    evaluator = ReferringVideoEvaluator(dataset_name, distributed=False, output_dir=None)
    with oracle_tube_selection(model):
        results = inference_on_rvos_dataset(model, WithOracleBox(), evaluator)
    return results["segm"]
