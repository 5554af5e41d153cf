"""Textual query representation (Sec. III-B, Eq. 3-5).

``BiLSTMAttentionEncoder`` turns the tokenised queries of a batch into the actor- and
action-related query vectors ``q_actor``, ``q_action`` and the word-attention weights that produce
them:

* word embeddings ``e_t`` (``Ce`` = ``MODEL.LANGUAGE.EMBED_DIM``), learned from the training
  vocabulary or initialised from GloVe / word2vec vectors (``MODEL.LANGUAGE.WORD_VECTORS``);
* a stack of ``NUM_LAYERS`` bidirectional LSTMs (Eq. 3; paper: 2 layers, 512 per direction);
  the word state ``h_t`` is the concatenation of every layer's forward and backward states,
  ``[h1_t, h2_t]``, so ``Ch = 2 * HIDDEN_DIM * NUM_LAYERS``;
* two FC heads and a softmax over the real words of each query (Eq. 4; padding gets weight 0);
* ``q_m = sum_t gamma_m_t e_t`` (Eq. 5).

Padding never influences the result: the LSTMs run on packed sequences (the backward direction
starts at the last real word), and the softmax is masked.

The encoder holds the ``Vocabulary`` (``aamn.data.text``) and maps ``query_tokens`` to ids itself,
so the model consumes the mapper's ``query_tokens`` directly.

``MeanPoolingEncoder`` is the language side of Table IV's "Baseline Model"
(``MODEL.AAMN.MATCHING = "baseline"``): the same word embeddings, no BiLSTM and no attention heads;
the query is the mean of the embeddings of its real words, ``q = 1/N sum_t e_t``.  It returns the
same dict as ``BiLSTMAttentionEncoder`` with ``q_actor = q_action = q`` and uniform word weights
``1/N`` (mean pooling is attention with equal weights), so the rest of the model and the output
contract do not change.
"""
import logging
import os
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from detectron2.config import configurable
from detectron2.utils import comm
from detectron2.utils.registry import Registry

from aamn.data.text import Vocabulary, load_word_vectors, vocabulary_from_datasets

__all__ = [
    "LANGUAGE_ENCODER_REGISTRY",
    "BiLSTMAttentionEncoder",
    "MeanPoolingEncoder",
    "WordEmbeddingEncoder",
    "build_language_encoder",
    "vocabulary_from_config",
    "masked_softmax",
]

logger = logging.getLogger(__name__)

LANGUAGE_ENCODER_REGISTRY = Registry("LANGUAGE_ENCODER")
LANGUAGE_ENCODER_REGISTRY.__doc__ = """
Registry for the query encoders (``MODEL.LANGUAGE.NAME``).  A registered object is called with the
config and returns an ``nn.Module`` whose ``forward(query_tokens: List[List[str]])`` returns the
dict documented in ``BiLSTMAttentionEncoder.forward``.
"""

