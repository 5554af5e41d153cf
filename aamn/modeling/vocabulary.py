"""The vocabulary a model is built with, decided in one place.

``resolve_vocabulary(cfg)`` decides it once, before a model is built, and sets
``MODEL.LANGUAGE.VOCAB_FILE`` to the file holding it (the query encoders only load that file:
``vocabulary_from_config``), in order:

1. ``MODEL.LANGUAGE.VOCAB_FILE`` as given (a ``vocab.json`` or a checkpoint that carries one);
2. resuming a training (``resumed``): the checkpoint it resumes from, or its ``vocab.json``;
3. the vocabulary of the checkpoint ``MODEL.WEIGHTS`` (``VOCABULARY_KEY``);
4. a ``vocab.json`` beside ``MODEL.WEIGHTS`` (a checkpoint that does not carry its vocabulary);
5. only for a training (``build``): built from the queries of ``DATASETS.TRAIN`` and saved to
   ``OUTPUT_DIR/vocab.json``; inference never builds one (a rebuilt vocabulary may number the
   words otherwise than the trained model, and it would be written into a training folder).

A data set is read only in the last case.  ``StreamCheckpointer`` writes the vocabulary into
every checkpoint (``VOCABULARY_KEY``) and refuses to load a checkpoint whose vocabulary differs
from the model's (``model_vocabulary``).
"""

import logging
import os
import tempfile
from typing import Optional

from detectron2.utils import comm

from aamn.data.text import Vocabulary, vocabulary_from_datasets
from aamn.utils.io import load_plain_pth, local_weights_file

__all__ = [
    "VOCABULARY_KEY",
    "checkpoint_vocabulary",
    "load_vocabulary",
    "model_vocabulary",
    "resolve_vocabulary",
    "vocabulary_from_config",
]

logger = logging.getLogger(__name__)

VOCABULARY_KEY = (
    "vocabulary"  # the entry of a checkpoint that holds its vocabulary (a list of words)
)


