"""The proposal detector: a detectron2 detector run on frames, whose top-k boxes AAMN links into
tubes (``datasets/prepare_proposals.py`` writes them for data sets; ``VideoPredictor`` runs it on a
user's video), and the record of it that AAMN's checkpoint keeps (``PROPOSAL_DETECTOR_KEY``), so a
trained model names the detector its proposals came from."""

import logging
import os
from typing import List

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..config import check_device, check_weights, config_from_text, get_aamn_cfg
from ..modeling.checkpoint import StreamCheckpointer
from ..modeling.shared_detector import PROPOSAL_SCORE_THRESH, as_numpy_proposals, top_proposals
from ..utils.io import is_weights_url, local_weights_file

__all__ = ["PROPOSAL_DETECTOR_KEY", "ProposalDetector", "build_proposal_detector"]

logger = logging.getLogger(__name__)

# The entry of AAMN's checkpoint that records its proposal detector (config text, weights location
# and SHA-256, top-k, NMS), written by the trainer from the training proposal files.
PROPOSAL_DETECTOR_KEY = "proposal_detector"


class ProposalDetector:
    """A detectron2 detector on frames: the top-k boxes after class-agnostic NMS, with their
    objectness logits (what ``datasets/prepare_proposals.py`` writes for data sets).

    Test-time resize as detectron2's ``DefaultPredictor`` (``INPUT.MIN_SIZE_TEST`` /
    ``MAX_SIZE_TEST``); boxes come back at the frame's size.
    """

    def __init__(self, cfg, topk: int = 20, nms: float = 0.7):
        """
        Args:
            cfg: a detector config with ``MODEL.WEIGHTS`` (any detectron2 detector).
            topk: boxes kept per frame.
            nms: class-agnostic NMS IoU threshold.

        Raises:
            FileNotFoundError: ``MODEL.WEIGHTS`` is empty or names no file.
        """
        check_weights(cfg, "the proposal detector's trained checkpoint")
        check_device(cfg)
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = PROPOSAL_SCORE_THRESH  # the top-k after NMS
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        StreamCheckpointer(self.model, strict=True).load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.format = cfg.INPUT.FORMAT
        self.topk, self.nms = int(topk), float(nms)

    @torch.no_grad()
    def __call__(self, frames_rgb: np.ndarray) -> List:
        """frames_rgb: uint8 ``(N, H, W, 3)`` RGB -> N tuples (boxes float32 ``(k, 4)`` XYXY,
        logits float32 ``(k,)``), sorted by decreasing score."""
        frames = np.asarray(frames_rgb)
        if self.format == "BGR":
            frames = frames[..., ::-1]
        h, w = frames.shape[1:3]
        inputs = []
        for f in frames:
            img = self.aug.get_transform(f).apply_image(np.ascontiguousarray(f))
            inputs.append(
                {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()), "height": h, "width": w}
            )
        return [
            as_numpy_proposals(*top_proposals(res["instances"].to("cpu"), self.topk, self.nms))
            for res in self.model(inputs)
        ]


def build_proposal_detector(record=None, config_file="", weights="", source=""):
    """The proposal detector of a model: the one its checkpoint (``source``) records
    (``record``: config text, weights location, SHA-256; ``Trainer`` stores it from the training
    proposal files), ``config_file`` and ``weights`` overriding the record's.

    The recorded config is read back as plain YAML (``get_aamn_cfg``).  A weights file whose
    SHA-256 differs from the recorded one loads with a warning naming both.

    Raises:
        ValueError: neither a record nor both overrides; or the config cannot be used.
        FileNotFoundError / CheckpointFileError: the weights cannot be found or read.
    """
    from ..data.proposals import file_sha256

    if record is None and not (config_file and weights):
        raise ValueError(
            f"The checkpoint {source} names no proposal detector (it was trained on proposal "
            "files without one): give the detector (--detector-config C --detector-weights W) "
            "or a proposal file (--proposals FILE)"
        )
    weights = weights or record["weights"]
    if config_file:
        cfg = get_aamn_cfg(config_file, ["MODEL.WEIGHTS", weights])
    else:
        cfg = config_from_text(
            record["config"],
            f"the proposal detector config of {source}",
            ["MODEL.WEIGHTS", weights],
        )
    if not is_weights_url(weights) and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"The proposal detector's weights {weights} are not found"
            + (
                f" (named by {source})"
                if record is not None and weights == record["weights"]
                else ""
            )
            + ": give them with --detector-weights"
        )
    detector = ProposalDetector(
        cfg, topk=(record or {}).get("topk", 20), nms=(record or {}).get("nms", 0.7)
    )
    if record is not None:
        digest = file_sha256(local_weights_file(weights))
        if digest != record["sha256"]:
            logger.warning(
                "The proposal detector's weights %s have SHA-256 %s, but %s was trained on "
                "proposals of weights with SHA-256 %s (%s): its proposals may differ",
                weights,
                digest,
                source,
                record["sha256"],
                record["weights"],
            )
    return detector
