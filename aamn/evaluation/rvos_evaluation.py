"""detectron2 evaluator of referring video segmentation (A2D / J-HMDB Sentences and the synthetic
benchmark).

Protocols (definitions of the metrics in :mod:`aamn.evaluation.metrics`):

``segm``
    single-frame protocol: a sample is one (query, annotated frame); the predicted key-frame mask
    against the referred actor's full-resolution ground-truth mask.  P@0.5..0.9, mAP 0.5:0.95,
    overall / mean IoU, COCO_mAP.
``loc``
    localization precision (AAMN Table I): the IoU of the selected tube's key-frame box
    (``pred_boxes``) with the ground-truth box; P@0.5..0.9 and the mean box IoU.
``segm_full_video``
    full-video protocol, pixel variant (AAMN Table XIII): a sample is one (video, query), i.e. one
    ``(video_id, instance_id)``; the intersections and unions of all its frames with a ground-truth
    mask are summed into one IoU per sample, then P@t / mAP / overall / mean as above.
``bbox_full_video``
    the same with boxes (AAMN Table XIII, "bbox" rows): the box around the predicted mask against
    the ground-truth box, box-area intersections and unions summed per (video, query).
``query_swap``
    whether the prediction follows the query: over the pairs of samples of one annotated frame
    whose queries refer to two different actors A and B, the percentage (``moved``) of pairs whose
    prediction for A's query overlaps A more than B and whose prediction for B's query overlaps B
    more than A (IoU), i.e. the prediction moves to the other actor when the query is replaced by
    one describing it; ``pairs`` counts them.  A system that ignores the language gives the same
    mask for both queries and scores 0.
``segm_needs_action`` / ``segm_needs_appearance`` / ``segm_needs_location``
    on the synthetic benchmark only (``MetadataCatalog.get(name).synthetic_meta`` set): the
    single-frame metrics restricted to the queries of each type.
"""

import copy
import itertools
import json
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from tabulate import tabulate

from aamn.utils.io import atomic_path

from ..utils.masks import mask_to_box, mask_to_rle
from .metrics import (
    PRECISION_THRESHOLDS,
    box_intersection_union,
    coco_mask_ap,
    iou_from_counts,
    mask_intersection_union,
    summarize_ious,
)

__all__ = ["ReferringVideoEvaluator"]

logger = logging.getLogger(__name__)


def _segmentation_to_rle(segm, height: int, width: int) -> dict:
    """A COCO compressed RLE from a record's ``segmentation`` (compressed RLE, uncompressed RLE
    or polygons)."""
    if isinstance(segm, dict):
        if isinstance(segm.get("counts"), list):  # uncompressed RLE
            return mask_util.frPyObjects(segm, *segm["size"])
        return segm
    if isinstance(segm, list):  # polygons
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    raise TypeError("Unsupported segmentation of type {}.".format(type(segm).__name__))


