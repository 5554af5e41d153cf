"""Checkpoint files of the project's models: reading, writing, strict loading and resuming.

The RGB backbone of every two-stream model is named ``backbone.*`` like detectron2's
``GeneralizedRCNN``, so any detectron2 checkpoint (a detector trained with this project's detector
stage, a model-zoo ``.pkl`` or a Caffe2 / ImageNet ``.pkl`` matched by detectron2's name
heuristics) loads into it.  ``StreamCheckpointer`` (a ``DetectionCheckpointer``) keeps the file
I/O; what a file's names become in the model (VGG-16 formats, model-zoo names, the ``module.``
prefix, the model's ``checkpoint_renames``, the Flow stream filled from the RGB weights) is
``aamn.modeling.checkpoint_conversions``, pure functions applied in a listed order.  It adds:

* the vocabulary: ``save`` writes the words of the model's query encoder into the checkpoint
  (entry ``"vocabulary"``), so ``--eval-only``, resume and the tools rebuild the model from
  ``MODEL.WEIGHTS`` alone (``aamn.modeling.language.vocabulary_from_config``); ``load`` refuses a
  checkpoint whose vocabulary differs from the model's, naming both;
* untrusted files: a ``.pkl`` is read by ``aamn.utils.safe_pickle`` (names and numpy arrays only,
  nothing in the file is called), anything else by ``torch.load(weights_only=True)``; a URL is
  fetched first (``aamn.utils.io.local_weights_file``); a file that cannot be read raises
  ``CheckpointFileError`` naming it;
* whole or nothing where a partly loaded model would be wrong: with ``strict`` (evaluation,
  inference, and every resume) a missing, unexpected or wrongly shaped parameter raises
  ``IncompatibleCheckpointError`` naming the file and the parameters.  Starting a training from
  other weights (``MODEL.WEIGHTS`` without ``--resume``) keeps detectron2's behaviour: what matches
  loads, the rest is listed in the log;
* crash safety: a checkpoint and ``last_checkpoint`` are written to a temporary file and renamed,
  so a killed run never leaves a half-written one; resuming from a ``last_checkpoint`` that cannot
  be read (a truncated file) falls back to the newest intact ``model_*.pth`` with a warning naming
  the broken one, or stops naming every file it tried.

A full checkpoint (with ``flow_backbone.*``) loads unchanged, so the same class serves to resume
training and to evaluate.  Usage::

    checkpointer = StreamCheckpointer(model, cfg.OUTPUT_DIR)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
"""

import logging
import os
import re
from typing import List, Optional

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.io import (
    WeightsFetchError,
    atomic_path,
    fetched_here,
    in_weights_cache,
    load_plain_pth,
    local_weights_file,
)
from ..utils.safe_pickle import UnsafePickleError, safe_load
from .checkpoint_conversions import Target, convert_checkpoint
from .vocabulary import VOCABULARY_KEY, model_vocabulary, resolve_vocabulary

__all__ = [
    "build_trained_model",
    "CheckpointFileError",
    "IncompatibleCheckpointError",
    "StreamCheckpointer",
    "VocabularyMismatchError",
    "load_pretrained_streams",
    "resume_candidates",
]

logger = logging.getLogger(__name__)


class VocabularyMismatchError(ValueError):
    """A checkpoint's vocabulary differs from the one the model was built with."""


class CheckpointFileError(ValueError):
    """A weights file cannot be read (missing, truncated, another format, or unsafe)."""


class IncompatibleCheckpointError(ValueError):
    """A checkpoint does not fill the model exactly (strict loading)."""


_ITERATION_FILE = re.compile(r"^model_(\d+)\.pth$")


