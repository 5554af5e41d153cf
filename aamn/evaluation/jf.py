"""Region similarity J, contour accuracy F and their mean J&F: the DAVIS 2017 protocol, as
Ref-YouTube-VOS, Ref-DAVIS17 and MeViS report it.

For one expression and one frame, prediction ``P`` and target ``G`` (binary masks):

* ``J = |P ∩ G| / |P ∪ G|``, 1 when both are empty;
* ``F``: the 1-pixel boundary maps of ``P`` and ``G`` (``seg2bmap``, DAVIS's), each dilated by a
  disk of radius ``ceil(0.008 * sqrt(H² + W²))`` pixels (``BOUNDARY_FRACTION`` of the diagonal);
  precision is the share of P's boundary pixels within G's dilated boundary, recall the share of
  G's within P's; ``F = 2PR / (P + R)``, 0 when ``P + R = 0``.  An empty boundary of P against a
  non-empty one of G: precision 1, recall 0 (F 0); the other way round: precision 0, recall 1
  (F 0); both empty: F 1.

J and F are averaged over an expression's frames, then over the expressions, and reported in
percent with ``J&F = (J + F) / 2``.  ``JFEvaluator`` scores a model on a registered data set
(an expression: the records sharing an ``exp_id``, or a ``(video_id, instance_id, query)``);
``score_folders`` scores ``tools/infer.py``'s output layout against a Ref-YouTube-VOS-layout
ground truth (``tools/eval_jf.py``).
"""

import itertools
import math
import os
from collections import OrderedDict, defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = [
    "BOUNDARY_FRACTION",
    "JFEvaluator",
    "boundary_f",
    "jaccard",
    "jf_summary",
    "read_ytvos_ground_truth",
    "score_folders",
    "seg2bmap",
]

BOUNDARY_FRACTION = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """J of two binary masks ``(H, W)``: intersection over union, 1 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The 1-pixel boundary map of a binary mask ``(H, W)`` (DAVIS's ``seg2bmap`` at the mask's
    own size): a pixel whose east, south or south-east neighbour differs from it, the last row
    and column compared along them only."""
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """A disk structuring element of ``radius`` (scikit-image's ``disk``): ``x² + y² <= r²``."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, fraction: float = BOUNDARY_FRACTION) -> float:
    """F of two binary masks ``(H, W)`` (module docstring); the tolerance is
    ``ceil(fraction * diagonal)`` pixels (``fraction >= 1``: that many pixels)."""
    import cv2

    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and target {gt.shape} differ in size")
    radius = int(fraction if fraction >= 1 else math.ceil(fraction * math.hypot(*gt.shape)))
    pb, gb = seg2bmap(pred), seg2bmap(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0  # precision 1 and recall 0, or the other way round
    kernel = _disk(radius)
    p_dil = cv2.dilate(pb.astype(np.uint8), kernel).astype(bool)
    g_dil = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
    precision = np.logical_and(pb, g_dil).sum() / n_p
    recall = np.logical_and(gb, p_dil).sum() / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def jf_summary(per_frame: Iterable[Tuple[object, float, float]]) -> Dict[str, float]:
    """``{"J", "F", "J&F", "expressions", "frames"}`` (percent) of ``(expression key, J, F)``
    per frame: each expression's frames averaged, then the expressions."""
    by: Dict[object, List[Tuple[float, float]]] = defaultdict(list)
    for key, j, f in per_frame:
        by[key].append((j, f))
    if not by:
        return {}
    js = [np.mean([j for j, _ in v]) for v in by.values()]
    fs = [np.mean([f for _, f in v]) for v in by.values()]
    j, f = 100.0 * float(np.mean(js)), 100.0 * float(np.mean(fs))
    return {"J": j, "F": f, "J&F": (j + f) / 2, "expressions": len(by),
            "frames": sum(len(v) for v in by.values())}  # fmt: skip


def expression_key(record: Dict):
    """An expression of a record: its ``exp_id`` (with its video), else its video, referred
    instance and query (A2D's and J-HMDB's records: one expression per query)."""
    if record.get("exp_id") is not None:
        return (record["video_id"], str(record["exp_id"]))
    return (record["video_id"], int(record["instance_id"]), record["query"])


def target_mask(record: Dict) -> np.ndarray:
    """The record's target at full resolution: the union of the masks of its referred instances
    (``instance_ids``, else ``instance_id``); empty when none of them is in the frame."""
    import pycocotools.mask as mask_util

    from .rvos_evaluation import _segmentation_to_rle

    height, width = int(record["height"]), int(record["width"])
    ids = {int(i) for i in record.get("instance_ids", [record["instance_id"]])}
    target = np.zeros((height, width), bool)
    for a in record.get("annotations", []):
        if int(a["instance_id"]) in ids:
            target |= mask_util.decode(_segmentation_to_rle(a["segmentation"], height, width)) > 0
    return target


