"""The synthetic actor-action benchmark, written in the A2D Sentences and J-HMDB Sentences layouts.

The real data sets cannot be downloaded in every environment, so the project draws its own
benchmark: actors of A2D's 7 classes (distinct silhouettes, 6 colours, 2 sizes) doing A2D's 8
actions or none (distinct motion patterns), 2-4 per video, occluding each other at times, over a
panning textured background with noise, and referring queries built so that many of them can only
be resolved with the action words (``needs_action``), the actor words (``needs_appearance``) or the
location words (``needs_location``).  See ``datasets/README.md`` for the data set card.

- :func:`generate` writes a benchmark (``datasets/prepare_synthetic.py`` is its command line);
- :func:`query_types` gives the type(s) of every query from the written ``synthetic_meta.json``.

Modules: :mod:`.actors` (silhouettes, colours, sizes), :mod:`.motions` (the 9 motion patterns),
:mod:`.scenes` (sampling and rendering a video), :mod:`.queries` (templates, synonyms, types),
:mod:`.writer` (the on-disk trees).
"""

from .queries import QUERY_TYPES, query_types
from .writer import (
    GENERATOR_VERSION,
    SIZES,
    compute_statistics,
    generate,
    read_info,
    synthetic_tree_name,
)

__all__ = [
    "generate",
    "query_types",
    "QUERY_TYPES",
    "SIZES",
    "GENERATOR_VERSION",
    "compute_statistics",
    "read_info",
    "synthetic_tree_name",
]
