"""Loading pretrained weights into both streams of AAMN.

The RGB backbone of ``AAMN`` is named ``backbone.*`` like detectron2's ``GeneralizedRCNN``, so any
detectron2 checkpoint (a detector trained with this project's detector stage, a model-zoo ``.pkl``
or a Caffe2 / ImageNet ``.pkl`` matched by detectron2's name heuristics) loads into it.
``AAMNCheckpointer`` additionally initialises the Flow backbone ``flow_backbone.*`` from the same
file: when the loaded weights have no ``flow_backbone.*`` entry, every ``backbone.*`` weight is
copied to ``flow_backbone.*`` as it is (nothing is adapted: the flow input has 3 channels like
RGB).  A full AAMN checkpoint (which has ``flow_backbone.*``) loads unchanged, so the same class
serves to resume training and to evaluate.

Usage (e.g. in a trainer)::

    checkpointer = AAMNCheckpointer(model, cfg.OUTPUT_DIR)  # MODEL.AAMN.INIT_FLOW_FROM_RGB
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)

or ``load_pretrained_streams(model, path)``.
"""
import logging
from typing import Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

__all__ = ["AAMNCheckpointer", "load_pretrained_streams"]

logger = logging.getLogger(__name__)

RGB_PREFIX = "backbone."
FLOW_PREFIX = "flow_backbone."


class AAMNCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also fills the Flow backbone from RGB backbone weights.

    Name-matching heuristics (Caffe2 / pycls files) are applied to the RGB backbone only, so a
    checkpoint key never matches both streams.
    """

    def __init__(self, model, save_dir: str = "", *, init_flow_from_rgb: Optional[bool] = None, **checkpointables):
        """
        Args:
            model, save_dir, checkpointables: as ``DetectionCheckpointer``.
            init_flow_from_rgb: copy ``backbone.*`` to ``flow_backbone.*`` when the file has no
                Flow weights.  None: the model's ``init_flow_from_rgb`` attribute
                (``MODEL.AAMN.INIT_FLOW_FROM_RGB``), True when it has none.
        """
        super().__init__(model, save_dir, **checkpointables)
        if init_flow_from_rgb is None:
            init_flow_from_rgb = bool(getattr(self.model, "init_flow_from_rgb", True))
        self.init_flow_from_rgb = init_flow_from_rgb

    def _load_model(self, checkpoint):
        model_state = self.model.state_dict()
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            rgb_state = {k: v for k, v in model_state.items() if k.startswith(RGB_PREFIX)}
            checkpoint["model"] = align_and_update_state_dicts(
                rgb_state, checkpoint["model"], c2_conversion=checkpoint.get("__author__", None) == "Caffe2"
            )
            checkpoint["matching_heuristics"] = False
        weights = checkpoint["model"]
        has_flow_model = any(k.startswith(FLOW_PREFIX) for k in model_state)
        has_flow_weights = any(k.startswith(FLOW_PREFIX) or k.startswith("module." + FLOW_PREFIX) for k in weights)
        if self.init_flow_from_rgb and has_flow_model and not has_flow_weights:
            copied = 0
            for k in list(weights.keys()):
                wrapper = "module." if k.startswith("module.") else ""
                name = k[len(wrapper) :]
                if name.startswith(RGB_PREFIX):
                    weights[wrapper + FLOW_PREFIX + name[len(RGB_PREFIX) :]] = weights[k]
                    copied += 1
            logger.info("Initialised the Flow backbone with %d RGB backbone weights of the checkpoint", copied)
        return super()._load_model(checkpoint)


def load_pretrained_streams(model, path: str, init_flow_from_rgb: Optional[bool] = True):
    """Load ``path`` (any detectron2 checkpoint / ``.pkl``) into ``model``: ``backbone.*`` into
    the RGB backbone and, when ``init_flow_from_rgb``, the same weights into ``flow_backbone.*``.

    Returns the checkpointer's extra data (``DetectionCheckpointer.load``).
    """
    return AAMNCheckpointer(model, init_flow_from_rgb=init_flow_from_rgb).load(path, checkpointables=[])
