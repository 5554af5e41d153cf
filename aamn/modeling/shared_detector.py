"""One backbone for the proposals and the RGB stream (``MODEL.AAMN.SHARED_DETECTOR``).

The paper runs AAMN's RGB stream as a Faster R-CNN (Sec. III-A): the detector's backbone gives the
feature maps its RPN and box head find the actors on, and the RGB RoI heads pool the same maps.
With ``SHARED_DETECTOR.ENABLED`` the model holds the proposal detector's parts under detectron2's
``GeneralizedRCNN`` names (``backbone``, ``proposal_generator``, ``roi_heads``), built from the
model's own config (``MODEL.RPN``, ``MODEL.ROI_HEADS``, ``MODEL.ROI_BOX_HEAD``, ...), so a trained
detector's checkpoint in ``MODEL.WEIGHTS`` fills them by name.  At inference the model finds its
proposals itself: every frame goes through the backbone once, for the proposals and for the RGB
stream.  In training the proposals come from the data set's files, made by the same detector
(``datasets/prepare_proposals.py``); the trainer checks that the files' detector is this one
(``check_proposal_detector``).

Two ways to train (``SHARED_DETECTOR.TRAIN_BACKBONE``):

* ``False``: the detector first, then frozen: the backbone keeps the detector's weights (no
  gradient, BatchNorm statistics fixed), so the proposals at inference are the files' own;
* ``True``: AAMN trains on top of the detector's features, the backbone fine-tuned by AAMN's
  losses; the RPN and box head stay the detector's and find the proposals on the fine-tuned maps
  at inference.

The detector's RPN and box head never train here (their weights stay the detector's).
"""

import logging
from typing import Dict, List, Tuple

import torch
from detectron2.structures import ImageList, Instances
from torchvision.ops import batched_nms

from ..config import ConfigError, config_from_text

__all__ = [
    "DETECTOR_KEYS",
    "TEST_TIME_KEYS",
    "PROPOSAL_SCORE_THRESH",
    "check_proposal_detector",
    "detect_proposals",
    "sized_images",
    "top_proposals",
]

logger = logging.getLogger(__name__)

# The box head keeps its low-scored detections (the proposals are the top-k after a class-agnostic
# NMS, not the confident detections); the proposal detector uses the same threshold.
PROPOSAL_SCORE_THRESH = 0.001

# The config keys that decide a detector's proposals: the model's and the proposal files' detector
# must agree on each (``check_proposal_detector``).
DETECTOR_KEYS = (
    "MODEL.BACKBONE",
    "MODEL.TINY",
    "MODEL.RESNETS",
    "MODEL.FPN",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.ANCHOR_GENERATOR",
    "MODEL.PROPOSAL_GENERATOR",
    "MODEL.RPN",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.IN_FEATURES",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.ROI_BOX_HEAD",
    "MODEL.SEPARABLE_ROI_ALIGN",
    "INPUT.FORMAT",
    "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST",
    "TEST.DETECTIONS_PER_IMAGE",
)
# The test-time choices: the shared model may find its proposals with smaller RPN sizes than the
# files' detector and with its box head in bf16 (each chosen on the validation split, by recall
# and by AAMN's accuracy: configs/synthetic/aamn.yaml, BENCHMARKS.md).
TEST_TIME_KEYS = (
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "MODEL.ROI_BOX_HEAD.INFERENCE_BF16",
)


def top_proposals(instances: Instances, topk: int, nms: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """A frame's proposals from its detections: class-agnostic NMS at ``nms``, the ``topk`` best,
    scores as logits.

    Args:
        instances: a detector's output of one frame (``pred_boxes``, ``scores``).

    Returns:
        boxes float ``(k, 4)`` XYXY and logits ``(k,)``, ``k <= topk``, by decreasing score.
    """
    boxes, scores = instances.pred_boxes.tensor, instances.scores
    keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), nms)[:topk]
    p = scores[keep].clamp(1e-6, 1 - 1e-6)
    return boxes[keep], torch.log(p / (1 - p))


