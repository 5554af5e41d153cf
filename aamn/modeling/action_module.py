"""The action module (Sec. III-C2, Eq. 7-9).

For each tube ``k`` of a clip:

1. Contextual LSTM (Eq. 7): the sequence ``[v_0, v_j (j != k)]`` -- the whole-clip feature first,
   then the other tubes ordered top-to-bottom, then left-to-right by their key-frame boxes
   (lexicographic on the box's ``(y1, x1)``) -- goes through an LSTM (``Cc`` =
   ``CONTEXT_HIDDEN_DIM``), giving ``K`` hidden states ``h_t``; with attention
   ``y_t = ReLU(W4 h_t + b4)``, ``alpha = softmax_t(W5 y_t + b5)``, ``v_c = sum_t alpha_t y_t``;
   without attention (Table IV "w/o attention") ``v_c`` is the mean of the hidden states ``h_t``.
   The ``K`` sequences of a clip run as one LSTM batch ``(B*K, K, Cv')``.
   Without the contextual LSTM ("w/o contextual LSTM") ``v~_k = v_k``, else ``v~_k = [v_k, v_c]``.
2. Fusion with the motion feature ``m_k`` (Eq. 8), output width ``FUSION_DIM`` (paper: ``Ce``):
   gated, ``g_a = W6 v~ + b6``, ``g_b = W7 m + b7``, ``sigma = sigmoid(W8 [g_a, g_b] + b8)``,
   ``v_action = sigma (*) g_a + (1 - sigma) (*) g_b``; or concatenation ("w/o gated fusion"),
   ``v_action = W [v~, m] + b``; or, with no motion feature, ``v_action = W6 v~ + b6``.
   ``m_k`` is the Flow tube feature ``f_k``; with the Flow stream switched off it is the RGB tube
   feature ``v_k`` (the paper's "w/o Flow Stream" row) or absent (``use_motion=False``), see
   ``MODEL.AAMN.NO_FLOW_MOTION_FEATURE``.
3. Scoring (Eq. 9): the form of Eq. (6) with ``q_action``.

The visual features the module matches with (``MODEL.AAMN.ACTION_FEATURES``, Table IV):

* ``"both"`` (``use_appearance``, ``use_motion``): the fusion of step 2, the paper's module;
* ``"rgb"`` ("(Action Module) w/o Optical Flow", ``use_motion=False``): the appearance feature
  alone, ``v_action = W6 v~_k + b6``;
* ``"flow"`` ("(Action Module) w/o RGB", ``use_appearance=False``): the motion feature alone,
  ``v_action = W7 f_k + b7``; no contextual LSTM is built (its context is part of ``v~_k``).

Without the RGB stream (Table IV "w/o RGB Stream") the meta-architecture passes the Flow features
``f_k`` and the Flow whole-clip feature as ``v_k`` and ``v_0``: the module itself is unchanged.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable

from .actor_module import ScoreHead

# MODEL.AAMN.ACTION_FEATURES: the visual features of the action matching (Table IV).
ACTION_FEATURES = ("both", "rgb", "flow")

__all__ = [
    "ACTION_FEATURES",
    "ActionModule",
    "ContextualLSTM",
    "GatedFusion",
    "context_order",
    "context_sequences",
]


def context_order(key_boxes: torch.Tensor) -> torch.Tensor:
    """Tube order top-to-bottom, then left-to-right: ``(B, K, 4) -> (B, K)`` indices sorted by
    ``(y1, x1)`` of the key-frame boxes (ties keep the tube order)."""
    by_x = torch.argsort(key_boxes[..., 0], dim=-1, stable=True)
    y_sorted = torch.gather(key_boxes[..., 1], 1, by_x)
    by_y = torch.argsort(y_sorted, dim=-1, stable=True)
    return torch.gather(by_x, 1, by_y)


def context_sequences(
    tubes: torch.Tensor, whole: torch.Tensor, order: torch.Tensor
) -> torch.Tensor:
    """The contextual LSTM inputs of Eq. (7).

    Args:
        tubes: ``(B, K, C)`` tube features ``v_k``.
        whole: ``(B, C)`` the whole-clip feature ``v_0``.
        order: ``(B, K)`` tube order (``context_order``).

    Returns:
        ``(B, K, K, C)``: sequence ``[b, k]`` = ``[v_0] + [v_j for j in order if j != k]``.
    """
    B, K, C = tubes.shape
    arange = torch.arange(K, device=tubes.device)
    keep = (
        order[:, None, :] != arange[None, :, None]
    )  # (B, K, K): drop tube k from its own sequence
    others = order[:, None, :].expand(B, K, K)[keep].view(B, K, K - 1)
    seq = torch.gather(tubes, 1, others.reshape(B, K * (K - 1), 1).expand(-1, -1, C)).view(
        B, K, K - 1, C
    )
    return torch.cat([whole[:, None, None, :].expand(B, K, 1, C), seq], dim=2)


class ContextualLSTM(nn.Module):
    """Eq. (7): sequences ``(N, S, C)`` -> context ``v_c (N, Cc)`` and attention ``(N, S)``."""

    def __init__(self, input_dim: int, hidden_dim: int, use_attention: bool = True):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True)
        self.use_attention = use_attention
        if use_attention:
            self.proj = nn.Linear(hidden_dim, hidden_dim)  # W4, b4
            self.attention = nn.Linear(hidden_dim, 1)  # W5, b5

    def forward(self, sequences: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.lstm(sequences)  # (N, S, Cc)
        if not self.use_attention:
            weights = h.new_full(h.shape[:2], 1.0 / h.shape[1])
            return h.mean(dim=1), weights  # mean pooling of the hidden states
        y = F.relu(self.proj(h))  # y_t = ReLU(W4 h_t + b4)
        alpha = torch.softmax(self.attention(y).squeeze(-1), dim=1)  # (N, S)
        return torch.einsum("ns,nsc->nc", alpha, y), alpha  # v_c = sum_t alpha_t y_t


class GatedFusion(nn.Module):
    """Eq. (8): ``a (..., Da)``, ``b (..., Db)`` -> ``(..., D)`` gated (or concatenated) fusion."""

    def __init__(self, a_dim: int, b_dim: int, out_dim: int, gated: bool = True):
        super().__init__()
        self.gated = gated
        if gated:
            self.fc_a = nn.Linear(a_dim, out_dim)  # W6, b6
            self.fc_b = nn.Linear(b_dim, out_dim)  # W7, b7
            self.gate = nn.Linear(2 * out_dim, out_dim)  # W8, b8
        else:
            self.fc = nn.Linear(a_dim + b_dim, out_dim)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.fc(torch.cat([a, b], dim=-1))
        g_a, g_b = self.fc_a(a), self.fc_b(b)
        sigma = torch.sigmoid(self.gate(torch.cat([g_a, g_b], dim=-1)))
        return sigma * g_a + (1.0 - sigma) * g_b


class ActionModule(nn.Module):
    """Eq. (7)-(9): ``s(t_k | q_action)`` from the tube, the clip context and the motion feature."""

    @configurable
    def __init__(
        self,
        *,
        tube_dim: int,
        query_dim: int,
        match_dim: int,
        fusion_dim: int = 300,
        context_hidden_dim: int = 512,
        use_context_lstm: bool = True,
        use_context_attention: bool = True,
        gated_fusion: bool = True,
        use_motion: bool = True,
        use_appearance: bool = True,
        norm_scale: float = 1.0,
    ):
        """
        Args:
            tube_dim: ``Cv'`` of ``v_k``, ``v_0`` and the motion feature.
            query_dim: ``Ce`` of ``q_action``.
            match_dim: width of the joint embedding of Eq. (9).
            fusion_dim: width of ``v_action`` (paper: ``Ce``).
            context_hidden_dim: ``Cc``.
            use_context_lstm: Eq. (7) on / off.
            use_context_attention: attention (True) or mean pooling of the hidden states.
            gated_fusion: gated (True) or concatenation fusion.
            use_motion: fuse a motion feature (False: ``v_action = W6 v~``).
            use_appearance: use the appearance feature ``v~`` (False: ``v_action = W7 m``, no
                contextual LSTM whatever ``use_context_lstm`` says).
            norm_scale: see ``ScoreHead``.
        """
        super().__init__()
        if not (use_appearance or use_motion):
            raise ValueError(
                "The action module needs the appearance feature, the motion feature or both"
            )
        self.use_appearance = use_appearance
        self.use_context_lstm = use_context_lstm and use_appearance
        self.use_motion = use_motion
        self.context = (
            ContextualLSTM(tube_dim, context_hidden_dim, use_context_attention)
            if self.use_context_lstm
            else None
        )
        appearance_dim = tube_dim + (context_hidden_dim if self.use_context_lstm else 0)
        if use_appearance and use_motion:
            self.fusion = GatedFusion(appearance_dim, tube_dim, fusion_dim, gated=gated_fusion)
        elif use_appearance:
            self.fusion = nn.Linear(appearance_dim, fusion_dim)  # W6, b6
        else:
            self.fusion = nn.Linear(tube_dim, fusion_dim)  # W7, b7
        self.head = ScoreHead(fusion_dim, query_dim, match_dim, norm_scale)

    @classmethod
    def from_config(cls, cfg):
        # The values are checked with the other switches by
        # aamn.modeling.ablations.check_ablation_config.
        use_flow = cfg.MODEL.AAMN.USE_FLOW
        substitute = cfg.MODEL.AAMN.NO_FLOW_MOTION_FEATURE
        features = cfg.MODEL.AAMN.ACTION_FEATURES
        return {
            "tube_dim": cfg.MODEL.AAMN.TUBE_DIM,
            "query_dim": cfg.MODEL.LANGUAGE.EMBED_DIM,
            "match_dim": cfg.MODEL.AAMN.MATCH_DIM,
            "fusion_dim": cfg.MODEL.AAMN.FUSION_DIM,
            "context_hidden_dim": cfg.MODEL.AAMN.CONTEXT_HIDDEN_DIM,
            "use_context_lstm": cfg.MODEL.AAMN.CONTEXT_LSTM,
            "use_context_attention": cfg.MODEL.AAMN.CONTEXT_ATTENTION,
            "gated_fusion": cfg.MODEL.AAMN.GATED_FUSION,
            "use_motion": (use_flow or substitute == "rgb") and features != "rgb",
            "use_appearance": features != "flow",
            "norm_scale": cfg.MODEL.AAMN.MATCH_NORM_SCALE,
        }

    def visual_features(
        self,
        tubes: torch.Tensor,
        whole: torch.Tensor,
        motion: Optional[torch.Tensor],
        key_boxes: torch.Tensor,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``v_action`` of every tube.

        Args:
            tubes: ``(B, K, Cv')`` RGB tube features ``v_k`` (unused without ``use_appearance``).
            whole: ``(B, Cv')`` whole-clip feature ``v_0``.
            motion: ``(B, K, Cv')`` motion features (``f_k``), or None when ``use_motion`` is off.
            key_boxes: ``(B, K, 4)`` key-frame boxes (the context order).

        Returns:
            ``v_action (B, K, fusion_dim)`` and the context attention ``(B, K, K)`` over each
            tube's sequence ``[v_0, others...]`` (None without the contextual LSTM).
        """
        B, K, C = tubes.shape
        weights = None
        if self.use_motion and motion is None:
            raise ValueError("The action module fuses a motion feature but none was given")
        if not self.use_appearance:
            return self.fusion(motion), None  # "(Action Module) w/o RGB": v_action = W7 f_k + b7
        appearance = tubes
        if self.context is not None:
            seq = context_sequences(tubes, whole, context_order(key_boxes))  # (B, K, K, C)
            v_c, weights = self.context(seq.reshape(B * K, K, C))
            appearance = torch.cat([tubes, v_c.view(B, K, -1)], dim=-1)  # v~_k = [v_k, v_c]
            weights = weights.view(B, K, K)
        if self.use_motion:
            return self.fusion(appearance, motion), weights  # Eq. (8)
        return self.fusion(appearance), weights

    def forward(
        self,
        tubes: torch.Tensor,
        whole: torch.Tensor,
        motion: Optional[torch.Tensor],
        key_boxes: torch.Tensor,
        q_action: torch.Tensor,
    ) -> torch.Tensor:
        """Scores ``(B, Q, K)`` of every tube with every query ``q_action (Q, Ce)`` (Eq. 9)."""
        v_action, _ = self.visual_features(tubes, whole, motion, key_boxes)
        return self.head(v_action, q_action)
