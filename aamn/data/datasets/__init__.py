"""A2D Sentences and J-HMDB Sentences as detectron2 data sets (importing registers the standard
names)."""

from .register_a2d_sentences import (
    A2D_ACTIONS,
    A2D_ACTORS,
    DEFAULT_ANNOTATION_DIR,
    load_a2d_frames,
    load_a2d_sentences,
    read_a2d_frame_h5,
    register_a2d_frames,
    register_a2d_sentences,
)
from .register_jhmdb_sentences import (
    JHMDB_ACTIONS,
    load_jhmdb_sentences,
    read_puppet_mask,
    register_jhmdb_sentences,
)
from . import builtin  # noqa: F401  (registers the standard names)

__all__ = [
    "A2D_ACTORS",
    "A2D_ACTIONS",
    "JHMDB_ACTIONS",
    "DEFAULT_ANNOTATION_DIR",
    "register_a2d_sentences",
    "register_a2d_frames",
    "register_jhmdb_sentences",
    "load_a2d_sentences",
    "load_a2d_frames",
    "load_jhmdb_sentences",
    "read_a2d_frame_h5",
    "read_puppet_mask",
]