def sized_images(image_sizes: List[Tuple[int, int]], features: Dict[str, torch.Tensor]):
    """The ``ImageList`` the detector's RPN and box head are called with on maps computed
    elsewhere: the frames' ``(h, w)`` before padding (to clip boxes) and their count; its tensor is
    a placeholder on the maps' device (they never read the pixels)."""
    any_map = next(iter(features.values()))
    return ImageList(any_map.new_zeros((len(image_sizes), 1, 1, 1)), list(image_sizes))


def detect_proposals(
    proposal_generator,
    roi_heads,
    features: Dict[str, torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    k: int,
    nms: float,
) -> torch.Tensor:
    """The proposals of ``N`` frames from their backbone features (the detector's RPN and box head,
    then ``top_proposals`` and ``aamn.data.proposals.pad_proposals``: exactly ``k`` per frame, as
    the proposal files give them).

    Args:
        features: the backbone's maps, ``(N, C, Hi, Wi)`` each.
        image_sizes: the ``(h, w)`` of each frame before padding.

    Returns:
        float ``(N, k, 4)`` XYXY boxes in the frames' pixels, by decreasing score.
    """
    from ..data.proposals import pad_proposals

    images = sized_images(image_sizes, features)
    proposals, _ = proposal_generator(images, features, None)
    detections, _ = roi_heads(images, features, proposals, None)
    out = []
    for inst, (h, w) in zip(detections, image_sizes):
        padded, _ = pad_proposals(*as_numpy_proposals(*top_proposals(inst, k, nms)), k, h, w)
        out.append(torch.from_numpy(padded))
    return torch.stack(out).to(images.tensor.device)


def _leaves(cfg, key: str) -> Dict[str, object]:
    """``{full key: value}`` of every leaf under ``key`` (``key`` itself when it is a leaf; an
    empty dict when the config lacks it)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    if not isinstance(node, dict):
        return {key: node}
    out = {}
    for name in node:
        out.update(_leaves(cfg, f"{key}.{name}"))
    return out


def check_proposal_detector(cfg, record) -> None:
    """Check that the training proposals were made by the detector the model shares its backbone
    with: the files' detector record (``proposal_file_detector``: its config text) against the
    model's config, key by key (``DETECTOR_KEYS``).

    Args:
        cfg: the model's config (``SHARED_DETECTOR.ENABLED``).
        record: the training proposal files' detector record, or None (files naming no detector:
            a warning).

    Raises:
        ConfigError: naming each key whose value differs, and both values.
    """
    if record is None:
        logger.warning(
            "MODEL.AAMN.SHARED_DETECTOR: the training proposal files name no detector, so they "
            "cannot be checked against the model's; its proposals at inference are its own"
        )
        return
    theirs = config_from_text(record["config"], "the proposal files' detector config")
    mine, files = {}, {}
    for key in DETECTOR_KEYS:
        mine.update(_leaves(cfg, key))
        files.update(_leaves(theirs, key))
    for key in TEST_TIME_KEYS:  # the model's own test-time choice (they do not touch training)
        mine.pop(key, None), files.pop(key, None)
    differ = [
        f"{key}: {mine.get(key)} here, {files.get(key)} in the files' detector"
        for key in sorted(set(mine) | set(files))
        if mine.get(key) != files.get(key)
    ]
    nms = float(cfg.MODEL.AAMN.SHARED_DETECTOR.NMS_THRESH)
    if "nms" in record and abs(float(record["nms"]) - nms) > 1e-9:
        differ.append(
            f"MODEL.AAMN.SHARED_DETECTOR.NMS_THRESH: {nms} here, --nms {record['nms']} in the files"
        )
    if differ:
        raise ConfigError(
            "MODEL.AAMN.SHARED_DETECTOR: the model's detector keys differ from those of the "
            f"detector that made the training proposals ({record.get('weights', '?')}): "
            + "; ".join(differ)
            + ".  Give the model the detector's keys (configs/synthetic/aamn.yaml copies "
            "configs/synthetic/detector.yaml's), or write the proposals with this detector"
        )


def as_numpy_proposals(boxes: torch.Tensor, logits: torch.Tensor):
    """``(boxes, logits)`` as float32 numpy arrays (the proposal files' types)."""
    return boxes.float().cpu().numpy(), logits.float().cpu().numpy()
