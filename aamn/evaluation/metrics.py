"""Metrics of referring (text-based) video object segmentation.

The definitions follow the papers' evaluation sections (AAMN Sec. IV-A, Gavrilyuk et al. 2018,
CMDy) and ``datasets/README.md`` (the project's data-set documentation).  All values are
percentages.

Per sample, with I = |pred ∩ gt| and U = |pred ∪ gt| (pixels, or box areas for the box metrics)::

    IoU = I / U,          and IoU = 1 when U = 0 (empty prediction on an empty ground truth)

Aggregates over N samples:

``P@t`` (t = 0.5, 0.6, 0.7, 0.8, 0.9)
    the share of samples whose IoU is *strictly above* t ("IoU higher than the threshold",
    AAMN Sec. IV-A; the public reference implementations count ``iou > t`` too).  The comparison is
    done exactly, as ``100 * I > (100 t) * U``, so an IoU that equals t (e.g. 3/5 at t = 0.6) is not
    counted whatever the floating-point rounding of I / U.  A sample with U = 0 counts as IoU 1.
``mAP``
    the papers' "mAP 0.5:0.95": the mean of P@t over the 10 thresholds t = 0.50, 0.55, ..., 0.95
    (same strict comparison).
``overall_IoU``
    Σ I / Σ U over all samples (favours large actors); 100 when Σ U = 0.
``mean_IoU``
    the mean of the per-sample IoUs.
``COCO_mAP``
    COCO mask AP@[.5:.95] from pycocotools' ``COCOeval(iouType="segm")`` with one image per sample,
    one ground-truth annotation (its mask) per image and exactly one scored predicted mask per
    image (MTTR's protocol); ``stats[0] * 100``.
"""

import contextlib
import io
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils.masks import mask_to_box, mask_to_rle  # noqa: F401  (re-exported)

__all__ = [
    "PRECISION_THRESHOLDS",
    "MAP_THRESHOLDS",
    "mask_intersection_union",
    "box_intersection_union",
    "box_iou",
    "iou_from_counts",
    "summarize_ious",
    "coco_mask_ap",
    "compute_rvos_metrics",
]

# Thresholds in integer percent, so that "IoU > t" can be evaluated exactly as 100 I > t% U.
PRECISION_THRESHOLDS = (50, 60, 70, 80, 90)  # the P@t columns of every table
MAP_THRESHOLDS = tuple(range(50, 100, 5))  # 0.50:0.05:0.95, 10 thresholds


def _precision_key(percent: int) -> str:
    return "P@{:g}".format(percent / 100.0)  # 50 -> "P@0.5"


def mask_intersection_union(pred: np.ndarray, gt: np.ndarray) -> Tuple[int, int]:
    """Pixel counts ``(|pred ∩ gt|, |pred ∪ gt|)`` of two binary masks of the same shape (H, W)."""
    pred = np.asarray(pred).astype(bool, copy=False)
    gt = np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape:
        raise ValueError(
            "Predicted mask of shape {} and ground-truth mask of shape {} differ; predictions "
            "must be at the ground truth's full resolution.".format(pred.shape, gt.shape)
        )
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def box_intersection_union(box_a, box_b) -> Tuple[float, float]:
    """Areas ``(|a ∩ b|, |a ∪ b|)`` of two XYXY_ABS boxes (continuous coordinates, as detectron2's
    ``pairwise_iou``: area = (x2 - x1) * (y2 - y1); a degenerate box has area 0)."""
    ax1, ay1, ax2, ay2 = (float(v) for v in box_a)
    bx1, by1, bx2, by2 = (float(v) for v in box_b)
    area_a = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0)
    area_b = max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0)
    inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
    return inter, area_a + area_b - inter


def box_iou(box_a, box_b) -> float:
    """IoU of two XYXY_ABS boxes (``box_intersection_union``; 0 when both are degenerate).  The
    model's batched box IoU is ``aamn.modeling.tube_linking.pairwise_iou_batched`` (torch, on the
    model's device); this one is exact in float64, as the metrics need."""
    inter, union = box_intersection_union(box_a, box_b)
    return inter / union if union > 0 else 0.0


def iou_from_counts(intersection, union):
    """IoU = I / U with the convention IoU = 1 where U = 0.  Scalars or arrays (float64 out)."""
    inter = np.asarray(intersection, dtype=np.float64)
    uni = np.asarray(union, dtype=np.float64)
    iou = np.where(uni > 0, inter / np.where(uni > 0, uni, 1.0), 1.0)
    return float(iou) if iou.ndim == 0 else iou


def _above(inter: np.ndarray, uni: np.ndarray, percent: int) -> np.ndarray:
    """Boolean (N,): IoU > percent / 100, exactly (100 I > percent U); U = 0 counts as IoU 1."""
    return np.where(uni > 0, 100.0 * inter > percent * uni, True)


