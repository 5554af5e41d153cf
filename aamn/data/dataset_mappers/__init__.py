"""Dataset mappers: ``ClipDatasetMapper`` (AAMN clips) and ``VideoFrameDatasetMapper`` (detector)."""
from .clip_mapper import ClipDatasetMapper, VideoFrameDatasetMapper

__all__ = ["ClipDatasetMapper", "VideoFrameDatasetMapper"]
