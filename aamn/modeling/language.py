"""Query encoders (Sec. III-B, Eq. 3) and the vocabulary a model is built with.

Every encoder of ``LANGUAGE_ENCODER_REGISTRY`` (``MODEL.LANGUAGE.NAME``) maps the tokenised
queries of a batch to one dict, the contract all the project's models read from:

* ``embeddings`` ``(B, N, Ce)``: the word embeddings ``e_t`` (``Ce`` =
  ``MODEL.LANGUAGE.EMBED_DIM``),
  learned from the training vocabulary or initialised from GloVe / word2vec vectors
  (``MODEL.LANGUAGE.WORD_VECTORS``), 0 at padding;
* ``word_states`` ``(B, N, Ch)``: a contextual state per word (0 at padding);
* ``sentence`` ``(B, D)``: one vector for the whole query;
* ``mask`` ``(B, N)`` bool (real words) and ``lengths`` ``(B,)``.

``WordEmbeddingEncoder``: the embeddings alone (``word_states = embeddings``, ``sentence`` = their
mean over the real words).  ``BiLSTMEncoder`` (AAMN, Eq. 3): a stack of ``NUM_LAYERS``
bidirectional LSTMs (paper: 2 layers, 512 per direction); the word state ``h_t`` is the
concatenation of every layer's forward and backward states, ``[h1_t, h2_t]``, so
``Ch = 2 * HIDDEN_DIM * NUM_LAYERS``; ``sentence`` is the last layer's final forward and backward
states.  Padding never influences the result: the LSTMs run on packed sequences.  AAMN's actor /
action word attention (Eq. 4-5) reads ``word_states`` and ``embeddings``
(``aamn.modeling.word_attention``).

The encoder holds the ``Vocabulary`` (``aamn.data.text``) and maps ``query_tokens`` to ids itself;
which vocabulary a model is built with is decided once, before the model is built
(``aamn.modeling.vocabulary.resolve_vocabulary``); the encoders only load the file it names.
"""

import logging
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from detectron2.config import configurable
from detectron2.utils.registry import Registry

from aamn.data.text import Vocabulary, load_word_vectors

from .vocabulary import vocabulary_from_config

__all__ = [
    "LANGUAGE_ENCODER_REGISTRY",
    "BiGRUMaxEncoder",
    "BiLSTMEncoder",
    "Conv1dMaxEncoder",
    "WordEmbeddingEncoder",
    "masked_max",
    "build_language_encoder",
    "masked_softmax",
]

logger = logging.getLogger(__name__)

LANGUAGE_ENCODER_REGISTRY = Registry("LANGUAGE_ENCODER")
LANGUAGE_ENCODER_REGISTRY.__doc__ = """
Registry for the query encoders (``MODEL.LANGUAGE.NAME``).  A registered object is called with the
config and returns an ``nn.Module`` whose ``forward(query_tokens: List[List[str]])`` returns the
dict documented in ``WordEmbeddingEncoder.forward`` (``embeddings``, ``word_states``, ``sentence``,
``mask``, ``lengths``) and that has the attributes ``vocab``, ``embed_dim``, ``word_dim`` (``Ch``)
and ``sentence_dim`` (``D``).
"""

