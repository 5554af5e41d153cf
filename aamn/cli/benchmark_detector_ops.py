"""The proposal detector's inference levers, each alone: its per-image loops batched over a
pass's frames, and its box head's layers in bf16 (``MODEL.ROI_BOX_HEAD.INFERENCE_BF16``).

The batched loops are measured here and not in the model (they did not pay: BENCHMARKS.md):
``find_top_proposals_batched`` is detectron2's ``find_top_rpn_proposals`` with one ``batched_nms``
over every image (groups image x level), ``batched_fast_rcnn_inference`` its
``fast_rcnn_inference`` with one over every image (groups image x class); both keep detectron2's
boxes (tests), so the timings compare the same work.

On ``--frames`` real frames of a data set (``--dataset``, its first videos), with a config's
detector and weights, the script times (best of ``--repeat``, each a mean over ``--inner`` calls):

- the RPN (its head included) and box head on the backbone's maps: as the model runs them with
  the box head in float32 (detectron2's per-image loops: "before"), with both loops batched, and
  with the box head in bf16;
- each stage alone: the RPN's NMS, the box head's layers (float32, bf16), the box inference;

checks that the batched stages keep detectron2's boxes, and counts the frames whose top-6
detections change in bf16 (another class or order, or a box beyond ``--tol`` pixels).

Example::

    python tools/benchmark_detector_ops.py --config-file configs/synthetic/aamn.yaml \\
        --threads 2 MODEL.WEIGHTS output/synthetic/detector/model_final.pth
"""

import argparse
import sys
import time

from typing import List, Tuple

import numpy as np
import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

from aamn.utils.cli import run_tool

__all__ = ["batched_fast_rcnn_inference", "find_top_proposals_batched", "main"]


def find_top_proposals_batched(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> List[Instances]:
    """detectron2's ``find_top_rpn_proposals``, its per-image NMS one call for all images.

    Args:
        proposals: per level ``(N, Hi*Wi*A, 4)`` decoded boxes; ``pred_objectness_logits`` per
            level ``(N, Hi*Wi*A)``.
        image_sizes: ``N`` ``(h, w)``, to clip the boxes.

    Returns:
        ``N`` Instances (``proposal_boxes``, ``objectness_logits``): each image's
        ``post_nms_topk`` best survivors of a per-level NMS over its ``pre_nms_topk`` best
        candidates of each level, by decreasing logit.
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    batch_idx = torch.arange(num_images, device=device)
    scores, boxes, levels = [], [], []
    for level, (proposals_i, logits_i) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(logits_i.shape[1], pre_nms_topk)
        logits_i, idx = logits_i.sort(descending=True, dim=1)
        scores.append(logits_i[:, :k])
        boxes.append(proposals_i[batch_idx[:, None], idx[:, :k]])
        levels.append(torch.full((k,), level, dtype=torch.int64, device=device))
    per_image = sum(len(lv) for lv in levels)
    scores = torch.cat(scores, dim=1).reshape(-1)
    boxes = torch.cat(boxes, dim=1).reshape(-1, 4)
    image = batch_idx.repeat_interleave(per_image)
    groups = image * len(levels) + torch.cat(levels).repeat(num_images)
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
    if not valid.all():
        if training:
            raise FloatingPointError(
                "Predicted boxes or scores contain Inf/NaN. Training has diverged."
            )
        boxes, scores, image, groups = boxes[valid], scores[valid], image[valid], groups[valid]
    # Each box clipped to its image, as ``Boxes.clip``: (M, 4) bounds w, h, w, h.
    bounds = torch.tensor(image_sizes, dtype=boxes.dtype, device=device)[image][:, [1, 0, 1, 0]]
    boxes = torch.minimum(boxes.clamp(min=0), bounds)
    nonempty = ((boxes[:, 2:] - boxes[:, :2]) > min_box_size).all(dim=1)
    if not nonempty.all():
        boxes, scores = boxes[nonempty], scores[nonempty]
        image, groups = image[nonempty], groups[nonempty]
    keep = batched_nms(boxes, scores, groups, nms_thresh)
    # ``keep`` is by decreasing logit over all images; a stable sort by image keeps that order.
    keep = keep[torch.sort(image[keep], stable=True).indices]
    counts = torch.bincount(image[keep], minlength=num_images).tolist()
    results = []
    for size_i, k in zip(image_sizes, keep.split(counts)):
        k = k[:post_nms_topk]
        res = Instances(size_i)
        res.proposal_boxes = Boxes(boxes[k])
        res.objectness_logits = scores[k]
        results.append(res)
    return results


def batched_fast_rcnn_inference(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    image_shapes: List[Tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> Tuple[List[Instances], List[torch.Tensor]]:
    """detectron2's ``fast_rcnn_inference`` with one ``batched_nms`` over every image (groups
    image x class, so each image's classes are suppressed apart, as there).

    Args:
        boxes: per image ``(Ri, C*4)`` (or ``(Ri, 4)``, class-agnostic) predicted boxes.
        scores: per image ``(Ri, C+1)`` class probabilities, the background last.
        image_shapes: per image ``(h, w)``, to clip the boxes.

    Returns:
        per image ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``) by decreasing score,
        at most ``topk_per_image`` (all when negative), and the kept boxes' proposal indices.
    """
    flat_boxes, flat_scores, inds, image_of = [], [], [], []
    for i, (b, s, (h, w)) in enumerate(zip(boxes, scores, image_shapes)):
        valid = torch.isfinite(b).all(dim=1) & torch.isfinite(s).all(dim=1)
        if not valid.all():
            b, s = b[valid], s[valid]
        s = s[:, :-1]
        b = b.reshape(len(b), -1, 4)
        b = torch.minimum(
            b.clamp(min=0), torch.tensor([w, h, w, h], dtype=b.dtype, device=b.device)
        )
        mask = s > score_thresh
        ind = mask.nonzero()
        flat_boxes.append(b[ind[:, 0], 0] if b.shape[1] == 1 else b[mask])
        flat_scores.append(s[mask])
        inds.append(ind)
        image_of.append(torch.full((len(ind),), i, dtype=torch.int64, device=ind.device))
    all_boxes, all_scores = torch.cat(flat_boxes), torch.cat(flat_scores)
    all_inds, all_images = torch.cat(inds), torch.cat(image_of)
    num_classes = scores[0].shape[1] - 1
    keep = batched_nms(all_boxes, all_scores, all_images * num_classes + all_inds[:, 1], nms_thresh)
    keep = keep[torch.sort(all_images[keep], stable=True).indices]
    counts = torch.bincount(all_images[keep], minlength=len(image_shapes)).tolist()
    results, kept = [], []
    for (h, w), k in zip(image_shapes, keep.split(counts)):
        if topk_per_image >= 0:
            k = k[:topk_per_image]
        res = Instances((h, w))
        res.pred_boxes = Boxes(all_boxes[k])
        res.scores = all_scores[k]
        res.pred_classes = all_inds[k, 1]
        results.append(res)
        kept.append(all_inds[k, 0])
    return results, kept


def _best(fn, repeat: int, inner: int) -> float:
    """Best over ``repeat`` rounds of the mean seconds of ``inner`` calls of ``fn``."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return min(times)