class JFEvaluator(DatasetEvaluator):
    """J, F and J&F of a model on a registered data set (the record contract): per sample, the
    highest-scored predicted mask (``outputs[i]["instances"].pred_masks``, at the frame's size;
    none: an empty mask) against ``target_mask``; ``evaluate()`` returns ``{"jf": {"J", "F",
    "J&F"}}`` in percent (``jf_summary``: per expression, then over expressions), and on a data
    set with expressions about several objects also ``jf_one_object`` and ``jf_several_objects``
    (the expressions of each kind).  Each model segments one actor per expression: on an
    expression about several, its mask is scored against their union."""

    def __init__(self, dataset_name: str, distributed: bool = True):
        from detectron2.data import DatasetCatalog

        self._dataset_name, self._distributed = dataset_name, distributed
        self._records = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        self._per_frame: List[Tuple[object, float, float]] = []

    def reset(self):
        self._per_frame = []

    def process(self, inputs, outputs):
        from .rvos_evaluation import ReferringVideoEvaluator

        for inp, out in zip(inputs, outputs):
            record = self._records.get(inp["image_id"])
            if record is None:
                raise KeyError(
                    f"image_id {inp['image_id']!r} is not in data set {self._dataset_name!r}"
                )
            gt = target_mask(record)
            pred, _, _ = ReferringVideoEvaluator._selected_prediction(out["instances"], gt.shape)
            j, f = jaccard(pred, gt), boundary_f(pred, gt)
            several = len(record.get("instance_ids", ())) > 1
            self._per_frame.append((record.get("annotator"), several, expression_key(record), j, f))

    def evaluate(self):
        """``{"jf": {"J", "F", "J&F"}}``; a data set scored per annotator (metadata
        ``per_annotator``, Ref-DAVIS17's protocol): each annotator's expressions apart, then the
        mean of the annotators'."""
        from detectron2.data import MetadataCatalog

        per_frame = self._per_frame
        if self._distributed:
            comm.synchronize()
            per_frame = list(itertools.chain(*comm.gather(per_frame, dst=0)))
            if not comm.is_main_process():
                return {}
        split = MetadataCatalog.get(self._dataset_name).get("per_annotator", False)

        def summary(rows):
            groups = defaultdict(list)
            for annotator, _, key, j, f in rows:
                groups[annotator if split else None].append((key, j, f))
            parts = [jf_summary(g) for _, g in sorted(groups.items(), key=str)]
            parts = [p for p in parts if p]
            keys = ("J", "F", "J&F")
            return {k: float(np.mean([p[k] for p in parts])) for k in keys} if parts else {}

        out = OrderedDict(jf=summary(per_frame))
        if any(row[1] for row in per_frame):  # expressions about several objects (MeViS)
            out["jf_one_object"] = summary([r for r in per_frame if not r[1]])
            out["jf_several_objects"] = summary([r for r in per_frame if r[1]])
        return OrderedDict((k, v) for k, v in out.items() if v)


# ---------------------------------------------------------------------------- folders
def _read_png(path: str) -> np.ndarray:
    """A PNG's pixel values ``(H, W)`` as stored (a palette PNG's indices, not its colours)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1", "I", "I;16"):
                im = im.convert("L")
            return np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"mask not found: {path}") from None
    except OSError as e:
        raise IOError(f"cannot read the mask {path} (corrupt or not a PNG): {e}") from None


def read_ytvos_ground_truth(path: str) -> Dict[str, Dict]:
    """``{video: {"frames": [...], "expressions": {exp_id: [object ids]}}}`` of a
    ``meta_expressions.json`` with object ids (Ref-YouTube-VOS's train form, ``read_meta_
    expressions``): an expression's ``obj_id`` (one, or a list as MeViS's) in the frames its video
    lists.

    Raises:
        FileNotFoundError / ValueError: a missing or malformed file, or an expression without
            ``obj_id`` (named).
    """
    from aamn.data.datasets.register_ref_youtube_vos import read_meta_expressions

    out = {}
    for vid, v in read_meta_expressions(path, multi_object=True).items():
        for exp_id, e in v["expressions"].items():
            if not e["obj_ids"]:
                raise ValueError(f"{path}: expression {vid}/{exp_id} has no obj_id")
        expressions = {k: e["obj_ids"] for k, e in v["expressions"].items()}
        out[vid] = {"frames": v["frames"], "expressions": expressions}
    return out


def score_folders(
    pred_dir: str,
    annotations: str,
    meta_expressions: str,
    videos: Optional[Sequence[str]] = None,
) -> Dict[str, float]:
    """J, F and J&F (percent, ``jf_summary``) of ``tools/infer.py``'s output layout
    (``<pred_dir>/Annotations/<video>/<exp_id>/<frame>.png``, non-zero = the mask) against a
    Ref-YouTube-VOS-layout ground truth: the expressions of ``meta_expressions``
    (``read_ytvos_ground_truth``), a frame's target the pixels of the expression's object ids in
    ``<annotations>/<video>/<frame>.png`` (palette PNGs of object ids).  Every listed frame of
    every expression is scored (``videos``: only those).

    Raises:
        FileNotFoundError: a prediction or ground-truth mask is missing (named).
        ValueError: a prediction's size differs from its ground truth's.
    """
    gt = read_ytvos_ground_truth(meta_expressions)
    per_frame = []
    for vid in videos if videos is not None else sorted(gt):
        if vid not in gt:
            raise KeyError(f"video {vid} is not in {meta_expressions}")
        for frame in gt[vid]["frames"]:
            ids = _read_png(os.path.join(annotations, vid, f"{frame}.png"))
            for exp_id, objects in sorted(gt[vid]["expressions"].items()):
                path = os.path.join(pred_dir, "Annotations", vid, exp_id, f"{frame}.png")
                pred = _read_png(path) > 0
                target = np.isin(ids, objects)
                if pred.shape != target.shape:
                    raise ValueError(
                        f"{path} is {pred.shape[0]}x{pred.shape[1]}, its ground truth "
                        f"{target.shape[0]}x{target.shape[1]}"
                    )
                per_frame.append(((vid, exp_id), jaccard(pred, target), boundary_f(pred, target)))
    return jf_summary(per_frame)
