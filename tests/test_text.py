"""Text: tokenizer, vocabulary, GloVe / word2vec loading with its binary cache."""

import os
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from aamn.data import text as text_mod
from aamn.data.text import (
    Vocabulary,
    load_word_vectors,
    swap_left_right,
    tokenize,
    vocabulary_from_datasets,
)


def test_tokenize():
    assert tokenize("  The MAN,  on the LEFT\tis walking.") == [
        "the",
        "man",
        ",",
        "on",
        "the",
        "left",
        "is",
        "walking",
        ".",
    ]
    assert tokenize("a dog's tail; right-hand side") == [
        "a",
        "dog",
        "'",
        "s",
        "tail",
        ";",
        "right",
        "-",
        "hand",
        "side",
    ]
    assert tokenize("") == []
    assert (
        swap_left_right("the left man and the right dog, leftover")
        == "the right man and the left dog, leftover"
    )


def test_vocabulary_build_order_encode_and_save(tmp_path):
    texts = ["the man walks", "the dog runs", "a dog", "the cat"]
    vocab = Vocabulary.build([tokenize(t) for t in texts])
    # <pad>, <unk>, then by frequency desc, ties alphabetical
    assert vocab.words == ["<pad>", "<unk>", "the", "dog", "a", "cat", "man", "runs", "walks"]
    assert len(vocab) == 9 and vocab.index("<pad>") == 0 and vocab.index("zebra") == 1
    ids, n = vocab.encode(["the", "zebra", "dog"], 5)
    assert ids.dtype == torch.long and ids.tolist() == [2, 1, 3, 0, 0] and n == 3
    ids, n = vocab.encode(tokenize("the dog the dog the dog"), 4)
    assert ids.tolist() == [2, 3, 2, 3] and n == 4
    assert vocab.encode([], 3)[0].tolist() == [0, 0, 0]
    assert Vocabulary.build([tokenize(t) for t in texts], min_freq=2).words == [
        "<pad>",
        "<unk>",
        "the",
        "dog",
    ]
    path = tmp_path / "sub" / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    # same input, same file
    vocab.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json", "not a vocabulary file"),
        ('{"a": 1}', "JSON list"),
        ('["the", "<pad>", "<unk>"]', "must start with"),
        ('["<pad>", "<unk>", "a", "a"]', "Duplicate"),
    ],
)
def test_vocabulary_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        Vocabulary.load(path)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        Vocabulary.load(tmp_path / "absent.json")


def write_glove(path, dim=4, header=False):
    rows = {
        "the": [0.1, 0.2, 0.3, 0.4],
        "Dog": [1, 2, 3, 4],
        "dog": [5, 6, 7, 8],
        "man": [-1, -2, -3, -4],
        "a b": [9, 9, 9, 9],
    }
    with open(path, "w") as f:
        if header:
            f.write(f"{len(rows)} {dim}\n")
        for w, v in rows.items():
            f.write(w + " " + " ".join(str(x) for x in v[:dim]) + "\n")
    return rows


@pytest.mark.parametrize("header", [False, True])
def test_load_word_vectors_glove_and_word2vec(tmp_path, header):
    path = str(tmp_path / ("w2v.txt" if header else "glove.txt"))
    rows = write_glove(path, header=header)
    vocab = Vocabulary(["<pad>", "<unk>", "the", "dog", "man", "zebra"])
    emb, n_found = load_word_vectors(path, vocab, 4)
    assert emb.shape == (6, 4) and emb.dtype == torch.float32
    assert n_found == 3
    assert torch.equal(emb[0], torch.zeros(4))
    np.testing.assert_allclose(emb[2].numpy(), rows["the"])
    np.testing.assert_allclose(emb[3].numpy(), rows["dog"])  # the exact word beats "Dog"
    np.testing.assert_allclose(emb[4].numpy(), rows["man"])
    assert emb[5].abs().max() < 1.0 and emb[5].abs().sum() > 0  # small random vector
    again, _ = load_word_vectors(path, vocab, 4)
    assert torch.equal(emb, again)  # the random rows come from a fixed seed
    cached = [f for f in os.listdir(tmp_path) if f.endswith(".npy")]
    assert len(cached) == 1


def test_word_vector_cache_is_used_and_keyed_by_the_file(tmp_path, monkeypatch):
    path = str(tmp_path / "glove.txt")
    write_glove(path)
    vocab = Vocabulary(["<pad>", "<unk>", "man"])
    load_word_vectors(path, vocab, 4)

    def boom(_):
        raise AssertionError("parsed the text file again")

    monkeypatch.setattr(text_mod, "_parse_vector_file", boom)
    emb, n = load_word_vectors(path, vocab, 4)  # from the binary cache
    assert n == 1
    monkeypatch.undo()
    with open(path, "a") as f:
        f.write("zebra 1 1 1 1\n")
    monkeypatch.setattr(text_mod, "_parse_vector_file", boom)
    with pytest.raises(AssertionError, match="again"):  # the file changed: parsed again
        load_word_vectors(path, vocab, 4)