PAD_ID = Vocabulary.PAD_ID  # <pad> = 0, <unk> = 1


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``logits`` over the positions where ``mask`` is True; others get exactly 0.

    Every row must have at least one True entry.
    """
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=dim).masked_fill(~mask, 0.0)


def vocabulary_from_config(cfg):
    """The vocabulary of ``cfg``: ``MODEL.LANGUAGE.VOCAB_FILE`` if set, else built from the queries
    of ``DATASETS.TRAIN`` (``MIN_FREQ``) and saved to ``OUTPUT_DIR/vocab.json`` (main process),
    which evaluation then reads.
    """
    path = cfg.MODEL.LANGUAGE.VOCAB_FILE
    if path:
        vocab = Vocabulary.load(path)
        logger.info("Loaded a vocabulary of %d words from %s", len(vocab), path)
        return vocab
    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "MODEL.LANGUAGE.VOCAB_FILE is empty and DATASETS.TRAIN names no data set to build the "
            "vocabulary from"
        )
    vocab = vocabulary_from_datasets(list(cfg.DATASETS.TRAIN), cfg.MODEL.LANGUAGE.MIN_FREQ)
    logger.info("Built a vocabulary of %d words from %s", len(vocab), list(cfg.DATASETS.TRAIN))
    if cfg.OUTPUT_DIR and comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        out = os.path.join(cfg.OUTPUT_DIR, "vocab.json")
        vocab.save(out)
        logger.info("Saved the vocabulary to %s", out)
    return vocab


def build_language_encoder(cfg) -> nn.Module:
    """Build ``MODEL.LANGUAGE.NAME`` from ``LANGUAGE_ENCODER_REGISTRY``."""
    return LANGUAGE_ENCODER_REGISTRY.get(cfg.MODEL.LANGUAGE.NAME)(cfg)


def _embedding_args_from_config(cfg) -> Dict:
    """The vocabulary and word-embedding arguments shared by the query encoders."""
    vocab = vocabulary_from_config(cfg)
    word_vectors = None
    if cfg.MODEL.LANGUAGE.WORD_VECTORS:
        word_vectors, n_found = load_word_vectors(cfg.MODEL.LANGUAGE.WORD_VECTORS, vocab, cfg.MODEL.LANGUAGE.EMBED_DIM)
        logger.info("Word vectors from %s cover %d of %d words", cfg.MODEL.LANGUAGE.WORD_VECTORS, n_found, len(vocab))
    return {
        "vocab": vocab,
        "embed_dim": cfg.MODEL.LANGUAGE.EMBED_DIM,
        "max_length": cfg.INPUT.QUERY_MAX_LENGTH,
        "word_vectors": word_vectors,
        "freeze_embeddings": cfg.MODEL.LANGUAGE.FREEZE_EMBEDDINGS,
    }


class WordEmbeddingEncoder(nn.Module):
    """The part every query encoder shares: the vocabulary, token -> id mapping and the word
    embedding table ``embedding`` (``len(vocab), Ce``).

    Attributes:
        embed_dim (int): ``Ce``, the width of the word embeddings and of the query vectors.
    """

    @configurable
    def __init__(
        self,
        *,
        vocab,
        embed_dim: int = 300,
        max_length: int = 20,
        word_vectors: Optional[torch.Tensor] = None,
        freeze_embeddings: bool = False,
    ):
        """
        Args:
            vocab: an ``aamn.data.text.Vocabulary`` (``len(vocab)`` words, ``<pad>`` = 0,
                ``encode(tokens, max_length) -> (LongTensor (max_length,), length)``).
            embed_dim: ``Ce``.
            max_length: queries are cut to this many words (paper: 20).
            word_vectors: optional ``(len(vocab), embed_dim)`` initial embeddings.
            freeze_embeddings: keep the embeddings fixed.
        """
        super().__init__()
        self.vocab = vocab
        self.embed_dim = embed_dim
        self.max_length = max_length
        self.embedding = nn.Embedding(len(vocab), embed_dim, padding_idx=PAD_ID)
        if word_vectors is not None:
            if tuple(word_vectors.shape) != (len(vocab), embed_dim):
                raise ValueError(
                    f"word_vectors has shape {tuple(word_vectors.shape)}, expected "
                    f"({len(vocab)}, {embed_dim})"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(word_vectors)
                self.embedding.weight[PAD_ID].zero_()
        self.embedding.weight.requires_grad_(not freeze_embeddings)

    @classmethod
    def from_config(cls, cfg):
        return _embedding_args_from_config(cfg)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def encode_tokens(self, query_tokens: Sequence[Sequence[str]]):
        """Map token lists to ids.

        Returns:
            ids: LongTensor ``(B, N)``, ``N`` = the longest (cut) query of the batch, 0-padded.
            lengths: LongTensor ``(B,)``, the number of real words (>= 1) of each query.
        """
        if len(query_tokens) == 0:
            raise ValueError("No queries given")
        ids, lengths = [], []
        for i, tokens in enumerate(query_tokens):
            if isinstance(tokens, str):
                raise TypeError("query_tokens must be lists of words, not strings")
            if len(tokens) == 0:
                raise ValueError(f"Query {i} of the batch is empty (no tokens)")
            row, length = self.vocab.encode(list(tokens), self.max_length)
            length = int(length)
            if length == 0:
                raise ValueError(f"Query {i} of the batch is empty after encoding: {list(tokens)}")
            ids.append(torch.as_tensor(row, dtype=torch.long))
            lengths.append(length)
        n = max(lengths)
        ids = torch.stack([r[:n] for r in ids]).to(self.device)
        return ids, torch.as_tensor(lengths, dtype=torch.long, device=self.device)


@LANGUAGE_ENCODER_REGISTRY.register()
class BiLSTMAttentionEncoder(WordEmbeddingEncoder):
    """Embeddings -> stacked BiLSTM (Eq. 3) -> actor / action word attention (Eq. 4) -> q (Eq. 5).

    Attributes:
        embed_dim (int): ``Ce``, the width of ``q_actor`` / ``q_action``.
        random_attention (bool): at test time (``not self.training``) replace the learned weights
            by random ones (Table IX): i.i.d. uniform [0, 1) values on the real words, normalised
            to sum to 1.  Training always uses the learned attention.
    """

    @configurable
    def __init__(
        self,
        *,
        vocab,
        embed_dim: int = 300,
        hidden_dim: int = 512,
        num_layers: int = 2,
        max_length: int = 20,
        word_vectors: Optional[torch.Tensor] = None,
        freeze_embeddings: bool = False,
        random_attention: bool = False,
    ):
        """
        Args:
            vocab, embed_dim, max_length, word_vectors, freeze_embeddings: see
                ``WordEmbeddingEncoder``.
            hidden_dim: LSTM hidden size per direction.
            num_layers: number of stacked BiLSTM layers (paper: 2).
            random_attention: see the class docstring.
        """
        if num_layers < 1:
            raise ValueError("MODEL.LANGUAGE.NUM_LAYERS must be >= 1")
        super().__init__(
            vocab=vocab,
            embed_dim=embed_dim,
            max_length=max_length,
            word_vectors=word_vectors,
            freeze_embeddings=freeze_embeddings,
        )
        self.random_attention = random_attention
        # Eq. (3): one BiLSTM per layer so that every layer's states are available for h_t.
        self.lstms = nn.ModuleList(
            nn.LSTM(embed_dim if i == 0 else 2 * hidden_dim, hidden_dim, batch_first=True, bidirectional=True)
            for i in range(num_layers)
        )
        self.word_dim = 2 * hidden_dim * num_layers  # Ch
        # Eq. (4): W_actor, W_action.
        self.actor_attention = nn.Linear(self.word_dim, 1)
        self.action_attention = nn.Linear(self.word_dim, 1)

    @classmethod
    def from_config(cls, cfg):
        return {
            **_embedding_args_from_config(cfg),
            "hidden_dim": cfg.MODEL.LANGUAGE.HIDDEN_DIM,
            "num_layers": cfg.MODEL.LANGUAGE.NUM_LAYERS,
            "random_attention": cfg.MODEL.AAMN.RANDOM_WORD_ATTENTION,
        }

    def encode_words(self, ids: torch.Tensor, lengths: torch.Tensor):
        """Eq. (3).  ``ids (B, N)``, ``lengths (B,)`` -> embeddings ``e (B, N, Ce)``, word states
        ``h (B, N, Ch)`` (zero at padding)."""
        e = self.embedding(ids)
        x, layers = e, []
        for lstm in self.lstms:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            layers.append(x)
        return e, torch.cat(layers, dim=-1)  # h_t = [h1_t, h2_t, ...]

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            query_tokens: B token lists (each cut to ``max_length`` words).

        Returns:
            dict with ``q_actor``, ``q_action`` ``(B, Ce)``; ``attn_actor``, ``attn_action``
            ``(B, N)`` (rows sum to 1 over the real words, 0 at padding); ``mask`` ``(B, N)`` bool
            (real words); ``lengths`` ``(B,)``.
        """
        ids, lengths = self.encode_tokens(query_tokens)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        e, h = self.encode_words(ids, lengths)
        if self.random_attention and not self.training:
            # Table IX: random word attention at test time.
            attn_actor = masked_softmax(torch.rand_like(ids, dtype=e.dtype).log(), mask)
            attn_action = masked_softmax(torch.rand_like(ids, dtype=e.dtype).log(), mask)
        else:
            # Eq. (4): gamma_m_t = softmax_t(W_m h_t), over the real words only.
            attn_actor = masked_softmax(self.actor_attention(h).squeeze(-1), mask)
            attn_action = masked_softmax(self.action_attention(h).squeeze(-1), mask)
        # Eq. (5): q_m = sum_t gamma_m_t e_t.
        q_actor = torch.einsum("bn,bnc->bc", attn_actor, e)
        q_action = torch.einsum("bn,bnc->bc", attn_action, e)
        return {
            "q_actor": q_actor,
            "q_action": q_action,
            "attn_actor": attn_actor,
            "attn_action": attn_action,
            "mask": mask,
            "lengths": lengths,
        }


