"""The query encoders (Eq. 3) and AAMN's actor / action word attention (Eq. 4-5)."""

import pytest
import torch

from detectron2.data import DatasetCatalog

from aamn.modeling import resolve_vocabulary
from aamn.data.text import Vocabulary
from aamn.modeling import (
    ActorActionAttention,
    BiLSTMEncoder,
    WordEmbeddingEncoder,
    build_language_encoder,
    masked_softmax,
)

from modeling_helpers import WORDS, make_vocab, single_thread, tiny_cfg  # noqa: F401


def _encoder(**kw):
    torch.manual_seed(0)
    args = dict(vocab=make_vocab(), embed_dim=12, hidden_dim=6, num_layers=2, max_length=20)
    args.update(kw)
    return BiLSTMEncoder(**args).eval()


class _Attended(torch.nn.Module):
    """A BiLSTM encoder followed by the word attention, as AAMN chains them."""

    def __init__(self, random_attention=False, **kw):
        super().__init__()
        self.encoder = _encoder(**kw)
        torch.manual_seed(1)
        self.attention = ActorActionAttention(
            word_dim=self.encoder.word_dim, random_at_test=random_attention
        )

    def forward(self, queries):
        lang = self.encoder(queries)
        return {**lang, **self.attention(lang)}

    def encode_tokens(self, queries):
        return self.encoder.encode_tokens(queries)

    @property
    def embedding(self):
        return self.encoder.embedding


def test_encoder_contract():
    enc = _encoder()
    out = enc([["a", "man", "is", "running"], ["dog"]])
    assert set(out) == {"embeddings", "word_states", "sentence", "mask", "lengths"}
    assert out["embeddings"].shape == (2, 4, 12) and out["word_states"].shape == (2, 4, 24)
    assert out["sentence"].shape == (2, 12) and enc.sentence_dim == 12 and enc.word_dim == 24
    assert out["mask"].tolist() == [[True] * 4, [True, False, False, False]] and out[
        "lengths"
    ].tolist() == [4, 1]
    assert (out["word_states"][1, 1:] == 0).all()
    # sentence = the last layer's final forward state (at the last real word) and backward state
    # (at the first word).
    last = out["word_states"][..., 12:]
    assert torch.allclose(out["sentence"][0], torch.cat([last[0, 3, :6], last[0, 0, 6:]]))
    assert torch.allclose(out["sentence"][1], torch.cat([last[1, 0, :6], last[1, 0, 6:]]))
    plain = WordEmbeddingEncoder(vocab=make_vocab(), embed_dim=12)
    p = plain([["a", "man"], ["dog"]])
    assert (
        torch.equal(p["word_states"], p["embeddings"])
        and plain.word_dim == plain.sentence_dim == 12
    )
    assert torch.allclose(p["sentence"][0], p["embeddings"][0].mean(0)) and torch.allclose(
        p["sentence"][1], p["embeddings"][1, 0]
    )


def test_shapes_and_masked_attention():
    enc = _Attended()
    out = enc([["a", "man", "is", "running"], ["dog"]])
    assert out["q_actor"].shape == (2, 12) and out["q_action"].shape == (2, 12)
    assert out["attn_actor"].shape == (2, 4) and out["lengths"].tolist() == [4, 1]
    for key in ("attn_actor", "attn_action"):
        a = out[key]
        assert torch.allclose(a.sum(dim=1), torch.ones(2))
        assert (a[1, 1:] == 0).all()  # padding gets zero weight
        assert a[1, 0] == 1.0
    # Eq. (5): q = sum_t gamma_t e_t
    ids, _ = enc.encode_tokens([["a", "man", "is", "running"]])
    e = enc.embedding(ids)[0]
    assert torch.allclose(out["q_actor"][0], (out["attn_actor"][0][:, None] * e).sum(0), atol=1e-6)


def test_padding_does_not_change_the_result():
    enc = _Attended()
    alone = enc([["a", "red", "dog"]])
    batched = enc([["a", "red", "dog"], ["a", "man", "is", "running", "left", "right", "walking"]])
    assert torch.allclose(alone["attn_actor"][0], batched["attn_actor"][0, :3], atol=1e-6)
    assert torch.allclose(alone["q_action"][0], batched["q_action"][0], atol=1e-6)


def test_word_state_concatenates_both_layers():
    enc = _encoder()
    out = enc([["a", "man", "is", "running"]])
    e, h = out["embeddings"], out["word_states"]
    assert h.shape == (1, 4, 2 * 6 * 2) and enc.word_dim == 24
    layer1, _ = enc.lstms[0](e)
    assert torch.allclose(h[..., :12], layer1, atol=1e-6)  # h_t = [h1_t, h2_t]


def test_cut_to_max_length_and_unknown_words():
    enc = _encoder(max_length=3)
    out = enc([["a", "zebra", "is", "running", "fast"]])
    assert out["mask"].shape == (1, 3)
    ids, _ = enc.encode_tokens([["zebra"]])
    assert ids.tolist() == [[Vocabulary.UNK_ID]]


def test_errors():
    enc = _encoder()
    with pytest.raises(ValueError, match="empty"):
        enc([["a"], []])
    with pytest.raises(TypeError):
        enc(["a man"])
    with pytest.raises(ValueError):
        enc([])


