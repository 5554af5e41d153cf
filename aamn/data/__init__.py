"""The data layer: A2D Sentences / J-HMDB Sentences as detectron2 data sets, the clip mapper,
video decoding, optical flow, proposals and text processing.

Importing this package registers the standard data set names (``aamn.data.datasets.builtin``).
"""

from . import datasets  # noqa: F401  (registers the standard names)
from . import dataset_mappers  # noqa: F401
from .dataset_mappers import ClipDatasetMapper, VideoFrameDatasetMapper
from .datasets import (
    load_a2d_frames,
    load_a2d_sentences,
    load_jhmdb_sentences,
    register_a2d_frames,
    register_a2d_sentences,
    register_jhmdb_sentences,
)
from .proposals import load_proposals, save_proposals
from .text import Vocabulary, load_word_vectors, tokenize, vocabulary_from_datasets
from .video import VideoReader

__all__ = [
    "register_a2d_sentences",
    "register_a2d_frames",
    "register_jhmdb_sentences",
    "load_a2d_sentences",
    "load_a2d_frames",
    "load_jhmdb_sentences",
    "ClipDatasetMapper",
    "VideoFrameDatasetMapper",
    "VideoReader",
    "load_proposals",
    "save_proposals",
    "tokenize",
    "Vocabulary",
    "load_word_vectors",
    "vocabulary_from_datasets",
]