class ReferringVideoEvaluator(DatasetEvaluator):
    """Evaluates the referred actor's mask and box of each (query, annotated frame) sample.

    Ground truth comes from ``DatasetCatalog.get(dataset_name)`` (the record contract of
    ``datasets/README.md``): per ``image_id``, the annotation whose ``instance_id`` equals the
    record's ``instance_id`` (its RLE mask at full resolution, decoded when needed, and its box).

    ``process(inputs, outputs)`` reads ``outputs[i]["instances"]`` (the key frame, at the original
    ``height`` x ``width``): ``pred_masks`` (1, H, W) bool, ``pred_boxes`` (1 box: the selected
    tube's key-frame box, XYXY_ABS), ``scores`` (1,).  Should several instances be given, the
    highest-scored one is evaluated; no instance counts as an empty mask with score 0.  Only a few
    numbers per sample are kept (and the predicted mask as compressed RLE for COCO_mAP), so
    gathering to the main process is cheap.

    ``evaluate()`` returns an ``OrderedDict`` of flat ``{metric: percent}`` dicts, printable by
    detectron2's ``print_csv_format``: ``segm``, ``loc``, ``segm_full_video``,
    ``bbox_full_video`` and, on the synthetic benchmark, ``segm_needs_action``,
    ``segm_needs_appearance``, ``segm_needs_location`` (see the module docstring).  With an
    ``output_dir`` (and ``save_per_sample``), it also writes ``<output_dir>/rvos_per_sample.json``.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str = None,
        save_per_sample: bool = True,
    ):
        """
        Args:
            dataset_name: a name registered in ``DatasetCatalog`` with records of the record
                contract (``image_id``, ``video_id``, ``frame_idx``, ``instance_id``, ``query``,
                ``annotations``).
            distributed: gather the predictions of all processes to the main process, which
                alone returns results; otherwise evaluate the predictions of this process only.
            output_dir: where to write ``rvos_per_sample.json``; None writes nothing.
            save_per_sample: write ``rvos_per_sample.json`` into ``output_dir``
                (``cfg.TEST.RVOS.SAVE_PER_SAMPLE``).
        """
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._save_per_sample = save_per_sample
        self._metadata = MetadataCatalog.get(dataset_name)
        self._gt: Dict[str, dict] = {}
        for record in DatasetCatalog.get(dataset_name):
            if record["image_id"] in self._gt:
                raise ValueError(
                    "image_id {!r} occurs twice in data set {!r}; each sample needs its own."
                    "".format(record["image_id"], dataset_name)
                )
            self._gt[record["image_id"]] = self._referred_ground_truth(record)
        self._predictions: List[dict] = []

    def _referred_ground_truth(self, record: dict) -> dict:
        height, width = int(record["height"]), int(record["width"])
        matches = [
            a
            for a in record.get("annotations", [])
            if int(a["instance_id"]) == int(record["instance_id"])
        ]
        if len(matches) != 1:
            raise ValueError(
                "Record {!r} of data set {!r} has {} annotations with the referred instance_id {}; "
                "expected exactly one.".format(
                    record["image_id"], self._dataset_name, len(matches), record["instance_id"]
                )
            )
        ann = matches[0]
        rle = _segmentation_to_rle(ann["segmentation"], height, width)
        others = {
            int(a["instance_id"]): _segmentation_to_rle(a["segmentation"], height, width)
            for a in record.get("annotations", [])
            if int(a["instance_id"]) != int(record["instance_id"]) and "segmentation" in a
        }
        if "bbox" in ann:
            box = BoxMode.convert(
                list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS
            )
        else:  # no box given: the box around the mask
            x, y, w, h = mask_util.toBbox(rle)
            box = [x, y, x + w, y + h]
        return {
            "rle": rle,
            "box": [float(v) for v in box],
            "height": height,
            "width": width,
            "query": record["query"],
            "video_id": record["video_id"],
            "frame_idx": int(record["frame_idx"]),
            "instance_id": int(record["instance_id"]),
            "others": others,
        }

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        """
        Args:
            inputs: the mapper's dicts; ``image_id`` is read.
            outputs: the model's dicts; ``instances`` is read (see the class docstring).
        """
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            gt = self._gt.get(image_id)
            if gt is None:
                raise KeyError(
                    "image_id {!r} is not in the ground truth of data set {!r}.".format(
                        image_id, self._dataset_name
                    )
                )
            gt_mask = mask_util.decode(gt["rle"]).astype(bool)
            pred_mask, box, score = self._selected_prediction(out["instances"], gt_mask.shape)
            if pred_mask.shape != gt_mask.shape:
                raise ValueError(
                    "Prediction for image_id {!r} of data set {!r} has a mask of size {}, but the "
                    "ground truth is {}: predictions must be pasted at the original frame size."
                    "".format(image_id, self._dataset_name, pred_mask.shape, gt_mask.shape)
                )
            inter, union = mask_intersection_union(pred_mask, gt_mask)
            mask_box = mask_to_box(pred_mask, empty=[0.0] * 4)
            mask_box_inter, mask_box_union = box_intersection_union(mask_box, gt["box"])
            pred = {
                "image_id": image_id,
                "inter": inter,
                "union": union,
                "score": score,
                "box": box,
                "mask_box_inter": mask_box_inter,
                "mask_box_union": mask_box_union,
                "rle": mask_to_rle(pred_mask),
            }
            if box is not None:
                pred["box_inter"], pred["box_union"] = box_intersection_union(box, gt["box"])
            self._predictions.append(pred)

    @staticmethod
    def _selected_prediction(instances, shape):
        """(mask (H, W) bool ndarray, box [4] or None, score) of the highest-scored instance."""
        if len(instances) == 0:
            return np.zeros(shape, dtype=bool), None, 0.0
        i = 0
        if instances.has("scores") and len(instances) > 1:
            i = int(torch.as_tensor(instances.scores).argmax())
        score = float(instances.scores[i]) if instances.has("scores") else 1.0
        masks = instances.pred_masks
        masks = getattr(masks, "tensor", masks)  # BitMasks or a tensor
        mask = torch.as_tensor(masks[i]).detach().cpu().numpy().astype(bool)
        box = None
        if instances.has("pred_boxes"):
            boxes = instances.pred_boxes
            boxes = getattr(boxes, "tensor", boxes)
            box = [float(v) for v in torch.as_tensor(boxes[i]).detach().cpu().reshape(-1)]
        return mask, box, score

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        # A sample handed to two processes counts once; sorting by image_id makes the results
        # independent of how the samples were split between processes.
        unique = {}
        for p in predictions:
            unique.setdefault(p["image_id"], p)
        predictions = [unique[k] for k in sorted(unique)]
        if len(predictions) == 0:
            logger.warning(
                "[ReferringVideoEvaluator] Did not receive valid predictions for {}.".format(
                    self._dataset_name
                )
            )
            return {}
        if len(predictions) < len(self._gt):
            logger.warning(
                "[ReferringVideoEvaluator] {} of the {} samples of {} were evaluated.".format(
                    len(predictions), len(self._gt), self._dataset_name
                )
            )

        results = OrderedDict()
        results["segm"] = self._single_frame(predictions)
        results["loc"] = self._localization(predictions)
        results["segm_full_video"] = self._full_video(predictions, "inter", "union")
        results["bbox_full_video"] = self._full_video(
            predictions, "mask_box_inter", "mask_box_union"
        )
        results["query_swap"] = self._query_swap(predictions)
        results.update(self._per_query_type(predictions))
        results = OrderedDict((k, v) for k, v in results.items() if v)

        if self._output_dir and self._save_per_sample:
            self._write_per_sample(predictions)
        self._log_table(results, len(predictions))
        return copy.deepcopy(results)

    # ------------------------------------------------------------------ the protocols
    def _single_frame(self, predictions) -> Dict[str, float]:
        res = summarize_ious([p["inter"] for p in predictions], [p["union"] for p in predictions])
        res["COCO_mAP"] = coco_mask_ap(
            [p["rle"] for p in predictions],
            [self._gt[p["image_id"]]["rle"] for p in predictions],
            [p["score"] for p in predictions],
        )
        return dict(res)

    @staticmethod
    def _localization(predictions) -> Dict[str, float]:
        with_box = [p for p in predictions if p["box"] is not None]
        if len(with_box) < len(predictions):
            logger.warning(
                "[ReferringVideoEvaluator] {} of {} predictions have no pred_boxes: localization "
                "precision covers the others only.".format(
                    len(predictions) - len(with_box), len(predictions)
                )
            )
        if not with_box:
            return {}
        return dict(
            summarize_ious(
                [p["box_inter"] for p in with_box],
                [p["box_union"] for p in with_box],
                PRECISION_THRESHOLDS,
                with_map=False,
                with_overall=False,
            )
        )

    def _full_video(self, predictions, inter_key: str, union_key: str) -> Dict[str, float]:
        inter = defaultdict(float)
        union = defaultdict(float)
        for p in predictions:
            gt = self._gt[p["image_id"]]
            key = (gt["video_id"], gt["instance_id"])
            inter[key] += p[inter_key]
            union[key] += p[union_key]
        keys = sorted(inter)
        return dict(summarize_ious([inter[k] for k in keys], [union[k] for k in keys]))

    def _query_swap(self, predictions) -> Dict[str, float]:
        """``{"moved": percent, "pairs": n}`` (module docstring); empty without such pairs."""
        by_frame = defaultdict(list)
        for p in predictions:
            gt = self._gt[p["image_id"]]
            by_frame[(gt["video_id"], gt["frame_idx"])].append(p)
        moved = pairs = 0
        for samples in by_frame.values():
            for a, b in itertools.combinations(samples, 2):
                ga, gb = self._gt[a["image_id"]], self._gt[b["image_id"]]
                ia, ib = ga["instance_id"], gb["instance_id"]
                if ia == ib or ib not in ga["others"] or ia not in gb["others"]:
                    continue
                # IoU of each prediction with (its own actor, the other actor)
                ious = mask_util.iou(
                    [a["rle"], b["rle"]], [ga["rle"], ga["others"][ib]], [False, False]
                )
                pairs += 1
                moved += bool(ious[0, 0] > ious[0, 1] and ious[1, 1] > ious[1, 0])
        return {"moved": 100.0 * moved / pairs, "pairs": float(pairs)} if pairs else {}

    def _per_query_type(self, predictions) -> "OrderedDict[str, Dict[str, float]]":
        """``segm_<type>`` for each query type of the synthetic benchmark (``needs_action``,
        ``needs_appearance``, ``needs_location``, from ``aamn.data.synthetic.query_types`` on the
        data set's ``synthetic_meta.json``): the single-frame metrics of the samples of that type
        (a query may have several types, or none).  Empty off the synthetic benchmark."""
        meta_path = self._metadata.get("synthetic_meta", None)
        out = OrderedDict()
        if not meta_path:
            return out
        from aamn.data.synthetic import query_types  # the synthetic benchmark's own definition

        with open(meta_path) as f:
            types = query_types(json.load(f))  # {(video_id, instance_id): {"needs_action", ...}}
        sample_types = []
        for p in predictions:
            gt = self._gt[p["image_id"]]
            sample_types.append(types.get((gt["video_id"], gt["instance_id"]), set()))
        for qtype in sorted(set().union(*sample_types)):
            subset = [p for p, t in zip(predictions, sample_types) if qtype in t]
            out["segm_" + qtype] = self._single_frame(subset)
        return out

    # ------------------------------------------------------------------ outputs
    def _write_per_sample(self, predictions):
        rows = []
        for p in predictions:
            gt = self._gt[p["image_id"]]
            rows.append(
                {
                    "image_id": p["image_id"],
                    "video_id": gt["video_id"],
                    "frame_idx": gt["frame_idx"],
                    "instance_id": gt["instance_id"],
                    "query": gt["query"],
                    "IoU": float(iou_from_counts(p["inter"], p["union"])),
                    "box_IoU": (
                        float(iou_from_counts(p["box_inter"], p["box_union"]))
                        if p["box"] is not None
                        else None
                    ),
                    "score": p["score"],
                    "box": p["box"],
                    "gt_box": gt["box"],
                }
            )
        path = os.path.join(self._output_dir, "rvos_per_sample.json")
        with atomic_path(path) as tmp, open(tmp, "w") as f:  # a reader never sees a partial file
            json.dump(rows, f, indent=1)
        logger.info("[ReferringVideoEvaluator] Per-sample results written to {}.".format(path))

    def _log_table(self, results, num_samples: int):
        columns = []
        for block in results.values():
            columns.extend(k for k in block if k not in columns)
        rows = [
            [name] + ["{:.2f}".format(block[c]) if c in block else "-" for c in columns]
            for name, block in results.items()
        ]
        table = tabulate(
            rows,
            headers=["protocol"] + columns,
            tablefmt="pipe",
            stralign="right",
            disable_numparse=True,
        )
        logger.info(
            "Referring video segmentation on {} ({} samples, %):\n{}".format(
                self._dataset_name, num_samples, table
            )
        )
