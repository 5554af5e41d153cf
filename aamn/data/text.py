"""Text processing for the queries: tokenizer, vocabulary, pretrained word vectors.

- ``tokenize(text)``: lower-case, collapse white space, split into words and punctuation marks.
- ``Vocabulary``: built from the training queries, saved with the model (a JSON list of words);
  id 0 is ``<pad>``, id 1 is ``<unk>`` (every word not in the vocabulary).
- ``load_word_vectors(path, vocab, dim)``: GloVe (no header) or word2vec text-format vectors given
  by
  path; the parsed file is cached in binary form next to it (or under ``$AAMN_CACHE``, default
  ``~/.cache/aamn``, when that folder is read-only), keyed by the file's size and modification time.
"""

import json
import logging
import os
import re
from collections import Counter

import numpy as np
import torch
from aamn.utils.io import atomic_path
from aamn.utils.io import cache_dir as io_cache_dir

__all__ = [
    "tokenize",
    "query_words",
    "swap_left_right",
    "Vocabulary",
    "load_word_vectors",
    "vocabulary_from_datasets",
]

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def tokenize(text):
    """Split a query into tokens.

    Lower-cases, collapses white space and splits into runs of letters / digits (words) and single
    punctuation marks: ``"The man, on the LEFT"`` -> ``["the", "man", ",", "on", "the", "left"]``.

    Returns:
        list[str]
    """
    return _TOKEN.findall(" ".join(str(text).lower().split()))


def query_words(tokens):
    """The tokens of a query that are words (``tokenize`` keeps punctuation marks as tokens of
    their own): a query with none has nothing to ground."""
    return [t for t in tokens if t[0].isalnum()]


def swap_left_right(text):
    """Swap the whole words ``left`` and ``right`` (for a horizontally flipped clip)."""
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


class Vocabulary:
    """A list of words; a word's id is its position.

    ``PAD`` (id 0) pads encoded queries; ``UNK`` (id 1) stands for every word not in the list.
    """

    PAD = "<pad>"
    UNK = "<unk>"
    PAD_ID = 0
    UNK_ID = 1

    def __init__(self, words):
        """
        Args:
            words: list of str starting with ``PAD``, ``UNK``; no duplicates.
        """
        words = list(words)
        if len(words) < 2 or words[0] != self.PAD or words[1] != self.UNK:
            raise ValueError(
                f"A vocabulary must start with {self.PAD!r}, {self.UNK!r}; got {words[:2]!r}"
            )
        if len(set(words)) != len(words):
            dup = [w for w, c in Counter(words).items() if c > 1][:5]
            raise ValueError(f"Duplicate words in the vocabulary: {dup}")
        self.words = words
        self._index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, token_lists, min_freq=1):
        """Build from tokenized texts.

        Args:
            token_lists: iterable of token lists (``tokenize`` output).
            min_freq: words seen fewer times are left out (they encode as ``UNK``).

        Words are ordered by decreasing frequency, ties alphabetically (deterministic).
        """
        counts = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for special in (cls.PAD, cls.UNK):
            counts.pop(special, None)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)
        )
        return cls([cls.PAD, cls.UNK] + kept)

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self._index

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.words == other.words

    def __repr__(self):
        return f"Vocabulary({len(self)} words)"

    def index(self, word):
        """Id of ``word`` (``UNK_ID`` for an unknown word)."""
        return self._index.get(word, self.UNK_ID)

    def encode(self, tokens, max_length):
        """Ids of a token list, cut or padded to ``max_length``.

        Returns:
            (LongTensor ``(max_length,)``, int length): ids (``PAD_ID`` after ``length``) and the
            number of real tokens, ``min(len(tokens), max_length)``.
        """
        ids = [self.index(t) for t in list(tokens)[:max_length]]
        length = len(ids)
        out = torch.full((max_length,), self.PAD_ID, dtype=torch.long)
        if length:
            out[:length] = torch.tensor(ids, dtype=torch.long)
        return out, length

    def save(self, path):
        """Write the word list as JSON (atomically)."""
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.words, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by ``save``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a JSON list of words starting with ``<pad>``, ``<unk>``.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Vocabulary file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                words = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a vocabulary file (a JSON list of words): {e}") from e
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path} is not a vocabulary file: expected a JSON list of strings")
        try:
            return cls(words)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e


