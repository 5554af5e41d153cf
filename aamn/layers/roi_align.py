"""RoIAlign whose backward pass is matrix products: torchvision's values and gradients, faster to
train on CPU.

RoIAlign (Mask R-CNN; detectron2's ``ROIAlign``) averages bilinear samples taken on a regular
``grid_h x grid_w`` grid in each of the ``out_h x out_w`` bins of a box.  Bilinear interpolation
is separable and the samples form a Cartesian product, so for one box ``r`` on image ``b``::

    out[r, c] = Wy[r] @ F[b, c] @ Wx[r]^T

with ``Wy[r]`` ``(out_h, H)`` the averaged interpolation weights of the bins' sample rows (zero
outside the box) and ``Wx[r]`` ``(out_w, W)`` those of its columns: the sample counts, the
``-0.5`` shift of ``aligned=True``, the adaptive ``ceil(box / bin)`` grid of ``sampling_ratio 0``
and the zero of a sample outside ``[-1, H] x [-1, W]`` are torchvision's, factor by factor.  The
gradient with respect to the features is then ``dF[b] = sum_r Wy[r]^T @ dOut[r] @ Wx[r]`` over
the boxes of image ``b``: a batched product per box and one product per image, multi-threaded,
where torchvision's CPU backward kernel scatters every sample one at a time on one thread
(BENCHMARKS.md measures both).  The forward pass stays torchvision's kernel, faster than the
products when nothing flows back.

``ROIAlign`` below is detectron2's module taking this path when the features need a gradient on
CPU (GPUs keep torchvision's kernels); ``aamn.modeling.poolers.build_roi_pooler`` builds poolers
of it (``MODEL.SEPARABLE_ROI_ALIGN``, on by default).
"""

import torch
from detectron2.layers import ROIAlign as _D2ROIAlign
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align


__all__ = ["ROIAlign", "roi_align_separable"]


