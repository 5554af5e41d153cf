"""Box geometry of AAMN's outputs: growing a box about its centre (the mask RoI), scaling boxes
from the augmented frame to the original one, and pasting mask probabilities at boxes."""

from typing import Tuple

import torch
from detectron2.layers.mask_ops import paste_masks_in_image
from detectron2.structures import Boxes

__all__ = ["expand_boxes", "paste_masks", "scale_boxes"]


def expand_boxes(boxes: torch.Tensor, scale: float, image_sizes: torch.Tensor) -> torch.Tensor:
    """Grow XYXY ``boxes (N, 4)`` by ``scale`` (width and height) about their centres and clip each
    to its frame, ``image_sizes (N, 2)`` (height, width).  ``scale = 1`` returns the boxes as they
    are."""
    if scale < 1.0:
        raise ValueError(f"MODEL.AAMN.MASK_HEAD.BOX_EXPAND must be >= 1, got {scale}")
    if scale == 1.0:
        return boxes
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half_w, half_h = (
        (boxes[:, 2] - boxes[:, 0]) * scale / 2,
        (boxes[:, 3] - boxes[:, 1]) * scale / 2,
    )
    h, w = image_sizes[:, 0].to(boxes.dtype), image_sizes[:, 1].to(boxes.dtype)
    zero = torch.zeros_like(cx)
    return torch.stack(
        [
            torch.maximum(cx - half_w, zero),
            torch.maximum(cy - half_h, zero),
            torch.minimum(cx + half_w, w),
            torch.minimum(cy + half_h, h),
        ],
        dim=1,
    )


def scale_boxes(
    boxes: torch.Tensor, image_size: Tuple[int, int], output_size: Tuple[int, int]
) -> Boxes:
    """``boxes (N, 4)`` of a frame of ``image_size`` (h, w) in a frame of ``output_size`` (H, W):
    scaled by ``W/w``, ``H/h`` (as ``detector_postprocess``) and clipped."""
    h, w = image_size
    out_h, out_w = int(output_size[0]), int(output_size[1])
    scaled = Boxes(boxes.detach().clone().float())
    scaled.scale(out_w / w, out_h / h)
    scaled.clip((out_h, out_w))
    return scaled


def paste_masks(
    probs: torch.Tensor,
    boxes: torch.Tensor,
    image_size: Tuple[int, int],
    output_size: Tuple[int, int],
    threshold: float = 0.5,
) -> Tuple[torch.Tensor, Boxes]:
    """Paste ``probs (N, M, M)`` (values in [0, 1]) at ``boxes (N, 4)`` given in a frame of
    ``image_size`` (h, w) into frames of ``output_size`` (H, W), the boxes scaled by ``W/w``,
    ``H/h`` (as ``detector_postprocess``) and clipped.

    Returns:
        bool masks ``(N, H, W)`` and the scaled ``Boxes``.
    """
    scaled = scale_boxes(boxes, image_size, output_size)
    masks = paste_masks_in_image(
        probs, scaled, (int(output_size[0]), int(output_size[1])), threshold=threshold
    )
    return masks.bool(), scaled