def vocabulary_from_datasets(dataset_names, min_freq=1):
    """Build a ``Vocabulary`` from the ``query`` fields of registered data sets.

    Each distinct (video, instance, query) is counted once, however many annotated frames it has.

    Args:
        dataset_names: a name or a list of names in ``DatasetCatalog``.
    """
    from detectron2.data import DatasetCatalog

    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    seen = set()
    token_lists = []
    for name in dataset_names:
        for r in DatasetCatalog.get(name):
            if "query" not in r:
                raise ValueError(f"Data set {name!r} has records without a 'query' field")
            key = (name, r.get("video_id"), r.get("instance_id"), r["query"])
            if key in seen:
                continue
            seen.add(key)
            token_lists.append(tokenize(r["query"]))
    return Vocabulary.build(token_lists, min_freq=min_freq)


# ---------------------------------------------------------------------------- word vectors
def _vector_cache_dir(path):
    """The vector file's folder when writable, else ``$AAMN_CACHE/word_vectors/<hash of path>``."""
    return io_cache_dir(os.path.dirname(os.path.abspath(path)), "word_vectors", path)


def _parse_vector_file(path):
    """Parse a GloVe / word2vec text file -> (list of words, float32 (n, dim))."""
    words, rows = [], []
    dim = None
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        first = f.readline()
        parts = first.rstrip("\n").split(" ")
        parts = [p for p in parts if p != ""]
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            dim = int(parts[1])  # word2vec text header "count dim"
            lines_start = 2
        else:
            f.seek(0)
            lines_start = 1
        for lineno, line in enumerate(f, start=lines_start):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2 or (len(parts) == 1 and not parts[0]):
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) < dim + 1:
                raise ValueError(
                    f"{path}, line {lineno}: {len(parts) - 1} values, expected {dim} (a word then "
                    f"{dim} numbers)"
                )
            # A word may itself contain spaces (some GloVe releases): the vector is the last dim
            # fields.
            word = " ".join(parts[:-dim])
            try:
                rows.append(np.asarray(parts[-dim:], dtype=np.float32))
            except ValueError as e:
                raise ValueError(f"{path}, line {lineno}: not a word vector ({e})") from e
            words.append(word)
    if not words:
        raise ValueError(f"{path} holds no word vectors (expected GloVe or word2vec text format)")
    return words, np.stack(rows)


def _load_parsed(path):
    """(words, float32 (n, dim)) of a vector file, through the binary cache."""
    st = os.stat(path)
    cache_dir = _vector_cache_dir(path)
    base = os.path.join(cache_dir, f"{os.path.basename(path)}.{st.st_size}_{st.st_mtime_ns}")
    npy, txt = base + ".vectors.npy", base + ".words.json"
    if os.path.isfile(npy) and os.path.isfile(txt):
        try:
            with open(txt, encoding="utf-8") as f:
                words = json.load(f)
            vectors = np.load(npy, mmap_mode="r")
            if len(words) == vectors.shape[0]:
                return words, vectors
        except (OSError, ValueError):
            pass
        logger.warning("Ignoring the unreadable word-vector cache %s", base)
    logger.info("Parsing word vectors %s (cached in binary form afterwards)", path)
    words, vectors = _parse_vector_file(path)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        for dst, write in (
            (npy, lambda f: np.save(f, vectors)),
            (txt, lambda f: f.write(json.dumps(words, ensure_ascii=False).encode())),
        ):
            with atomic_path(dst) as tmp, open(tmp, "wb") as f:
                write(f)
    except OSError as e:
        logger.warning("Cannot write the word-vector cache under %s: %s", cache_dir, e)
    return words, vectors