class MeanPoolingEncoder(WordEmbeddingEncoder):
    """The "Baseline Model" query (Table IV): the mean of the word embeddings, ``q = 1/N sum_t e_t``.

    Built by the AAMN meta-architecture when ``MODEL.AAMN.MATCHING = "baseline"`` (whatever
    ``MODEL.LANGUAGE.NAME`` says: the row defines its language side); reads the embedding keys of
    ``MODEL.LANGUAGE`` (``EMBED_DIM``, ``VOCAB_FILE``, ``MIN_FREQ``, ``WORD_VECTORS``,
    ``FREEZE_EMBEDDINGS``), not ``HIDDEN_DIM`` / ``NUM_LAYERS``; its constructor is
    ``WordEmbeddingEncoder``'s.
    """

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            query_tokens: B token lists (each cut to ``max_length`` words).

        Returns:
            the dict of ``BiLSTMAttentionEncoder.forward``: ``q_actor`` = ``q_action`` = the mean
            word embedding ``(B, Ce)``; ``attn_actor`` = ``attn_action`` ``(B, N)`` = ``1/N_b`` on
            the real words of query ``b``, 0 at padding; ``mask`` ``(B, N)``; ``lengths`` ``(B,)``.
        """
        ids, lengths = self.encode_tokens(query_tokens)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        e = self.embedding(ids)  # (B, N, Ce)
        weights = mask.to(e.dtype) / lengths[:, None].to(e.dtype)  # (B, N): mean pooling
        q = torch.einsum("bn,bnc->bc", weights, e)
        return {
            "q_actor": q,
            "q_action": q,
            "attn_actor": weights,
            "attn_action": weights,
            "mask": mask,
            "lengths": lengths,
        }