def summarize_ious(
    intersections: Sequence[float],
    unions: Sequence[float],
    precision_thresholds: Sequence[int] = PRECISION_THRESHOLDS,
    with_map: bool = True,
    with_overall: bool = True,
) -> "OrderedDict[str, float]":
    """P@t, mAP, overall and mean IoU (percent) from per-sample intersections and unions.

    Args:
        intersections, unions: (N,) per-sample I and U (pixel counts or box areas), N >= 1.
        precision_thresholds: the P@t columns, in integer percent.
        with_map: add ``mAP`` (mean of P@t over 0.50:0.05:0.95).
        with_overall: add ``overall_IoU`` (Σ I / Σ U).
    Returns:
        OrderedDict with ``P@0.5`` ... ``P@0.9``, [``mAP``], [``overall_IoU``], ``mean_IoU``.
    """
    inter = np.asarray(intersections, dtype=np.float64).reshape(-1)
    uni = np.asarray(unions, dtype=np.float64).reshape(-1)
    if inter.shape != uni.shape:
        raise ValueError("Got {} intersections but {} unions.".format(len(inter), len(uni)))
    if len(inter) == 0:
        raise ValueError("Cannot summarize an empty set of samples.")
    if np.any(inter < 0) or np.any(inter > uni):
        raise ValueError("Each intersection must lie in [0, union].")
    out = OrderedDict()
    for p in precision_thresholds:
        out[_precision_key(p)] = 100.0 * float(np.mean(_above(inter, uni, p)))
    if with_map:
        out["mAP"] = 100.0 * float(
            np.mean([np.mean(_above(inter, uni, p)) for p in MAP_THRESHOLDS])
        )
    if with_overall:
        total_union = float(uni.sum())
        out["overall_IoU"] = 100.0 * (float(inter.sum()) / total_union if total_union > 0 else 1.0)
    out["mean_IoU"] = 100.0 * float(np.mean(iou_from_counts(inter, uni)))
    return out


def coco_mask_ap(
    pred_rles: Sequence[dict], gt_rles: Sequence[dict], scores: Sequence[float]
) -> float:
    """COCO mask AP@[.5:.95] in percent (``COCOeval(iouType="segm").stats[0] * 100``).

    Sample i becomes image i + 1 of a one-category COCO data set holding one ground-truth
    annotation (``gt_rles[i]``, iscrowd 0, its area and bbox) and one detection
    (``pred_rles[i]`` with ``scores[i]``): MTTR's protocol.  RLEs are COCO compressed RLE dicts
    (``size`` = [H, W], ``counts`` as bytes or str).  Returns NaN if pycocotools finds nothing to
    evaluate."""
    n = len(gt_rles)
    if not (len(pred_rles) == n == len(scores)):
        raise ValueError(
            "coco_mask_ap needs one prediction and one score per ground truth; got {} ground "
            "truths, {} predictions, {} scores.".format(n, len(pred_rles), len(scores))
        )
    if n == 0:
        raise ValueError("coco_mask_ap needs at least one sample.")
    images, annotations, detections = [], [], []
    for i, (gt, pred, score) in enumerate(zip(gt_rles, pred_rles, scores)):
        h, w = (int(v) for v in gt["size"])
        images.append({"id": i + 1, "height": h, "width": w})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "segmentation": gt,
                "area": float(mask_util.area(gt)),
                "bbox": [float(v) for v in mask_util.toBbox(gt)],
                "iscrowd": 0,
            }
        )
        detections.append(
            {"image_id": i + 1, "category_id": 1, "segmentation": pred, "score": float(score)}
        )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "referred"}],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    ap = float(coco_eval.stats[0])
    return ap * 100.0 if ap >= 0 else float("nan")


def compute_rvos_metrics(
    pred_masks: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    scores: Optional[Sequence[float]] = None,
) -> Dict[str, float]:
    """Single-frame referring segmentation metrics (percent) over N samples.

    Args:
        pred_masks: N binary arrays (H_i, W_i): the predicted mask of each sample (anything
            ``np.asarray`` accepts, e.g. CPU tensors; non-zero = foreground).
        gt_masks: N binary arrays of the same shapes: the referred actor's ground-truth mask.
        scores: optional N floats, the confidence of each predicted mask; when given,
            ``COCO_mAP`` is added.
    Returns:
        dict with ``P@0.5``, ``P@0.6``, ``P@0.7``, ``P@0.8``, ``P@0.9``, ``mAP`` (mean of P@t over
        0.50:0.05:0.95), ``overall_IoU``, ``mean_IoU`` and, with scores, ``COCO_mAP``; definitions
        in this module's docstring (IoU strictly above t; an empty prediction on an empty ground
        truth has IoU 1).
    """
    if len(pred_masks) != len(gt_masks):
        raise ValueError(
            "Got {} predicted masks but {} ground-truth masks.".format(
                len(pred_masks), len(gt_masks)
            )
        )
    if len(gt_masks) == 0:
        raise ValueError("compute_rvos_metrics needs at least one sample.")
    inters: List[int] = []
    unions: List[int] = []
    for i, (pred, gt) in enumerate(zip(pred_masks, gt_masks)):
        try:
            inter, uni = mask_intersection_union(pred, gt)
        except ValueError as e:
            raise ValueError("Sample {}: {}".format(i, e)) from None
        inters.append(inter)
        unions.append(uni)
    results = dict(summarize_ious(inters, unions))
    if scores is not None:
        if len(scores) != len(gt_masks):
            raise ValueError("Got {} scores for {} samples.".format(len(scores), len(gt_masks)))
        results["COCO_mAP"] = coco_mask_ap(
            [mask_to_rle(m) for m in pred_masks], [mask_to_rle(m) for m in gt_masks], scores
        )
    return results