def _word2vec_bin_vectors(path, wanted, dim):
    """``(words, float32 (n, dim))`` of the entries of a word2vec binary file whose word, or its
    lower-cased form, is in ``wanted``, in the file's order.

    The format: a text line ``count dim``, then ``count`` entries ``word<space>`` + ``dim``
    little-endian float32 (+ an optional newline).  The file is memory-mapped and scanned: only
    the wanted vectors are copied, so a 3.6 GB file (GoogleNews) costs its wanted rows in memory,
    never the matrix.
    """
    import mmap

    with open(path, "rb") as f:
        header = f.readline()
        try:
            count, file_dim = (int(x) for x in header.split())
        except ValueError:
            raise ValueError(
                f"{path}: not a word2vec binary file (its first line is {header[:40]!r}, "
                "expected 'count dim')"
            ) from None
        if file_dim != dim:
            raise ValueError(
                f"The word vectors in {path} have {file_dim} dimensions, expected {dim} "
                "(MODEL.LANGUAGE.EMBED_DIM)"
            )
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path} is empty")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos, step = len(header), 4 * dim
        words, rows = [], []
        for n in range(count):
            while pos < size and mm[pos : pos + 1] in (b"\n", b" "):
                pos += 1
            end = mm.find(b" ", pos)
            if end < 0 or end + 1 + step > size:
                raise ValueError(
                    f"{path}: entry {n + 1} of {count} is cut short (a truncated word2vec file)"
                )
            word = mm[pos:end].decode("utf-8", errors="replace")
            if word in wanted or word.lower() in wanted:
                words.append(word)
                rows.append(np.frombuffer(mm, "<f4", count=dim, offset=end + 1).copy())
            pos = end + 1 + step
    finally:
        mm.close()
    return words, (np.stack(rows) if rows else np.zeros((0, dim), np.float32))


def load_word_vectors(path, vocab, dim, seed=0):
    """Embedding matrix for ``vocab`` from a GloVe / word2vec text-format file, or a word2vec
    binary ``.bin`` file (only the vocabulary's vectors are read, ``_word2vec_bin_vectors``).

    Args:
        path: text file, one ``word v1 ... v_dim`` per line; a first line ``count dim`` (word2vec)
            is recognised and skipped.  A ``.bin`` file: word2vec's binary format.
        vocab: a ``Vocabulary``.
        dim: the expected vector width.
        seed: seed of the random vectors of the words not in the file.

    Returns:
        (FloatTensor ``(len(vocab), dim)``, int n_found): row ``i`` is the vector of
        ``vocab.words[i]`` (exact match first, else its lower-cased form); words not found get
        ``N(0, 0.1^2)`` vectors from a fixed seed; ``<pad>`` gets zeros.  ``n_found`` counts the
        vocabulary words found in the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file's vectors do not have ``dim`` values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Word-vector file not found: {path}")
    if path.endswith(".bin"):
        words, vectors = _word2vec_bin_vectors(path, set(vocab.words), dim)
    else:
        words, vectors = _load_parsed(path)
    if vectors.shape[1] != dim:
        raise ValueError(
            f"The word vectors in {path} have {vectors.shape[1]} dimensions, expected {dim} "
            "(MODEL.LANGUAGE.EMBED_DIM)"
        )
    exact, lower = {}, {}
    for i, w in enumerate(words):
        exact.setdefault(w, i)
        lower.setdefault(w.lower(), i)
    gen = torch.Generator().manual_seed(seed)
    out = torch.randn((len(vocab), dim), generator=gen) * 0.1
    out[Vocabulary.PAD_ID] = 0
    n_found = 0
    for i, w in enumerate(vocab.words):
        j = exact.get(w, lower.get(w))
        if j is not None:
            out[i] = torch.from_numpy(np.array(vectors[j], dtype=np.float32))
            n_found += 1
    return out, n_found