PAD_ID = Vocabulary.PAD_ID  # <pad> = 0, <unk> = 1


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``logits`` over the positions where ``mask`` is True; others get exactly 0.

    Every row must have at least one True entry.
    """
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=dim).masked_fill(~mask, 0.0)


def build_language_encoder(cfg) -> nn.Module:
    """Build ``MODEL.LANGUAGE.NAME`` from ``LANGUAGE_ENCODER_REGISTRY``."""
    return LANGUAGE_ENCODER_REGISTRY.get(cfg.MODEL.LANGUAGE.NAME)(cfg)


def _embedding_args_from_config(cfg) -> Dict:
    """The vocabulary and word-embedding arguments shared by the query encoders."""
    vocab = vocabulary_from_config(cfg)
    word_vectors = None
    if cfg.MODEL.LANGUAGE.WORD_VECTORS and getattr(vocab, "with_weights", False):
        # The embeddings come with the trained weights: the vector file is not needed (nor read).
        logger.info(
            "Not reading MODEL.LANGUAGE.WORD_VECTORS: the embeddings come from %s", vocab.source
        )
    elif cfg.MODEL.LANGUAGE.WORD_VECTORS:
        word_vectors, n_found = load_word_vectors(
            cfg.MODEL.LANGUAGE.WORD_VECTORS, vocab, cfg.MODEL.LANGUAGE.EMBED_DIM
        )
        logger.info(
            "Word vectors from %s cover %d of %d words",
            cfg.MODEL.LANGUAGE.WORD_VECTORS,
            n_found,
            len(vocab),
        )
    return {
        "vocab": vocab,
        "embed_dim": cfg.MODEL.LANGUAGE.EMBED_DIM,
        "max_length": cfg.INPUT.QUERY_MAX_LENGTH,
        "word_vectors": word_vectors,
        "freeze_embeddings": cfg.MODEL.LANGUAGE.FREEZE_EMBEDDINGS,
    }


@LANGUAGE_ENCODER_REGISTRY.register()
class WordEmbeddingEncoder(nn.Module):
    """The part every query encoder shares: the vocabulary, token -> id mapping and the word
    embedding table ``embedding`` (``len(vocab), Ce``).  Used alone, the word states are the
    embeddings and the sentence is their mean (Table IV's "Baseline Model" query).

    Attributes:
        embed_dim (int): ``Ce``, the width of the word embeddings.
        word_dim (int): ``Ch``, the width of ``word_states``.
        sentence_dim (int): ``D``, the width of ``sentence``.
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
        self.word_dim = embed_dim
        self.sentence_dim = embed_dim

    @classmethod
    def from_config(cls, cfg):
        return _embedding_args_from_config(cfg)

    def embed(self, query_tokens: Sequence[Sequence[str]]):
        """``ids (B, N)``, ``lengths (B,)``, ``mask (B, N)`` and the embeddings ``(B, N, Ce)``."""
        ids, lengths = self.encode_tokens(query_tokens)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        return ids, lengths, mask, self.embedding(ids)

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            query_tokens: B token lists (each cut to ``max_length`` words).

        Returns:
            dict with ``embeddings`` ``(B, N, Ce)``, ``word_states`` ``(B, N, Ch)`` (here the
            embeddings), ``sentence`` ``(B, D)`` (here the mean embedding of the real words),
            ``mask`` ``(B, N)`` bool, ``lengths`` ``(B,)``; ``N`` = the longest query of the batch.
        """
        _, lengths, mask, e = self.embed(query_tokens)
        sentence = (e * mask[..., None]).sum(1) / lengths[:, None].to(e.dtype)
        return {
            "embeddings": e,
            "word_states": e,
            "sentence": sentence,
            "mask": mask,
            "lengths": lengths,
        }

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
class BiLSTMEncoder(WordEmbeddingEncoder):
    """Embeddings -> stacked BiLSTM (Eq. 3): AAMN's query encoder."""

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
    ):
        """
        Args:
            vocab, embed_dim, max_length, word_vectors, freeze_embeddings: see
                ``WordEmbeddingEncoder``.
            hidden_dim: LSTM hidden size per direction.
            num_layers: number of stacked BiLSTM layers (paper: 2).
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
        # Eq. (3): one BiLSTM per layer so that every layer's states are available for h_t.
        self.lstms = nn.ModuleList(
            nn.LSTM(
                embed_dim if i == 0 else 2 * hidden_dim,
                hidden_dim,
                batch_first=True,
                bidirectional=True,
            )
            for i in range(num_layers)
        )
        self.hidden_dim = hidden_dim
        self.word_dim = 2 * hidden_dim * num_layers  # Ch
        self.sentence_dim = 2 * hidden_dim

    @classmethod
    def from_config(cls, cfg):
        return {
            **_embedding_args_from_config(cfg),
            "hidden_dim": cfg.MODEL.LANGUAGE.HIDDEN_DIM,
            "num_layers": cfg.MODEL.LANGUAGE.NUM_LAYERS,
        }

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        """The dict of ``WordEmbeddingEncoder.forward``; ``word_states`` are Eq. (3)'s ``h_t``
        ``(B, N, Ch)``, ``sentence`` the last layer's final forward and backward states
        ``(B, 2H)``."""
        ids, lengths, mask, e = self.embed(query_tokens)
        x, layers = e, []
        for lstm in self.lstms:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            layers.append(x)
        ar = torch.arange(len(lengths), device=ids.device)
        H = self.hidden_dim
        sentence = torch.cat([x[ar, lengths - 1, :H], x[:, 0, H:]], dim=1)
        return {
            "embeddings": e,
            "word_states": torch.cat(layers, dim=-1),  # h_t = [h1_t, h2_t, ...]
            "sentence": sentence,
            "mask": mask,
            "lengths": lengths,
        }


class _EmbeddingOnlyEncoder(WordEmbeddingEncoder):
    """Base of the comparison systems' encoders: ``WordEmbeddingEncoder``'s constructor arguments
    plus ``hidden_dim`` (``MODEL.LANGUAGE.HIDDEN_DIM``), read by the subclass that needs it."""

    @configurable
    def __init__(self, *, hidden_dim: int = 0, **embedding_args):
        super().__init__(**embedding_args)
        self.hidden_dim = hidden_dim

    @classmethod
    def from_config(cls, cfg):
        return {**_embedding_args_from_config(cfg), "hidden_dim": cfg.MODEL.LANGUAGE.HIDDEN_DIM}


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the positions where ``mask`` is True: ``x (B, N, C)``, ``mask (B, N)`` ->
    ``(B, C)``."""
    return x.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values


