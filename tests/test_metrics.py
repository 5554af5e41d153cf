"""The referring-segmentation metrics against hand counts, plain numpy and pycocotools."""

import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from aamn.evaluation import compute_rvos_metrics
from aamn.evaluation.metrics import (
    box_intersection_union,
    coco_mask_ap,
    mask_to_rle,
    mask_intersection_union,
    mask_to_box,
    summarize_ious,
)

KEYS = ["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_IoU", "mean_IoU"]


def rect(h, w, x0, y0, x1, y1):
    """A (h, w) bool mask, True on columns [x0, x1) and rows [y0, y1)."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def hand_counted_samples():
    """Six (pred, gt) pairs on a 10 x 10 canvas whose I / U are known exactly.

    IoUs: 50/50 = 1, 60/100 = 0.6 (on a threshold), 0/100 = 0, empty/empty = 1 (0/0),
    85/100 = 0.85 (on a threshold), 52/100 = 0.52.
    """
    full = rect(10, 10, 0, 0, 10, 10)  # 100 px
    pairs = []
    pairs.append((rect(10, 10, 0, 0, 10, 5), rect(10, 10, 0, 0, 10, 5)))  # 50 / 50
    pairs.append((rect(10, 10, 0, 0, 6, 10), full))  # 60 / 100
    pairs.append((rect(10, 10, 5, 0, 10, 10), rect(10, 10, 0, 0, 5, 10)))  # 0 / 100
    pairs.append((np.zeros((10, 10), bool), np.zeros((10, 10), bool)))  # 0 / 0
    p = rect(10, 10, 0, 0, 8, 10)
    p[0:5, 8] = True
    pairs.append((p, full))  # 85 / 100
    p = rect(10, 10, 0, 0, 5, 10)
    p[0:2, 5] = True
    pairs.append((p, full))  # 52 / 100
    return pairs


def test_hand_counted_pairs_have_the_intended_counts():
    counts = [mask_intersection_union(p, g) for p, g in hand_counted_samples()]
    assert counts == [(50, 50), (60, 100), (0, 100), (0, 0), (85, 100), (52, 100)]


def test_every_metric_against_a_hand_count():
    preds, gts = zip(*hand_counted_samples())
    res = compute_rvos_metrics(list(preds), list(gts))
    assert sorted(res) == sorted(KEYS)  # no COCO_mAP without scores
    # IoU > t strictly: 0.6 is not above 0.6, 0.85 is not above 0.85; empty/empty is IoU 1.
    assert res["P@0.5"] == pytest.approx(100 * 5 / 6)  # 1, .6, 1, .85, .52
    assert res["P@0.6"] == pytest.approx(100 * 3 / 6)  # 1, 1, .85
    assert res["P@0.7"] == pytest.approx(100 * 3 / 6)
    assert res["P@0.8"] == pytest.approx(100 * 3 / 6)
    assert res["P@0.9"] == pytest.approx(100 * 2 / 6)  # 1, 1
    # counts above t = .50 .55 .60 .65 .70 .75 .80 .85 .90 .95 -> 5 4 3 3 3 3 3 2 2 2 = 30 of 60
    assert res["mAP"] == pytest.approx(50.0)
    assert res["overall_IoU"] == pytest.approx(100 * 247 / 450)
    assert res["mean_IoU"] == pytest.approx(100 * (1 + 0.6 + 0 + 1 + 0.85 + 0.52) / 6)


def test_empty_prediction_or_empty_ground_truth_alone_is_iou_zero():
    empty, full = np.zeros((4, 4), bool), np.ones((4, 4), bool)
    res = compute_rvos_metrics([empty, full], [full, empty])
    assert (
        res["mean_IoU"] == 0 and res["overall_IoU"] == 0 and res["P@0.5"] == 0 and res["mAP"] == 0
    )
    res = compute_rvos_metrics([empty], [empty])
    assert all(res[k] == 100.0 for k in KEYS)


def test_box_helpers_hand_count():
    assert box_intersection_union([0, 0, 10, 10], [5, 0, 15, 10]) == (50.0, 150.0)
    assert box_intersection_union([0, 0, 10, 10], [20, 20, 30, 30]) == (0.0, 200.0)
    assert box_intersection_union([0, 0, 0, 0], [0, 0, 4, 5]) == (0.0, 20.0)
    m = rect(10, 20, 3, 2, 9, 7)
    assert mask_to_box(m) == [3, 2, 9, 7]
    assert mask_to_box(np.zeros((5, 5), bool)) is None
    assert mask_to_box(np.zeros((5, 5), bool), empty=[0.0] * 4) == [0, 0, 0, 0]
    # The same box as pycocotools' toBbox (x, y, w, h).
    x, y, w, h = mask_util.toBbox(mask_to_rle(m))
    assert [x, y, x + w, y + h] == [3, 2, 9, 7]


def test_summarize_ious_on_box_areas_and_without_map():
    res = summarize_ious([50.0, 100.0], [150.0, 100.0], with_map=False, with_overall=False)
    assert list(res) == ["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mean_IoU"]
    assert res["P@0.9"] == 50.0 and res["mean_IoU"] == pytest.approx(100 * (1 / 3 + 1) / 2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="2 predicted masks but 1"):
        compute_rvos_metrics([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="Sample 0.*full resolution"):
        compute_rvos_metrics([np.zeros((2, 2))], [np.zeros((3, 2))])
    with pytest.raises(ValueError, match="at least one"):
        compute_rvos_metrics([], [])
    with pytest.raises(ValueError, match="scores"):
        compute_rvos_metrics([np.zeros((2, 2))], [np.zeros((2, 2))], scores=[0.1, 0.2])


def random_samples(seed, n=60, h=24, w=32):
    """Random (pred, gt, score) triples: blobs of varied size, predictions that overlap their
    ground truth more or less (so IoUs spread over [0, 1]), a few empty predictions."""
    rng = np.random.RandomState(seed)
    preds, gts, scores = [], [], []
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
        ry, rx = rng.uniform(2, h / 2), rng.uniform(2, w / 2)
        gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        shift = rng.uniform(0, 1)
        dy, dx = shift * ry * rng.uniform(-1, 1), shift * rx * rng.uniform(-1, 1)
        scale = rng.uniform(0.7, 1.3)
        pred = ((yy - cy - dy) / (ry * scale)) ** 2 + ((xx - cx - dx) / (rx * scale)) ** 2 <= 1
        pred ^= rng.rand(h, w) < 0.03  # pixel noise
        if i % 17 == 0:
            pred[:] = False
        preds.append(pred)
        gts.append(gt)
        scores.append(float(rng.rand()))
    return preds, gts, scores


def numpy_reference(preds, gts):
    """An independent plain-numpy computation of the papers' metrics."""
    inter = np.array([np.logical_and(p, g).sum() for p, g in zip(preds, gts)], dtype=float)
    union = np.array([np.logical_or(p, g).sum() for p, g in zip(preds, gts)], dtype=float)
    iou = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    ref = {"P@{}".format(t): 100 * np.mean(iou > t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    ref["mAP"] = 100 * np.mean([np.mean(iou > t) for t in np.linspace(0.5, 0.95, 10)])
    ref["overall_IoU"] = 100 * inter.sum() / union.sum()
    ref["mean_IoU"] = 100 * iou.mean()
    return ref, iou


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_equal_an_independent_numpy_computation(seed):
    preds, gts, _ = random_samples(seed)
    ref, iou = numpy_reference(preds, gts)
    assert 0.2 < np.mean(iou > 0.5) < 0.9  # the IoUs spread over the thresholds
    res = compute_rvos_metrics(preds, gts)
    for k in KEYS:
        assert abs(res[k] - ref[k]) <= 0.05, (k, res[k], ref[k])


def pycocotools_directly(preds, gts, scores, tmp_path):
    """COCO mask AP of one scored mask per image, through a GT JSON file and ``loadRes``."""
    images, anns, dets = [], [], []
    for i, (p, g, s) in enumerate(zip(preds, gts, scores)):
        g_rle = mask_util.encode(np.asfortranarray(g.astype(np.uint8)))
        p_rle = mask_util.encode(np.asfortranarray(p.astype(np.uint8)))
        g_rle["counts"] = g_rle["counts"].decode()
        p_rle["counts"] = p_rle["counts"].decode()
        images.append({"id": 100 + i, "height": g.shape[0], "width": g.shape[1], "file_name": ""})
        x, y, w, h = mask_util.toBbox(g_rle).tolist()
        anns.append(
            {
                "id": 7 + i,
                "image_id": 100 + i,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": g_rle,
                "area": int(g.sum()),
                "bbox": [x, y, w, h],
            }
        )
        dets.append({"image_id": 100 + i, "category_id": 3, "segmentation": p_rle, "score": s})
    path = tmp_path / "gt.json"
    path.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "actor"}]}
        )
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0]


@pytest.mark.parametrize("seed", [0, 3])
def test_coco_map_equals_pycocotools_run_directly(seed, tmp_path):
    preds, gts, scores = random_samples(seed, n=40)
    res = compute_rvos_metrics(preds, gts, scores=scores)
    direct = pycocotools_directly(preds, gts, scores, tmp_path)
    assert 0 < direct < 100
    assert res["COCO_mAP"] == pytest.approx(direct, abs=1e-9)


def test_coco_map_hand_cases():
    preds, gts = zip(*hand_counted_samples()[:3])
    gts = list(gts)
    assert coco_mask_ap(
        [mask_to_rle(g) for g in gts], [mask_to_rle(g) for g in gts], [0.5] * 3
    ) == pytest.approx(100)
    no_overlap = [mask_to_rle(~g) for g in gts]
    assert coco_mask_ap(no_overlap, [mask_to_rle(g) for g in gts], [0.5] * 3) == 0
