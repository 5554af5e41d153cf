"""Actor and action video segmentation from a sentence (Gavrilyuk et al., CVPR 2018): dynamic
filters generated from the sentence, applied to the visual maps at three resolutions.

Per stream (``MODEL.DYNAMIC_FILTER.STREAMS``: RGB, Flow, or both), a full sub-model
(``DynamicFilterHead``; equations are that paper's):

* sentence ``T`` (``MODEL.LANGUAGE.NAME``, ``Conv1dMaxEncoder``: 1-D convolution, ReLU, max);
* clip: the backbone on every frame, ``MODEL.CLIP_ENCODER`` over time, mean over time (the I3D
  substitute, ``aamn.modeling.clip_baselines``); ``V^32 = [L2(X), coords]`` at stride 16;
* two decoder blocks (``DECODER_DIMS`` D1, D2): ``ConvT(k8, s4, p2) + ReLU``, ``Conv3x3 + ReLU``,
  ``[L2, coords]`` -> ``V^128`` (stride 4), ``V^512`` (stride 1).  The deconvolutions act on
  ``V^r``, not on the responses;
* Eq. (1): a filter per resolution ``f^r = tanh(W^r T + b^r)`` (its own FC, as long as the channels
  of ``V^r``, coordinates included); Eq. (2): the response ``S^r = f^r * V^r`` (a 1x1 dynamic
  convolution, one value per position);
* Eq. (3)-(5): ``sum_r alpha_r mean_ij log(1 + exp(-S^r_ij Y^r_ij))`` with ``Y`` in {-1, +1}: binary
  cross-entropy with logits against the key frame's mask at each resolution (area-downsampled,
  ``>= 0.5``; the loss covers the padded canvas), ``alpha = LOSS_WEIGHTS``.

The prediction is ``S^512``; two streams average it with ``STREAM_WEIGHTS`` (2:1, Sec. 5.1) and
train with the sum of their losses (disjoint parameters: the same as separate training).  The paper
gives no threshold: ``THRESHOLD_MODE "fixed"``, ``sigmoid(S) > THRESHOLD`` (0.5, i.e. ``S > 0``).

Deviations (the papers' I3D and word2vec cannot be had here): the clip encoder above; the word
embeddings are learned unless ``MODEL.LANGUAGE.WORD_VECTORS`` is given; the flow input is the
project's 3 channels (x, y, magnitude), not I3D's 2.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..clip_baselines import (
    COORD_DIM,
    ClipBaselineModel,
    SentenceClipHead,
    downsample_targets,
    with_coords,
)

__all__ = ["DynamicFilterHead", "DynamicFilterSeg", "upsample_block"]


def upsample_block(in_dim: int, out_dim: int, norm: bool = False, factor: int = 4) -> nn.Sequential:
    """``ConvT(k 2f, s f, p f/2) (+ BN) + ReLU``, ``Conv3x3 (+ BN) + ReLU`` (``f = factor``, 4 or 2:
    ``ConvT(k8, s4, p2)`` or ``ConvT(k4, s2, p1)``): ``(B, in, h, w) -> (B, out, f h, f w)``."""
    if factor not in (2, 4):
        raise ValueError(f"upsample_block: factor {factor}, expected 2 or 4")
    layers = [nn.ConvTranspose2d(in_dim, out_dim, 2 * factor, factor, factor // 2, bias=not norm)]
    layers += [nn.BatchNorm2d(out_dim)] if norm else []
    layers += [nn.ReLU(inplace=True), nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=not norm)]
    layers += [nn.BatchNorm2d(out_dim)] if norm else []
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class DynamicFilterHead(SentenceClipHead):
    """One stream's sub-model: ``X (B, T, C, h, w)`` and the queries -> ``[S^32, S^128, S^512]``."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        in_stride: int = 16,
        decoder_dims=(256, 64),
        loss_weights=(1.0, 1.0, 1.0),
        **encoders,
    ):
        """
        Args:
            in_channels: ``C`` of ``X``.
            in_stride: the stride of ``X``'s maps: 16 (the paper's) or 8.
            decoder_dims: ``(D1, D2)``.
            loss_weights: ``(alpha_32, alpha_128, alpha_512)``.
            encoders: ``language_encoder`` (gives ``sentence (B, D_T)``) and ``clip_encoder``
                (``SentenceClipHead``).
        """
        super().__init__(**encoders)
        if len(decoder_dims) != 2 or len(loss_weights) != 3:
            raise ValueError("MODEL.DYNAMIC_FILTER: DECODER_DIMS needs 2 values, LOSS_WEIGHTS 3")
        if in_stride not in (8, 16):
            raise ValueError(
                f"DynamicFilterSeg: the clip encoder's maps have stride {in_stride} "
                "(MODEL.CLIP_ENCODER.IN_FEATURE); the decoder is built for stride 16 or 8"
            )
        widths = [in_channels + COORD_DIM, decoder_dims[0] + COORD_DIM, decoder_dims[1] + COORD_DIM]
        self.decoder = nn.ModuleList(
            [
                upsample_block(widths[0], decoder_dims[0], factor=in_stride // 4),
                upsample_block(widths[1], decoder_dims[1]),
            ]
        )
        # Eq. (1): one filter generator per resolution.
        self.filters = nn.ModuleList(nn.Linear(self.language.sentence_dim, c) for c in widths)
        self.loss_weights = list(loss_weights)

    @classmethod
    def from_config(cls, cfg, in_channels: int, in_stride: int = 16):
        D = cfg.MODEL.DYNAMIC_FILTER
        return {
            **super().from_config(cfg, in_channels),
            "in_channels": in_channels,
            "in_stride": in_stride,
            "decoder_dims": list(D.DECODER_DIMS),
            "loss_weights": list(D.LOSS_WEIGHTS),
        }

    def forward(self, X: torch.Tensor, query_tokens, canvas) -> List[torch.Tensor]:
        """``X (B, T, C, h, w)`` -> the responses ``S^r``: ``(B, h, w)``, then at stride 4 and at
        stride 1 (``(B, 4h, 4w)`` and ``(B, 16h, 16w)`` on stride-16 maps)."""
        X, sentence = self.encode(X, query_tokens)  # (B, T', C, h, w), (B, D_T)
        V = with_coords(X.mean(dim=1))  # V^32 (B, C + 8, h, w)
        responses = []
        for r, generator in enumerate(self.filters):
            f = torch.tanh(generator(sentence))  # Eq. (1): (B, C_r)
            responses.append(torch.einsum("bc,bchw->bhw", f, V))  # Eq. (2): 1x1 dynamic conv
            if r < len(self.decoder):
                V = with_coords(self.decoder[r](V))
        if tuple(responses[-1].shape[-2:]) != tuple(canvas):
            raise ValueError(
                f"The finest response {tuple(responses[-1].shape[-2:])} is not the input size "
                f"{canvas}"
            )
        return responses

    def losses(self, responses: List[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Eq. (3)-(5): ``sum_r alpha_r`` BCE-with-logits of ``S^r`` against ``Y^r``."""
        total = 0.0
        for alpha, S in zip(self.loss_weights, responses):
            if alpha:
                Y = downsample_targets(targets, S.shape[-2:])
                total = total + alpha * F.binary_cross_entropy_with_logits(S, Y)
        return total


@META_ARCH_REGISTRY.register()
class DynamicFilterSeg(ClipBaselineModel):
    """Gavrilyuk et al. (2018): RGB, Flow or two-stream dynamic-filter segmentation."""

    @classmethod
    def from_config(cls, cfg):
        return cls.args_with_heads(cfg, cfg.MODEL.DYNAMIC_FILTER, DynamicFilterHead)
