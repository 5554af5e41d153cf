"""Checkpoints of the project's models: both streams from one detectron2 file, and the vocabulary.

The RGB backbone of every two-stream model is named ``backbone.*`` like detectron2's
``GeneralizedRCNN``, so any detectron2 checkpoint (a detector trained with this project's detector
stage, a model-zoo ``.pkl`` or a Caffe2 / ImageNet ``.pkl`` matched by detectron2's name
heuristics) loads into it.  ``StreamCheckpointer`` (a ``DetectionCheckpointer``) adds:

* the Flow stream: when the loaded weights have no ``flow_backbone.*`` entry, every ``backbone.*``
  weight is copied to ``flow_backbone.*`` as it is (the flow input has 3 channels like RGB), unless
  the model's ``init_flow_from_rgb`` (``MODEL.INIT_FLOW_FROM_RGB``) is False;
* the vocabulary: ``save`` writes the words of the model's query encoder into the checkpoint
  (entry ``"vocabulary"``), so ``--eval-only``, resume and the tools rebuild the model from
  ``MODEL.WEIGHTS`` alone (``aamn.modeling.language.vocabulary_from_config``); ``load`` refuses a
  checkpoint whose vocabulary differs from the model's, naming both;
* renamed parameters: a model class may list ``checkpoint_renames`` (old prefix -> new), applied to
  checkpoints written before a restructure.

A full checkpoint (with ``flow_backbone.*``) loads unchanged, so the same class serves to resume
training and to evaluate.  Usage::

    checkpointer = StreamCheckpointer(model, cfg.OUTPUT_DIR)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
"""

import logging
from typing import Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from .language import VOCABULARY_KEY, WordEmbeddingEncoder

__all__ = [
    "StreamCheckpointer",
    "VocabularyMismatchError",
    "load_pretrained_streams",
    "model_vocabulary",
]

logger = logging.getLogger(__name__)

RGB_PREFIX = "backbone."
FLOW_PREFIX = "flow_backbone."


class VocabularyMismatchError(ValueError):
    """A checkpoint's vocabulary differs from the one the model was built with."""


def model_vocabulary(model):
    """The vocabulary of the model's query encoder(s) (one for all), or None for a model without."""
    vocabs = [m.vocab for m in model.modules() if isinstance(m, WordEmbeddingEncoder)]
    for v in vocabs[1:]:
        if v.words != vocabs[0].words:
            raise ValueError("The model's query encoders hold different vocabularies")
    return vocabs[0] if vocabs else None


class StreamCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that fills the Flow backbone from RGB weights, keeps the
    vocabulary in the checkpoint and renames parameters of an earlier layout.

    Name-matching heuristics (Caffe2 / pycls files) are applied to the RGB backbone only, so a
    checkpoint key never matches both streams.
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        init_flow_from_rgb: Optional[bool] = None,
        **checkpointables,
    ):
        """
        Args:
            model, save_dir, checkpointables: as ``DetectionCheckpointer``.
            init_flow_from_rgb: copy ``backbone.*`` to ``flow_backbone.*`` when the file has no
                Flow weights.  None: the model's ``init_flow_from_rgb`` attribute, True when it has
                none.
        """
        super().__init__(model, save_dir, **checkpointables)
        if init_flow_from_rgb is None:
            init_flow_from_rgb = bool(getattr(self._unwrapped(), "init_flow_from_rgb", True))
        self.init_flow_from_rgb = init_flow_from_rgb
        self._loading = None

    def _unwrapped(self):
        return getattr(self.model, "module", self.model)

    def save(self, name: str, **kwargs) -> None:
        vocab = model_vocabulary(self._unwrapped())
        if vocab is not None:
            kwargs[VOCABULARY_KEY] = list(vocab.words)
        super().save(name, **kwargs)

    def load(self, path: str, checkpointables=None):
        self._loading = path
        try:
            return super().load(path, checkpointables)
        finally:
            self._loading = None

    def _check_vocabulary(self, checkpoint) -> None:
        words = checkpoint.pop(VOCABULARY_KEY, None)
        vocab = model_vocabulary(self._unwrapped())
        if words is None or vocab is None or list(words) == vocab.words:
            return
        raise VocabularyMismatchError(
            f"The checkpoint {self._loading} was trained with a vocabulary of {len(words)} words, "
            "the model "
            f"was built with {len(vocab)} words from "
            f"{getattr(vocab, 'source', 'an unknown source')}; they differ "
            f"(first difference at id {_first_difference(words, vocab.words)}).  Build the model "
            "with the "
            "checkpoint's vocabulary (leave MODEL.LANGUAGE.VOCAB_FILE empty, or point it at the "
            "checkpoint)"
        )

    def _rename(self, weights, model_keys) -> None:
        renames = getattr(self._unwrapped(), "checkpoint_renames", None) or {}
        renamed = 0
        for k in list(weights.keys()):
            for old, new in renames.items():
                if k.startswith(old) and k not in model_keys:
                    weights[new + k[len(old) :]] = weights.pop(k)
                    renamed += 1
                    break
        if renamed:
            logger.info("Renamed %d parameters of a checkpoint of the earlier layout", renamed)

    def _vgg16_file(self, checkpoint, model_state) -> None:
        """A VGG-16 file (torchvision, Caffe or a detectron2 Faster R-CNN VGG-16) given to a model
        with a VGG-16 RGB stream: its convolutions go to ``backbone.*`` and its fc6 / fc7 to the
        model's ``vgg16_box_heads`` (``aamn.modeling.backbone.vgg``)."""
        from .backbone.vgg import VGG16, is_vgg16_file, vgg16_weights

        model = self._unwrapped()
        kind = is_vgg16_file(checkpoint["model"])
        if kind is None or not isinstance(getattr(model, "backbone", None), VGG16):
            return
        heads = [
            h for h in getattr(model, "vgg16_box_heads", ()) if f"{h}fc1.weight" in model_state
        ]
        checkpoint["model"] = vgg16_weights(checkpoint["model"], RGB_PREFIX, heads)
        checkpoint["matching_heuristics"] = False
        logger.info(
            "Loaded a VGG-16 file (%s names) into the RGB backbone and fc6 / fc7 of %s",
            kind,
            heads or "no head",
        )

    def _load_model(self, checkpoint):
        self._check_vocabulary(checkpoint)
        model_state = self._unwrapped().state_dict()
        self._vgg16_file(checkpoint, model_state)
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            rgb_state = {k: v for k, v in model_state.items() if k.startswith(RGB_PREFIX)}
            checkpoint["model"] = align_and_update_state_dicts(
                rgb_state,
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__", None) == "Caffe2",
            )
            checkpoint["matching_heuristics"] = False
        weights = checkpoint["model"]
        for k in list(weights.keys()):
            if k.startswith("module."):
                weights[k[len("module.") :]] = weights.pop(k)
        self._rename(weights, model_state.keys())
        has_flow_model = any(k.startswith(FLOW_PREFIX) for k in model_state)
        has_flow_weights = any(k.startswith(FLOW_PREFIX) for k in weights)
        if self.init_flow_from_rgb and has_flow_model and not has_flow_weights:
            copied = 0
            for k in list(weights.keys()):
                if k.startswith(RGB_PREFIX):
                    weights[FLOW_PREFIX + k[len(RGB_PREFIX) :]] = weights[k]
                    copied += 1
            logger.info(
                "Initialised the Flow backbone with %d RGB backbone weights of the checkpoint",
                copied,
            )
        return super()._load_model(checkpoint)


def _first_difference(a, b) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def load_pretrained_streams(model, path: str, init_flow_from_rgb: Optional[bool] = True):
    """Load ``path`` (any detectron2 checkpoint / ``.pkl``) into ``model``: ``backbone.*`` into
    the RGB backbone and, when ``init_flow_from_rgb``, the same weights into ``flow_backbone.*``.

    Returns the checkpointer's extra data (``DetectionCheckpointer.load``).
    """
    return StreamCheckpointer(model, init_flow_from_rgb=init_flow_from_rgb).load(
        path, checkpointables=[]
    )