def checkpoint_vocabulary(path: str) -> Optional[Vocabulary]:
    """The vocabulary stored in the checkpoint ``path`` (``StreamCheckpointer`` writes it), else
    None.  Only ``.pth`` files are read (with ``weights_only=True``: no code runs); other files
    (model-zoo ``.pkl``) never carry one."""
    if not (path and path.endswith(".pth") and os.path.isfile(path)):
        return None
    try:
        data = load_plain_pth(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ValueError(f"Cannot read the checkpoint {path}: {e}") from e
    words = data.get(VOCABULARY_KEY) if isinstance(data, dict) else None
    if words is None:
        return None
    vocab = Vocabulary(words)
    vocab.source = f"the checkpoint {path}"
    vocab.with_weights = True  # its embeddings are in the same file
    return vocab


def load_vocabulary(path: str) -> Vocabulary:
    """A vocabulary from a ``vocab.json`` or from a checkpoint that carries one."""
    if path.endswith(".pth"):
        vocab = checkpoint_vocabulary(path)
        if vocab is None:
            raise ValueError(
                f"MODEL.LANGUAGE.VOCAB_FILE {path} is a checkpoint without a vocabulary"
            )
        return vocab
    vocab = Vocabulary.load(path)
    vocab.source = path
    return vocab


def resolve_vocabulary(cfg, build: bool = False, resumed=None) -> str:
    """Decide once, before a model is built, which vocabulary it is built with, and set
    ``MODEL.LANGUAGE.VOCAB_FILE`` to the file holding it (in place; a frozen config is frozen again
    afterwards).  Returns that file ("" for a model that reads no query: its meta-architecture
    has no ``reads_queries``, as the proposal detector).

    In order (the module docstring): ``MODEL.LANGUAGE.VOCAB_FILE`` as given; the checkpoint a
    training resumes from (``resumed``: ``(path, dict)``, or its ``OUTPUT_DIR/vocab.json``); the
    checkpoint ``MODEL.WEIGHTS`` when it carries a vocabulary (a URL is fetched first); a
    ``vocab.json`` beside it; otherwise, only with ``build`` (a training), the vocabulary of the
    queries of
    ``DATASETS.TRAIN``, written to ``OUTPUT_DIR/vocab.json`` (by the main process; the others
    wait for it).  The trainer's set-up (``build`` for a training), ``VideoPredictor``, the model
    zoo and the tools call it; the query encoders only load the file
    (``vocabulary_from_config``).  Inference never builds a vocabulary: one rebuilt from data
    may number the words otherwise than the trained model, and writing it would go into a
    training folder.

    Raises:
        ValueError: none of these gives a vocabulary.
    """
    from detectron2.modeling import META_ARCH_REGISTRY

    if "LANGUAGE" not in cfg.MODEL:
        return ""
    arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    if not getattr(arch, "reads_queries", False):  # e.g. the proposal detector
        return ""
    path = cfg.MODEL.LANGUAGE.VOCAB_FILE
    if not path and resumed is not None:  # a resumed model keeps its vocabulary
        saved = os.path.join(cfg.OUTPUT_DIR, "vocab.json")
        path = resumed[0] if VOCABULARY_KEY in resumed[1] else ""
        path = path or (saved if os.path.isfile(saved) else "")
    if not path:
        weights = local_weights_file(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else ""
        beside = os.path.join(os.path.dirname(weights), "vocab.json") if weights else ""
        if checkpoint_vocabulary(weights) is not None:
            path = weights
        elif weights and os.path.isfile(weights) and os.path.isfile(beside):
            path = beside
        elif build and cfg.DATASETS.TRAIN:
            path = _build_vocabulary_file(cfg)
        elif not build:
            raise ValueError(
                f"No vocabulary: MODEL.WEIGHTS ({weights or 'empty'}) carries none and has no "
                "vocab.json beside it, and MODEL.LANGUAGE.VOCAB_FILE is empty; name the "
                "vocabulary the model was trained with in MODEL.LANGUAGE.VOCAB_FILE (only a "
                "training builds one from DATASETS.TRAIN)"
            )
        else:
            raise ValueError(
                "No vocabulary: MODEL.LANGUAGE.VOCAB_FILE is empty, MODEL.WEIGHTS "
                f"({weights or 'empty'}) carries none and has no vocab.json beside it, and "
                "DATASETS.TRAIN names no data set to build one from"
            )
    if path != cfg.MODEL.LANGUAGE.VOCAB_FILE:
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.MODEL.LANGUAGE.VOCAB_FILE = path
        if was_frozen:
            cfg.freeze()
    return path


def _build_vocabulary_file(cfg) -> str:
    """The vocabulary of ``DATASETS.TRAIN``'s queries, written to ``OUTPUT_DIR/vocab.json``."""
    names = list(cfg.DATASETS.TRAIN)
    folder = cfg.OUTPUT_DIR or tempfile.mkdtemp(prefix="aamn-vocab-")
    out = os.path.join(folder, "vocab.json")
    if comm.is_main_process():
        vocab = vocabulary_from_datasets(names, cfg.MODEL.LANGUAGE.MIN_FREQ)
        os.makedirs(folder, exist_ok=True)
        vocab.save(out)
        logger.info("Built a vocabulary of %d words from %s: %s", len(vocab), names, out)
    comm.synchronize()  # the other processes read the file the main one wrote
    return out


def vocabulary_from_config(cfg) -> Vocabulary:
    """The vocabulary ``MODEL.LANGUAGE.VOCAB_FILE`` names (``resolve_vocabulary`` sets it), with
    a ``source`` attribute naming it and ``with_weights`` True when its embeddings come with the
    model's weights (a checkpoint, or a ``vocab.json`` beside ``MODEL.WEIGHTS``).

    Raises:
        ValueError: ``MODEL.LANGUAGE.VOCAB_FILE`` is empty.
    """
    path = cfg.MODEL.LANGUAGE.VOCAB_FILE
    if not path:
        raise ValueError(
            "MODEL.LANGUAGE.VOCAB_FILE is empty: resolve the vocabulary before building the model "
            "(aamn.modeling.resolve_vocabulary(cfg); the trainer, the predictor and the tools do)"
        )
    vocab = load_vocabulary(path)
    weights = str(cfg.MODEL.WEIGHTS)
    if weights and not path.endswith(".pth") and os.path.basename(path) == "vocab.json":
        local = local_weights_file(weights)  # a URL: fetched by resolve_vocabulary already
        same_folder = os.path.dirname(os.path.abspath(local)) == os.path.dirname(
            os.path.abspath(path)
        )
        vocab.with_weights = same_folder and os.path.isfile(local)
    logger.info("Vocabulary of %d words from %s", len(vocab), vocab.source)
    return vocab


def model_vocabulary(model) -> Optional[Vocabulary]:
    """The vocabulary of the model's query encoder(s) (all load ``MODEL.LANGUAGE.VOCAB_FILE``),
    or None for a model without."""
    return next(
        (m.vocab for m in model.modules() if isinstance(getattr(m, "vocab", None), Vocabulary)),
        None,
    )