def _pair(rows, what, reference, batched, call_args, fields, args) -> bool:
    """Times detectron2's per-image ``reference`` and the ``batched`` stage on ``call_args`` (two
    rows) and returns whether their Instances hold equal ``fields``."""
    for how, fn in (("per image (detectron2)", reference), ("batched", batched)):
        rows.append((f"  {what}, {how}", _best(lambda: fn(*call_args), args.repeat, args.inner)))
    return _same(reference(*call_args), batched(*call_args), fields)


def _same(a, b, fields) -> bool:
    """Whether two lists of Instances hold equal ``fields`` (``Boxes`` compared by tensor)."""

    def value(inst, field):
        v = getattr(inst, field)
        return getattr(v, "tensor", v)

    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(value(x, f), value(y, f)) for f in fields)
        for x, y in zip(a, b)
    )


def _frames(dataset: str, count: int):
    """``count`` BGR frames ``(3, h, w)`` uint8 of the data set's first videos, in order."""
    from detectron2.data import DatasetCatalog

    from aamn.data.video import read_frames

    out, seen = [], set()
    for rec in DatasetCatalog.get(dataset):
        if rec["file_name"] in seen:
            continue
        seen.add(rec["file_name"])
        n = min(rec["length"], count - len(out))
        frames = read_frames(rec["file_name"], list(range(1, n + 1)), format="BGR")
        out.extend(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in frames)
        if len(out) >= count:
            return out
    raise ValueError(f"{dataset} has fewer than {count} frames")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default="synthetic_a2d_val")
    parser.add_argument("--frames", type=int, default=12, help="frames per pass")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tol", type=float, default=0.5, help="pixels: a box 'changed' beyond it")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_backbone
    from detectron2.modeling.proposal_generator import build_proposal_generator
    from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
    from detectron2.modeling.roi_heads import build_roi_heads
    from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
    from detectron2.structures import ImageList

    import aamn.data.datasets.builtin  # noqa: F401  (registers the data sets)
    from aamn.config import get_aamn_cfg
    from aamn.modeling.shared_detector import sized_images

    cfg = get_aamn_cfg(args.config_file, args.opts)
    backbone = build_backbone(cfg)
    rpn = build_proposal_generator(cfg, backbone.output_shape())
    heads = build_roi_heads(cfg, backbone.output_shape())
    detector = torch.nn.ModuleDict(
        {"backbone": backbone, "proposal_generator": rpn, "roi_heads": heads}
    ).eval()
    DetectionCheckpointer(detector).load(cfg.MODEL.WEIGHTS)

    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    frames = [(f.float() - mean) / std for f in _frames(args.dataset, args.frames)]
    # Padded to the backbone's divisibility as detectron2's models do.
    padded = ImageList.from_tensors(frames, backbone.size_divisibility)
    size = tuple(frames[0].shape[-2:])
    sizes = padded.image_sizes
    rows = []
    with torch.inference_mode():
        features = backbone(padded.tensor)
        images = sized_images(sizes, features)
        feats = [features[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(feats)
        logits, deltas = rpn.rpn_head(feats)
        logits = [s.permute(0, 2, 3, 1).flatten(1) for s in logits]
        deltas = [
            d.view(d.shape[0], -1, rpn.anchor_generator.box_dim, d.shape[-2], d.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for d in deltas
        ]
        props = rpn.predict_proposals(anchors, logits, deltas, sizes)

        import aamn.modeling.rpn as rpn_module

        predictor = heads.box_predictor

        def batched_inference(predictions, proposals):
            return batched_fast_rcnn_inference(
                predictor.predict_boxes(predictions, proposals),
                predictor.predict_probs(predictions, proposals),
                [x.image_size for x in proposals],
                predictor.test_score_thresh,
                predictor.test_nms_thresh,
                predictor.test_topk_per_image,
            )

        def stages(batched: bool, bf16: bool):
            """The RPN (its head included) and the box head on the backbone's maps, as the model
            runs them; ``batched``: with the two loops batched."""
            heads.inference_bf16 = bf16
            if not batched:
                p, _ = rpn(images, features, None)
                return heads._forward_box(features, p)
            rpn_module.find_top_rpn_proposals = find_top_proposals_batched
            predictor.inference = batched_inference
            try:
                p, _ = rpn(images, features, None)
                return heads._forward_box(features, p)
            finally:
                rpn_module.find_top_rpn_proposals = find_top_rpn_proposals
                del predictor.inference

        for name, batched, bf16 in (
            ("RPN and box head, the model's loops (before)", False, False),
            ("RPN and box head, both loops batched", True, False),
            ("RPN and box head, box head in bf16", False, True),
        ):
            rows.append((name, _best(lambda: stages(batched, bf16), args.repeat, args.inner)))
        same_whole = _same(stages(False, False), stages(True, False), ("pred_boxes", "scores"))

        decoded = rpn._decode_proposals(anchors, deltas)
        pre, post = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
        nms_args = (decoded, logits, sizes, rpn.nms_thresh, pre, post, rpn.min_box_size, False)
        same_rpn = _pair(
            rows,
            "RPN NMS",
            find_top_rpn_proposals,
            find_top_proposals_batched,
            nms_args,
            ("proposal_boxes", "objectness_logits"),
            args,
        )

        box_features = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in props]
        )

        def head(bf16: bool):
            if not bf16:
                return heads.box_predictor(heads.box_head(box_features))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                x = heads.box_head(box_features)
            return heads.box_predictor(x.float())

        rows.append(
            ("  box head layers, float32", _best(lambda: head(False), args.repeat, args.inner))
        )
        rows.append(("  box head layers, bf16", _best(lambda: head(True), args.repeat, args.inner)))
        predictions = head(False)
        inf_args = (
            predictor.predict_boxes(predictions, props),
            predictor.predict_probs(predictions, props),
            sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        same_infer = _pair(
            rows,
            "box inference",
            lambda *a: fast_rcnn_inference(*a)[0],
            lambda *a: batched_fast_rcnn_inference(*a)[0],
            inf_args,
            ("pred_boxes", "scores", "pred_classes"),
            args,
        )

        ref, low = stages(False, False), stages(False, True)
        changed = 0
        for a, b in zip(ref, low):
            n = min(len(a), len(b), 6)
            if (
                min(len(a), 6) != min(len(b), 6)
                or not torch.equal(a.pred_classes[:n], b.pred_classes[:n])
                or (a.pred_boxes.tensor[:n] - b.pred_boxes.tensor[:n]).abs().max() > args.tol
            ):
                changed += 1
    total = rows[0][1]
    print(f"{args.frames} frames of {size[0]} x {size[1]}, {args.threads} threads; ms per pass")
    for name, t in rows:
        print(f"{name:48s} {t * 1e3:8.3f} ms  ({t / total * 100:5.1f} % of before)")
    print(f"the batched RPN and box head keep detectron2's detections: {same_whole}")
    print(f"the batched RPN NMS keeps the same proposals: {same_rpn}")
    print(f"the batched box inference keeps the same detections: {same_infer}")
    print(f"frames whose top-6 detections change in bf16: {changed} of {len(ref)}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