def _axis_weights(start, size, bins, extent, sampling_ratio):
    """Averaged bilinear weights of one axis.

    Args:
        start, size: float ``(R,)`` box start and length in feature cells (already shifted).
        bins: output cells along the axis; extent: feature cells along it (H or W).
        sampling_ratio: samples per bin, or 0 for ``ceil(size / bins)`` (per box).

    Returns:
        ``(R, bins, extent)``: row ``p`` holds the weights whose dot product with a feature line
        is the mean of the bin's samples along this axis.
    """
    num = start.shape[0]
    bin_size = size / bins
    if sampling_ratio > 0:
        grid = torch.full((num,), int(sampling_ratio), dtype=torch.long, device=start.device)
    else:
        grid = torch.ceil(bin_size).long().clamp(min=0)
    g = max(int(grid.max()), 1) if num else 1
    k = torch.arange(g, dtype=start.dtype, device=start.device)
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    denom = grid.clamp(min=1).to(start.dtype)[:, None, None]
    bs = bin_size[:, None, None]
    pos = start[:, None, None] + p[None, :, None] * bs + (k[None, None, :] + 0.5) * bs / denom
    # torchvision's bilinear_interpolate: a sample beyond [-1, extent] is 0; below 0 it is read at
    # 0; at or beyond the last cell it is read at the last cell.
    keep = (k[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= extent)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_end = low >= extent - 1
    low = torch.where(at_end, torch.full_like(low, extent - 1), low)
    pos = torch.where(at_end, low.to(pos.dtype), pos)
    high = torch.where(at_end, low, low + 1)
    frac = pos - low.to(pos.dtype)
    scale = keep.to(pos.dtype) / denom
    weights = torch.zeros(num, bins, extent, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low, (1 - frac) * scale)
    weights.scatter_add_(2, high, frac * scale)
    return weights


def _box_weights(rois, feature_hw, output_size, spatial_scale, sampling_ratio, aligned):
    """``Wy`` ``(R, out_h, H)`` and ``Wx`` ``(R, out_w, W)`` of every box (module docstring)."""
    (out_h, out_w), (h, w) = output_size, feature_hw
    offset = 0.5 if aligned else 0.0
    x0 = rois[:, 1] * spatial_scale - offset
    y0 = rois[:, 2] * spatial_scale - offset
    bw = rois[:, 3] * spatial_scale - offset - x0
    bh = rois[:, 4] * spatial_scale - offset - y0
    if not aligned:  # the legacy RoIAlign makes every box at least one cell
        bw, bh = bw.clamp(min=1.0), bh.clamp(min=1.0)
    return (
        _axis_weights(y0, bh, out_h, h, sampling_ratio),
        _axis_weights(x0, bw, out_w, w, sampling_ratio),
    )


def _grouped(rois, num_images):
    """Boxes grouped by image, padded to the largest group.

    Returns:
        order ``(R,)`` (boxes sorted by image), used ``(G,)`` (images with boxes), m (the largest
        group) and flat ``(R,)``: the row of each sorted box in a ``(G * m, ...)`` padded batch.
    """
    image = rois[:, 0].long()
    order = torch.argsort(image, stable=True)
    counts = torch.bincount(image, minlength=num_images)
    used = torch.nonzero(counts).flatten()
    group = torch.cumsum(counts > 0, 0)[image[order]] - 1
    first = torch.cumsum(counts, 0)[used] - counts[used]
    slot = torch.arange(rois.shape[0], device=rois.device) - first[group]
    m = int(counts.max())
    return order, used, m, group * m + slot


def _padded(values, order, flat, rows):
    """``values[order]`` placed at rows ``flat`` of a zero ``(rows, ...)`` tensor."""
    return values.new_zeros((rows,) + values.shape[1:]).index_copy(0, flat, values[order])


class _SeparableROIAlign(torch.autograd.Function):
    """torchvision's forward; the gradient with respect to the features as matrix products."""

    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.save_for_backward(rois)
        ctx.args = (features.shape, output_size, spatial_scale, sampling_ratio, aligned)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        (n, c, h, w), output_size, spatial_scale, sampling_ratio, aligned = ctx.args
        grad_features = grad_output.new_zeros((n, c, h, w))
        if rois.shape[0] == 0:
            return grad_features, None, None, None, None, None
        out_h, out_w = output_size
        wy, wx = _box_weights(rois, (h, w), output_size, spatial_scale, sampling_ratio, aligned)
        order, used, m, flat = _grouped(rois, n)
        rows = used.numel() * m
        # dF[b] = sum over b's boxes r of Wy[r]^T @ dOut[r] @ Wx[r]: first each box's columns
        # (a batched product), then all of an image's boxes at once (one product per image).
        grad = grad_output.permute(0, 2, 1, 3)  # (R, out_h, C, out_w)
        grad = _padded(grad, order, flat, rows).reshape(rows, out_h * c, out_w)
        cols = torch.bmm(grad, _padded(wx, order, flat, rows))  # (G*m, out_h*C, W)
        wy = _padded(wy, order, flat, rows).reshape(-1, m * out_h, h)
        per_image = torch.bmm(wy.transpose(1, 2), cols.reshape(-1, m * out_h, c * w))
        grad_features[used] = per_image.reshape(-1, h, c, w).permute(0, 2, 1, 3)
        return grad_features, None, None, None, None, None


def roi_align_separable(features, rois, output_size, spatial_scale, sampling_ratio, aligned=True):
    """RoIAlign with the separable backward pass (module docstring); torchvision's arguments.

    Args:
        features: ``(N, C, H, W)``.
        rois: ``(R, 5)``: image index, x0, y0, x1, y1 in input coordinates.
        output_size: int or ``(out_h, out_w)``.

    Returns:
        ``(R, C, out_h, out_w)``: ``torchvision.ops.roi_align``'s values; its gradient with respect
        to ``features`` equal to torchvision's up to float rounding.
    """
    rois = rois.to(features.dtype)
    return _SeparableROIAlign.apply(
        features,
        rois,
        _pair(output_size),
        float(spatial_scale),
        int(sampling_ratio),
        bool(aligned),
    )


class ROIAlign(_D2ROIAlign):
    """detectron2's ``ROIAlign``; when the features need a gradient on CPU, computed by
    ``roi_align_separable`` (the same values; a backward pass of matrix products)."""

    def forward(self, input, rois):
        """input: ``(N, C, H, W)``; rois: ``(R, 5)``. Returns ``(R, C, out_h, out_w)``."""
        if input.device.type == "cpu" and input.requires_grad and torch.is_grad_enabled():
            assert rois.dim() == 2 and rois.size(1) == 5
            return roi_align_separable(
                input,
                rois,
                self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
            )
        return super().forward(input, rois)
