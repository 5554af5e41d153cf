"""detectron2's RPN with its per-level NMS run on a prefix of the candidates first: the same
proposals, less NMS on CPU.

detectron2's ``find_top_rpn_proposals`` keeps the ``pre_nms_topk`` best candidates of every FPN
level, runs NMS per level and keeps the ``post_nms_topk`` best survivors over all levels.  Greedy
NMS decides a box from the boxes scored above it only, so running it on the best ``P`` candidates
of each level gives exactly the full run's survivors among them.  The full run's top
``post_nms_topk`` is then the prefix run's whenever the prefix run has ``post_nms_topk`` survivors
all scored above every candidate the prefix left out (the ``P + 1``-th of each cut level): a box
beyond a prefix scores below them, so it cannot enter.  Images where this does not hold are
computed again in full.  ``P = 1.5 x post_nms_topk`` (300 of 600 in the synthetic detector's
training); how often images pass the check and what it saves are in BENCHMARKS.md.  The order among
exactly equal scores is NMS's own (as between detectron2's two ``batched_nms`` strategies).

``PrefixNMSRPN`` is registered in detectron2's ``PROPOSAL_GENERATOR_REGISTRY``: the detector configs
name it (``MODEL.PROPOSAL_GENERATOR.NAME: "PrefixNMSRPN"``, ``configs/Base-Detector.yaml``).
"""

import math

import torch
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.proposal_generator.rpn import RPN as _D2RPN

__all__ = ["PrefixNMSRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class PrefixNMSRPN(_D2RPN):
    """detectron2's ``RPN``, its proposals found on a prefix of each level first (module
    docstring)."""

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        """As detectron2's: ``N`` Instances with ``proposal_boxes``, ``objectness_logits``.

        ``pred_objectness_logits``: per level ``(N, Hi*Wi*A)``; ``pred_anchor_deltas``: per level
        ``(N, Hi*Wi*A, 4)``.
        """
        pre, post = self.pre_nms_topk[self.training], self.post_nms_topk[self.training]
        prefix = math.ceil(1.5 * post)
        if prefix >= pre:
            return super().predict_proposals(
                anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes
            )
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)

            def top(indices, per_level):
                return find_top_rpn_proposals(
                    [p[indices] for p in proposals],
                    [s[indices] for s in pred_objectness_logits],
                    [image_sizes[i] for i in indices],
                    self.nms_thresh,
                    per_level,
                    post,
                    self.min_box_size,
                    self.training,
                )

            everyone = list(range(len(image_sizes)))
            results = top(everyone, prefix)
            # The best candidate each cut level left out, per image.
            left_out = torch.full((len(everyone),), -math.inf, device=proposals[0].device)
            for scores in pred_objectness_logits:
                if scores.shape[1] > prefix:
                    kth = scores.detach().topk(prefix + 1, dim=1).values[:, prefix]
                    left_out = torch.maximum(left_out, kth)
            redo = [
                i
                for i, (res, bound) in enumerate(zip(results, left_out))
                if len(res) < post or not bool(res.objectness_logits.min() > bound)
            ]
            if redo:
                for i, res in zip(redo, top(redo, pre)):
                    results[i] = res
            return results
