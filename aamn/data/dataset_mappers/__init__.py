"""Dataset mappers: ``ClipDatasetMapper`` (clips of referring-video models) and
``VideoFrameDatasetMapper`` (single frames, the proposal detector); ``build_dataset_mapper`` picks
one from the config and the data sets' metadata."""

from typing import Sequence

from detectron2.data import MetadataCatalog

from ..datasets.common import REFERRING_TYPES

from ..frame_cache import frame_cache
from .clip_mapper import ClipDatasetMapper, VideoFrameDatasetMapper

__all__ = [
    "MAPPERS",
    "ClipDatasetMapper",
    "VideoFrameDatasetMapper",
    "build_dataset_mapper",
    "mapper_name",
]

MAPPERS = {"clip": ClipDatasetMapper, "frame": VideoFrameDatasetMapper}


def mapper_name(cfg, dataset_names: Sequence[str]) -> str:
    """``INPUT.DATASET_MAPPER_NAME``, or from the data sets' ``evaluator_type`` when it is empty:
    a referring-video data set (``REFERRING_TYPES``) -> ``"clip"``, anything else ->
    ``"frame"``.  The data
    sets of one loader must agree."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name:
        if name not in MAPPERS:
            raise ValueError(
                f"Unknown INPUT.DATASET_MAPPER_NAME {name!r}; choose from {sorted(MAPPERS)} or ''"
            )
        return name
    kinds = {
        d: "clip"
        if MetadataCatalog.get(d).get("evaluator_type", None) in REFERRING_TYPES
        else "frame"
        for d in dataset_names
    }
    if len(set(kinds.values())) > 1:
        raise ValueError(
            f"The data sets {kinds} need different mappers; set INPUT.DATASET_MAPPER_NAME"
        )
    if not kinds:
        raise ValueError("No data set given to choose a mapper for")
    return next(iter(kinds.values()))


def build_dataset_mapper(cfg, dataset_names: Sequence[str], is_train: bool):
    """The mapper of ``dataset_names`` (see ``mapper_name``); sizes the process's frame cache
    (``DATALOADER.FRAME_CACHE_MB``, ``aamn.data.frame_cache``)."""
    frame_cache.resize(int(cfg.DATALOADER.FRAME_CACHE_MB) << 20)
    return MAPPERS[mapper_name(cfg, dataset_names)](cfg, is_train=is_train)
