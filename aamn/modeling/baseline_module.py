"""The "Baseline Model" of Table IV (``MODEL.AAMN.MATCHING = "baseline"``).

One matching score per tube instead of the two modules: the visual representation is the
concatenation of the tube's appearance and motion features, ``x_k = [v_k, f_k]`` (the Eq. (2) tube
features of the two streams after their FC + ReLU, ``2 Cv'`` wide), the language representation
is the mean pooling of the embedded words ``q = 1/N sum_t e_t`` (``MeanPoolingEncoder``), and the
score has the form of the actor matching score, Eq. (6):

    x~ = W1 x_k + b1,   q~ = W2 q + b2,   s_k = W3 (||x~||_2 (*) ||q~||_2) + b3

There is no location feature, no contextual LSTM and no word attention.  Tube linking, the mask
head and the losses (Eq. 10-12) are those of AAMN.  With a single stream the representation is
that stream's feature alone: ``v_k`` without the Flow stream (``USE_FLOW=False``), ``f_k`` without
the RGB stream (``USE_RGB=False``).
"""

from typing import Sequence

import torch
from torch import nn

from detectron2.config import configurable

from .actor_module import ScoreHead

__all__ = ["BaselineModule"]


class BaselineModule(nn.Module):
    """``s(t_k | q)`` from ``[v_k, f_k]`` and the mean word embedding (Table IV "Baseline
    Model")."""

    @configurable
    def __init__(
        self,
        *,
        tube_dim: int,
        num_streams: int,
        query_dim: int,
        match_dim: int,
        norm_scale: float = 1.0,
    ):
        """
        Args:
            tube_dim: ``Cv'``, the width of one stream's tube features.
            num_streams: how many streams' tube features are concatenated (1 or 2).
            query_dim: ``Ce``, the width of the mean word embedding.
            match_dim: width of the joint embedding of Eq. (6).
            norm_scale: see ``ScoreHead``.
        """
        super().__init__()
        if num_streams not in (1, 2):
            raise ValueError(
                f"The baseline concatenates the features of 1 or 2 streams, got {num_streams}"
            )
        self.tube_dim = tube_dim
        self.num_streams = num_streams
        self.head = ScoreHead(tube_dim * num_streams, query_dim, match_dim, norm_scale)

    @classmethod
    def from_config(cls, cfg):
        A = cfg.MODEL.AAMN
        return {
            "tube_dim": A.TUBE_DIM,
            "num_streams": int(bool(A.USE_RGB)) + int(bool(A.USE_FLOW)),
            "query_dim": cfg.MODEL.LANGUAGE.EMBED_DIM,
            "match_dim": A.MATCH_DIM,
            "norm_scale": A.MATCH_NORM_SCALE,
        }

    def visual_features(self, stream_tubes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``x_k = [v_k, f_k]``: ``num_streams`` tensors ``(B, K, Cv')`` ->
        ``(B, K, num_streams Cv')``."""
        if len(stream_tubes) != self.num_streams:
            raise ValueError(
                f"The baseline expects {self.num_streams} stream features, got {len(stream_tubes)}"
            )
        return torch.cat(list(stream_tubes), dim=-1)

    def forward(self, stream_tubes: Sequence[torch.Tensor], query: torch.Tensor) -> torch.Tensor:
        """
        Args:
            stream_tubes: the tube features of the streams in use, RGB first: ``[v (B, K, Cv'),
                f (B, K, Cv')]`` (one of them with a single stream).
            query: ``(Q, Ce)`` mean word embeddings.

        Returns:
            ``(B, Q, K)``: the score of tube ``k`` of clip ``b`` with query ``q``.
        """
        return self.head(self.visual_features(stream_tubes), query)