def test_random_attention_only_at_test_time():
    learned = _Attended().eval()
    rand = _Attended(random_attention=True).eval()
    rand.load_state_dict(learned.state_dict())
    q = [["a", "man", "is", "running"], ["dog"]]
    a, b = learned(q), rand(q)
    assert not torch.allclose(a["attn_actor"][0], b["attn_actor"][0])
    assert (
        torch.allclose(b["attn_actor"].sum(1), torch.ones(2))
        and (b["attn_action"][1, 1:] == 0).all()
    )
    rand.train()
    learned.train()
    assert torch.allclose(learned(q)["attn_actor"], rand(q)["attn_actor"])


def test_word_vectors_and_freezing():
    vocab = make_vocab()
    vectors = torch.randn(len(vocab), 12)
    enc = _encoder(word_vectors=vectors, freeze_embeddings=True)
    assert torch.allclose(enc.embedding.weight[2:], vectors[2:])
    assert (enc.embedding.weight[0] == 0).all() and not enc.embedding.weight.requires_grad
    with pytest.raises(ValueError, match="shape"):
        _encoder(word_vectors=torch.randn(3, 12))


def test_masked_softmax():
    p = masked_softmax(torch.tensor([[1.0, 5.0, 100.0]]), torch.tensor([[True, True, False]]))
    assert p[0, 2] == 0 and torch.allclose(p.sum(), torch.tensor(1.0))


def test_from_config_builds_saves_and_loads_the_vocabulary(tmp_path):
    name = "test_aamn_language_vocab_ds"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(
            name,
            lambda: [
                {"query": "A man is running", "video_id": "v", "instance_id": 1},
                {"query": "a dog jumping", "video_id": "w", "instance_id": 2},
            ],
        )
    glove = tmp_path / "vectors.txt"
    glove.write_text("man " + " ".join(["0.5"] * 16) + "\ndog " + " ".join(["-1"] * 16) + "\n")
    cfg = tiny_cfg("")
    cfg.DATASETS.TRAIN = (name,)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.MODEL.LANGUAGE.WORD_VECTORS = str(glove)
    resolve_vocabulary(
        cfg, build=True
    )  # built from the training queries, saved to OUTPUT_DIR/vocab.json
    enc = build_language_encoder(cfg)
    saved = Vocabulary.load(tmp_path / "out" / "vocab.json")
    assert saved == enc.vocab and "running" in saved
    assert torch.allclose(enc.embedding.weight[saved.index("man")], torch.full((16,), 0.5))
    cfg.MODEL.LANGUAGE.VOCAB_FILE = str(tmp_path / "out" / "vocab.json")
    cfg.MODEL.LANGUAGE.WORD_VECTORS = ""
    cfg.DATASETS.TRAIN = ()
    assert build_language_encoder(cfg).vocab == saved
    assert len(WORDS) > 0


def test_uniform_word_attention_of_the_baseline(tmp_path):
    torch.manual_seed(0)
    enc = WordEmbeddingEncoder(vocab=make_vocab(), embed_dim=12, max_length=20)
    attention = ActorActionAttention(word_dim=enc.word_dim, mode="uniform")
    assert [n for n, _ in enc.named_parameters()] == ["embedding.weight"]  # no BiLSTM
    assert list(attention.parameters()) == []  # no attention heads
    queries = [["a", "man", "is", "running"], ["dog"]]
    lang = enc(queries)
    out = attention(lang)
    ids, _ = enc.encode_tokens(queries[:1])
    assert torch.allclose(
        out["q_actor"][0], enc.embedding(ids)[0].mean(0), atol=1e-6
    )  # q = 1/N sum_t e_t
    assert torch.equal(out["q_actor"], out["q_action"])
    assert torch.allclose(out["attn_actor"], torch.tensor([[0.25] * 4, [1.0, 0, 0, 0]]))
    # Padding and word order do not matter.
    assert torch.allclose(attention(enc([["dog"]]))["q_actor"][0], out["q_actor"][1], atol=1e-6)
    assert torch.allclose(
        attention(enc([queries[0][::-1]]))["q_actor"][0], out["q_actor"][0], atol=1e-6
    )
    # From a config: the embedding keys of MODEL.LANGUAGE (word vectors, freezing) apply.
    vocab_file = tmp_path / "vocab.json"
    make_vocab().save(vocab_file)
    glove = tmp_path / "vectors.txt"
    glove.write_text("man " + " ".join(["0.5"] * 16) + "\n")
    cfg = tiny_cfg(str(vocab_file))
    cfg.MODEL.LANGUAGE.WORD_VECTORS = str(glove)
    cfg.MODEL.LANGUAGE.FREEZE_EMBEDDINGS = True
    enc = WordEmbeddingEncoder(cfg)
    assert enc.embed_dim == 16 and not enc.embedding.weight.requires_grad
    assert torch.allclose(enc([["man"]])["sentence"][0], torch.full((16,), 0.5))
    with pytest.raises(ValueError, match="word attention mode"):
        ActorActionAttention(word_dim=4, mode="max")