def resume_candidates(save_dir: str) -> List[str]:
    """The checkpoints to resume from, best first: the one ``last_checkpoint`` names, then every
    other ``model_<iteration>.pth`` of ``save_dir``, newest iteration first."""
    out = []
    tag = os.path.join(save_dir, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            out.append(os.path.join(save_dir, f.read().strip()))
    numbered = []
    for name in os.listdir(save_dir) if os.path.isdir(save_dir) else ():
        m = _ITERATION_FILE.match(name)
        if m:
            numbered.append((int(m.group(1)), os.path.join(save_dir, name)))
    out += [p for _, p in sorted(numbered, reverse=True) if p not in out]
    return out


def read_weights_file(path: str):
    """The dict of a weights file: ``.pkl`` through the plain-data unpickler, any other file
    through ``torch.load(weights_only=True)``.  Raises ``CheckpointFileError`` naming the file."""
    if not os.path.isfile(path):
        raise CheckpointFileError(f"Checkpoint not found: {path}")
    try:
        if path.endswith(".pkl"):
            data = safe_load(path, "model-zoo weights file")
        else:
            data = load_plain_pth(path)
    except UnsafePickleError as e:
        raise CheckpointFileError(str(e)) from e
    except Exception as e:  # noqa: BLE001 - truncated file, foreign format, unsafe global
        fetched = ""
        if fetched_here(path):  # this process fetched it (a transfer cut short): fetch it again
            os.remove(path)
            fetched = (
                "; it was fetched from a URL into the cache and is removed, so that the next "
                "run fetches it again"
            )
        elif in_weights_cache(path):  # placed by hand, or by an earlier run: the user's to mend
            fetched = (
                "; it lies in the cache of fetched weights: delete it (the next run fetches it "
                "again) or place the whole file there"
            )
        raise CheckpointFileError(
            f"Cannot read the checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]} "
            "(a truncated or foreign file; .pth files are read with weights_only=True, which "
            f"admits tensors and plain data only){fetched}"
        ) from e
    if not isinstance(data, dict):
        raise CheckpointFileError(
            f"{path} holds a {type(data).__name__}; a checkpoint is a dict of weights"
        )
    return data


class StreamCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files go through ``checkpoint_conversions`` (the Flow
    backbone filled from RGB weights, other layouts' names) and carry the vocabulary.

    Name-matching heuristics (Caffe2 / pycls files) are applied to the RGB backbone only, so a
    checkpoint key never matches both streams.
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        init_flow_from_rgb: Optional[bool] = None,
        strict: bool = False,
        **checkpointables,
    ):
        """
        Args:
            model, save_dir, checkpointables: as ``DetectionCheckpointer``.
            init_flow_from_rgb: copy ``backbone.*`` to ``flow_backbone.*`` when the file has no
                Flow weights.  None: the model's ``init_flow_from_rgb`` attribute, True when it has
                none.
            strict: every parameter of the model must come from the file with its shape, and the
                file must hold no other (else ``IncompatibleCheckpointError``).  Resuming is
                always strict.
        """
        super().__init__(model, save_dir, **checkpointables)
        if init_flow_from_rgb is None:
            init_flow_from_rgb = bool(getattr(self._unwrapped(), "init_flow_from_rgb", True))
        self.init_flow_from_rgb = init_flow_from_rgb
        self.strict = strict
        # Saved into every checkpoint: ``{"training_data": ..., "solver": ...}`` set by the
        # trainer (what the model was trained on, and the optimizer settings a resume keeps).
        self.extra_data = {}
        self._loading = None

    def _unwrapped(self):
        return getattr(self.model, "module", self.model)

    def save(self, name: str, **kwargs) -> None:
        """fvcore's ``save`` (model, checkpointables, ``kwargs``) plus the vocabulary, written to a
        temporary file and renamed: a killed process leaves the previous checkpoint intact."""
        if not self.save_dir or not self.save_to_disk:
            return
        vocab = model_vocabulary(self._unwrapped())
        if vocab is not None:
            kwargs[VOCABULARY_KEY] = list(vocab.words)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.extra_data)
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        try:
            with atomic_path(save_file) as tmp:
                torch.save(data, tmp)
            self.tag_last_checkpoint(basename)
        except (OSError, RuntimeError) as e:  # torch.save's stream error on a full disk
            raise CheckpointFileError(
                f"Cannot write the checkpoint {save_file}: {str(e).splitlines()[0]} (is the disk "
                "full?).  Nothing was replaced: the checkpoints written before are intact"
            ) from None

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_path(os.path.join(self.save_dir, "last_checkpoint")) as tmp:
            with open(tmp, "w") as f:
                f.write(last_filename_basename)

    def load(self, path: str, checkpointables=None):
        """Load ``path``: a local file or a URL (``local_weights_file``), read safely."""
        try:
            path = local_weights_file(path) if path else path
        except WeightsFetchError as e:
            raise CheckpointFileError(str(e)) from None
        if path and not os.path.isfile(path):
            raise CheckpointFileError(f"Checkpoint not found: {path}")
        required = getattr(self._unwrapped(), "required_weights", None)
        if not path and required:
            raise CheckpointFileError(f"MODEL.WEIGHTS is empty: {required[1]}")
        self._loading = path
        try:
            return super().load(path, checkpointables)
        finally:
            self._loading = None

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Resume (strictly) from the newest intact checkpoint of ``save_dir`` when ``resume`` and
        one exists; else load ``path`` (weights only).  A ``last_checkpoint`` that cannot be read
        is reported and the next newer ``model_<iteration>.pth`` is tried."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        broken = []
        strict, self.strict = self.strict, True
        try:
            for candidate in resume_candidates(self.save_dir):
                try:
                    # The file is read (``_load_file``) before anything of the model changes.
                    extra = self.load(candidate)
                except CheckpointFileError as e:
                    broken.append(candidate)
                    self.logger.warning(f"Cannot resume from {candidate}: {e}")
                    continue
                if broken:
                    self.logger.warning(
                        f"Resumed from {candidate}, the newest intact checkpoint (unreadable: "
                        f"{', '.join(broken)})"
                    )
                return extra
        finally:
            self.strict = strict
        raise CheckpointFileError(
            f"Cannot resume in {self.save_dir}: no intact checkpoint (unreadable: "
            f"{', '.join(broken)}).  Remove them to start again, or resume from a copy"
        )

    def _load_file(self, filename):
        """detectron2's formats (model-zoo ``.pkl``, pycls ``.pyth``, a checkpoint or a bare state
        dict), each read safely by ``read_weights_file``."""
        data = read_weights_file(filename)
        if filename.endswith(".pyth"):
            if "model_state" not in data:
                raise CheckpointFileError(
                    f"Cannot load the .pyth file {filename}: pycls checkpoints hold 'model_state'"
                )
            model_state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        if not filename.endswith(".pkl"):
            return data if "model" in data else {"model": data}
        if "model" in data and "__author__" in data:
            self.logger.info("Reading a file from '{}'".format(data["__author__"]))
            return data
        if "blobs" in data:
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _check_vocabulary(self, checkpoint) -> None:
        words = checkpoint.pop(VOCABULARY_KEY, None)
        vocab = model_vocabulary(self._unwrapped())
        if words is None or vocab is None or list(words) == vocab.words:
            return
        raise VocabularyMismatchError(
            f"The checkpoint {self._loading} was trained with a vocabulary of {len(words)} words, "
            f"the model was built with {len(vocab)} words from "
            f"{getattr(vocab, 'source', 'an unknown source')}; they differ "
            f"(first difference at id {_first_difference(words, vocab.words)}).  Build the model "
            "with the checkpoint's vocabulary (leave MODEL.LANGUAGE.VOCAB_FILE empty, or point it "
            "at the checkpoint)"
        )

    def _conversion_target(self, checkpoint, model_state) -> Target:
        from .backbone.vgg import VGG16, is_vgg16_file

        model = self._unwrapped()
        vgg16 = isinstance(getattr(model, "backbone", None), VGG16)
        vgg16_file = vgg16 and is_vgg16_file(checkpoint["model"]) is not None
        return Target(
            state=model_state,
            vgg16_backbone=vgg16,
            vgg16_heads=tuple(getattr(model, "vgg16_box_heads", ())),
            renames=getattr(model, "checkpoint_renames", None) or {},
            init_flow_from_rgb=self.init_flow_from_rgb,
            # a VGG-16 file is matched by its own names, never by detectron2's heuristics
            matching_heuristics=bool(checkpoint.get("matching_heuristics")) and not vgg16_file,
            caffe2=checkpoint.get("__author__", None) == "Caffe2",
        )

    def _load_model(self, checkpoint):
        """The file's weights through ``checkpoint_conversions.CONVERSIONS``, then detectron2's
        loading (strict when ``self.strict``)."""
        self._check_vocabulary(checkpoint)
        model_state = self._unwrapped().state_dict()
        target = self._conversion_target(checkpoint, model_state)
        checkpoint["model"] = convert_checkpoint(checkpoint["model"], target)
        checkpoint["matching_heuristics"] = False  # applied above, on the RGB backbone only
        incompatible = super()._load_model(checkpoint)
        if self.strict and incompatible is not None:
            self._check_complete(incompatible)
        self._check_required(incompatible)
        return incompatible

    def _check_required(self, incompatible) -> None:
        """A model with ``required_weights`` (``(prefixes, why)``: parameters that must come from
        the file, as the shared detector's) refuses a file that leaves one of them unfilled."""
        required = getattr(self._unwrapped(), "required_weights", None)
        if not required or incompatible is None:
            return
        prefixes, why = required
        unfilled = [
            k
            for k in list(incompatible.missing_keys)
            + [k for k, _, _ in incompatible.incorrect_shapes]
            if k.startswith(tuple(prefixes))
        ]
        if unfilled:
            raise IncompatibleCheckpointError(
                f"{self._loading} leaves {len(unfilled)} parameters of the model unfilled (e.g. "
                f"{', '.join(unfilled[:3])}): {why}"
            )

    def _check_complete(self, incompatible) -> None:
        problems = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for what, keys in (
                ("missing from the file", list(incompatible.missing_keys)),
                ("not in the model", list(incompatible.unexpected_keys)),
                (
                    "of another shape",
                    [
                        f"{k} {tuple(a)} in the file, {tuple(b)} in the model"
                        for k, a, b in incompatible.incorrect_shapes
                    ],
                ),
            )
            if keys
        ]
        if problems:
            raise IncompatibleCheckpointError(
                f"The checkpoint {self._loading} does not fit the model built from the config: "
                f"parameters {'; '.join(problems)}.  It was written for another config or model "
                "(check MODEL.META_ARCHITECTURE and the sizes in the config it was trained with)"
            )


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


def build_trained_model(cfg):
    """A trained model for inference: its vocabulary resolved (the checkpoint's, or the config's
    file; never built from data: ``resolve_vocabulary``), built, ``MODEL.WEIGHTS`` loaded whole
    (strict), in eval mode.  ``cfg`` gets its ``MODEL.LANGUAGE.VOCAB_FILE``.

    Returns:
        ``(model, extra, vocabulary)``: the checkpoint's other entries (``extra``, e.g. the
        proposal detector it records) and the model's vocabulary (None for a model without).
    """
    from detectron2.modeling import build_model

    resolve_vocabulary(cfg)
    model = build_model(cfg).eval()
    extra = StreamCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.COMPILE_BACKBONES:
        from .compile import compile_backbones

        compile_backbones(model)
    return model, extra, model_vocabulary(model)
