"""Binary masks: the box around one and its COCO RLE, shared by the data sets and the evaluator."""

import numpy as np

__all__ = ["mask_to_box", "mask_to_rle"]


def mask_to_box(mask, empty=None):
    """The XYXY_ABS box around a binary ``(H, W)`` mask, ``[x_min, y_min, x_max + 1, y_max + 1]``
    as floats (pixel cells, as detectron2's ``BitMasks.get_bounding_boxes`` and pycocotools'
    ``toBbox``); ``empty`` (None unless given, e.g. ``[0.0] * 4``) for a mask without a pixel."""
    mask = np.asarray(mask).astype(bool, copy=False)
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return empty
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]


def mask_to_rle(mask) -> dict:
    """COCO compressed RLE of a binary ``(H, W)`` mask (``size`` ``[H, W]``, ``counts`` a str:
    JSON- and pickle-friendly)."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
