"""Layers of the project (detectron2's ``layers`` counterpart)."""

from .roi_align import ROIAlign, roi_align_separable

__all__ = ["ROIAlign", "roi_align_separable"]