def test_word_vector_cache_under_cache_dir_when_read_only(tmp_path, monkeypatch):
    data = tmp_path / "ro"
    data.mkdir()
    path = str(data / "glove.txt")
    write_glove(path)
    monkeypatch.setenv("AAMN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(text_mod.os, "access", lambda p, mode: False)
    emb, n = load_word_vectors(path, Vocabulary(["<pad>", "<unk>", "the"]), 4)
    assert n == 1
    assert not [f for f in os.listdir(data) if f != "glove.txt"]
    found = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert any(f.endswith(".npy") for f in found)


def test_word_vector_errors(tmp_path):
    path = str(tmp_path / "glove.txt")
    write_glove(path)
    vocab = Vocabulary(["<pad>", "<unk>", "the"])
    with pytest.raises(ValueError, match=r"glove\.txt.*4 dimensions, expected 300"):
        load_word_vectors(path, vocab, 300)
    with pytest.raises(FileNotFoundError, match="absent"):
        load_word_vectors(str(tmp_path / "absent.txt"), vocab, 4)
    bad = tmp_path / "bad.txt"
    bad.write_text("the 1 2 3 4\ndog 1 2\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2"):
        load_word_vectors(str(bad), vocab, 4)


def test_vocabulary_from_datasets():
    name = f"text_{uuid.uuid4().hex[:8]}"
    records = [
        {"video_id": "v", "instance_id": 1, "query": "the man walking"},
        {"video_id": "v", "instance_id": 1, "query": "the man walking"},  # same query, other frame
        {"video_id": "v", "instance_id": 2, "query": "the dog"},
    ]
    DatasetCatalog.register(name, lambda: records)
    try:
        vocab = vocabulary_from_datasets([name])
        # each distinct (video, instance, query) counts once: "the" twice, the others once
        assert vocab.words == ["<pad>", "<unk>", "the", "dog", "man", "walking"]
        assert vocabulary_from_datasets(name, min_freq=2).words == ["<pad>", "<unk>", "the"]
    finally:
        DatasetCatalog.remove(name)


def _write_word2vec_bin(path, entries, dim, newline=True):
    with open(path, "wb") as f:
        f.write(f"{len(entries)} {dim}\n".encode())
        for word, vec in entries:
            f.write(
                word.encode()
                + b" "
                + np.asarray(vec, "<f4").tobytes()
                + (b"\n" if newline else b"")
            )


def test_word2vec_binary_files_give_the_text_formats_vectors(tmp_path):
    import tracemalloc

    from aamn.data.text import Vocabulary, load_word_vectors

    rng = np.random.default_rng(0)
    dim = 8
    entries = [(w, rng.normal(size=dim)) for w in ("the", "Man", "dog", "running", "zebra")]
    vocab = Vocabulary.build([["man", "dog", "running", "walking"]])
    text = tmp_path / "vectors.txt"
    text.write_text(
        "".join(f"{w} {' '.join(map(str, v.astype(np.float32)))}\n" for w, v in entries)
    )
    want, n_text = load_word_vectors(str(text), vocab, dim)
    for newline in (True, False):  # both layouts of the format exist
        path = tmp_path / f"vectors{newline}.bin"
        _write_word2vec_bin(path, entries, dim, newline)
        got, n_bin = load_word_vectors(str(path), vocab, dim)
        assert n_bin == n_text == 3  # man (from "Man"), dog, running
        assert torch.allclose(got, want)
    # a large file: only the vocabulary's rows are copied, never the matrix
    big = tmp_path / "big.bin"
    _write_word2vec_bin(
        big, [(f"w{i}", np.full(dim, i, np.float32)) for i in range(50000)] + entries, dim
    )
    tracemalloc.start()
    got, _ = load_word_vectors(str(big), vocab, dim)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert torch.allclose(got, want) and peak < 0.25 * os.path.getsize(big)
    # damaged files name themselves
    with pytest.raises(ValueError, match=r"vectorsTrue\.bin have 8 dimensions, expected 4"):
        load_word_vectors(str(tmp_path / "vectorsTrue.bin"), vocab, 4)
    cut = tmp_path / "cut.bin"
    cut.write_bytes((tmp_path / "vectorsTrue.bin").read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"cut\.bin: entry 5 of 5 is cut short"):
        load_word_vectors(str(cut), vocab, dim)
    (tmp_path / "text.bin").write_text("not a header\n")
    with pytest.raises(ValueError, match="not a word2vec binary file"):
        load_word_vectors(str(tmp_path / "text.bin"), vocab, dim)