@LANGUAGE_ENCODER_REGISTRY.register()
class Conv1dMaxEncoder(_EmbeddingOnlyEncoder):
    """The sentence encoder of Gavrilyuk et al. (2018), Sec. 3.1: word embeddings ->
    ``Conv1d(Ce, Ce, kernel 2)`` -> ReLU -> max over the positions -> ``T (B, Ce)``.

    Padding (the paper is silent): the embeddings get one trailing zero vector, so a query of ``n``
    words has ``n`` windows (the last one pairs the last word with the zero), and the max runs over
    those windows only.  ``word_states`` are the ``(B, N, Ce)`` window responses.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = nn.Conv1d(self.embed_dim, self.embed_dim, kernel_size=2)

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        _, lengths, mask, e = self.embed(query_tokens)
        windows = torch.relu(self.conv(nn.functional.pad(e.transpose(1, 2), (0, 1)))).transpose(
            1, 2
        )
        return {
            "embeddings": e,
            "word_states": windows,
            "sentence": masked_max(windows, mask),
            "mask": mask,
            "lengths": lengths,
        }


@LANGUAGE_ENCODER_REGISTRY.register()
class BiGRUMaxEncoder(_EmbeddingOnlyEncoder):
    """The sentence encoder of CMDy (Sec. 3.1): word embeddings -> a bidirectional GRU of
    ``HIDDEN_DIM`` per direction (packed: padding is never seen) -> max over the real words ->
    ``F_T (B, 2 HIDDEN_DIM)``.  ``word_states`` are the GRU states ``(B, N, 2 HIDDEN_DIM)``."""

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.hidden_dim < 1:
            raise ValueError("BiGRUMaxEncoder needs MODEL.LANGUAGE.HIDDEN_DIM >= 1")
        self.gru = nn.GRU(self.embed_dim, self.hidden_dim, batch_first=True, bidirectional=True)
        self.word_dim = self.sentence_dim = 2 * self.hidden_dim

    def forward(self, query_tokens: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        ids, lengths, mask, e = self.embed(query_tokens)
        packed = pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(
            self.gru(packed)[0], batch_first=True, total_length=ids.shape[1]
        )
        return {
            "embeddings": e,
            "word_states": states,
            "sentence": masked_max(states, mask),
            "mask": mask,
            "lengths": lengths,
        }
