"""AAMN's language attention (Sec. III-B, Eq. 4-5): the query split into actor and action words.

Reads the query encoder's output (``aamn.modeling.language``): two FC heads on the word states
``h_t`` and a softmax over the real words of each query (Eq. 4; padding gets weight 0), then
``q_m = sum_t gamma_m_t e_t`` over the word embeddings (Eq. 5), ``m`` in {actor, action}.

Modes:

* ``"learned"``: Eq. (4); with ``random_at_test`` (Table IX) the weights are replaced at test time
  (``not self.training``) by i.i.d. uniform [0, 1) values on the real words, normalised to sum to 1.
* ``"uniform"``: every real word gets ``1/N`` (Table IV's "Baseline Model": ``q`` is the mean
  word embedding, ``q_actor = q_action``); no parameters.
"""

from typing import Dict

import torch
from torch import nn

from detectron2.config import configurable

from .language import masked_softmax
from ..config import check_choice

__all__ = ["WORD_ATTENTION_MODES", "ActorActionAttention"]

WORD_ATTENTION_MODES = ("learned", "uniform")


class ActorActionAttention(nn.Module):
    """Encoder output -> ``q_actor``, ``q_action`` ``(B, Ce)`` and their word weights ``(B, N)``."""

    @configurable
    def __init__(self, *, word_dim: int, mode: str = "learned", random_at_test: bool = False):
        """
        Args:
            word_dim: ``Ch``, the width of the encoder's ``word_states``.
            mode: ``"learned"`` or ``"uniform"``.
            random_at_test: Table IX's random word attention at test time (``"learned"`` only).
        """
        super().__init__()
        check_choice("word attention mode", mode, WORD_ATTENTION_MODES)
        self.mode = mode
        self.random_at_test = random_at_test
        if mode == "learned":
            # Eq. (4): W_actor, W_action.
            self.actor_attention = nn.Linear(word_dim, 1)
            self.action_attention = nn.Linear(word_dim, 1)

    @classmethod
    def from_config(cls, cfg, word_dim: int):
        baseline = cfg.MODEL.AAMN.MATCHING == "baseline"
        return {
            "word_dim": word_dim,
            "mode": "uniform" if baseline else "learned",
            "random_at_test": cfg.MODEL.AAMN.RANDOM_WORD_ATTENTION,
        }

    def forward(self, lang: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            lang: the query encoder's dict (``embeddings (B, N, Ce)``, ``word_states (B, N, Ch)``,
                ``mask (B, N)``, ``lengths (B,)``).

        Returns:
            dict with ``q_actor``, ``q_action`` ``(B, Ce)``; ``attn_actor``, ``attn_action``
            ``(B, N)`` (rows sum to 1 over the real words, 0 at padding).
        """
        e, mask = lang["embeddings"], lang["mask"]
        if self.mode == "uniform":
            attn_actor = attn_action = mask.to(e.dtype) / lang["lengths"][:, None].to(e.dtype)
        elif self.random_at_test and not self.training:
            # Table IX: random word attention at test time.
            attn_actor = masked_softmax(
                torch.rand(mask.shape, dtype=e.dtype, device=e.device).log(), mask
            )
            attn_action = masked_softmax(
                torch.rand(mask.shape, dtype=e.dtype, device=e.device).log(), mask
            )
        else:
            # Eq. (4): gamma_m_t = softmax_t(W_m h_t), over the real words only.
            h = lang["word_states"]
            attn_actor = masked_softmax(self.actor_attention(h).squeeze(-1), mask)
            attn_action = masked_softmax(self.action_attention(h).squeeze(-1), mask)
        # Eq. (5): q_m = sum_t gamma_m_t e_t.
        return {
            "q_actor": torch.einsum("bn,bnc->bc", attn_actor, e),
            "q_action": torch.einsum("bn,bnc->bc", attn_action, e),
            "attn_actor": attn_actor,
            "attn_action": attn_action,
        }
