"""BM25Index: hand-computed scores, agreement with bm25s's Lucene variant, add/delete, save/load, quality on SciFact."""

from __future__ import annotations

import math
import random
from pathlib import Path

import bm25s
import numpy as np
import pytest

from conftest import need
from lab_core.rag.bm25 import BM25Index
from lab_core.rag.evaluation import evaluate, load_beir
from lab_core.rag.text import terms

DOCS = {"d1": "red blue red", "d2": "blue green", "d3": "green gold gold"}


def build(docs: dict[str, str], k1: float = 0.9, b: float = 0.4) -> BM25Index:
    index = BM25Index(k1=k1, b=b)
    index.add(list(docs), list(docs.values()))
    return index


def all_scores(index: BM25Index, ids: list[str], query: str) -> np.ndarray:
    found = index.scores(query)
    return np.array([found.get(doc_id, 0.0) for doc_id in ids])


def bm25s_scores(texts: list[str], queries: list[str], k1: float, b: float) -> list[np.ndarray]:
    """bm25s (method="lucene") on our own terms(), so both sides see identical tokens."""
    reference = bm25s.BM25(method="lucene", k1=k1, b=b)
    reference.index([terms(t) for t in texts], show_progress=False)
    vocab = reference.vocab_dict
    return [reference.get_scores([t for t in terms(q) if t in vocab]) for q in queries]


@pytest.fixture(scope="module")
def scifact(shared_data: Path):
    return load_beir(Path(need(shared_data / "scifact", "BM25 is checked against bm25s and BEIR figures on scifact")))


def test_hand_computed_three_documents() -> None:
    # N = 3, lengths 3, 2, 3 so avgdl = 8/3; "red" is in 1 document, "green" in 2.
    idf_red, idf_green = math.log(1 + 2.5 / 1.5), math.log(1 + 1.5 / 2.5)
    norm_3, norm_2 = 0.9 * (0.6 + 0.4 * 3 / (8 / 3)), 0.9 * (0.6 + 0.4 * 2 / (8 / 3))
    expected = [("d1", idf_red * 2 / (2 + norm_3)), ("d2", idf_green / (1 + norm_2)), ("d3", idf_green / (1 + norm_3))]
    got = build(DOCS).search("red green")
    assert [d for d, _ in got] == ["d1", "d2", "d3"]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-12)
    assert [round(s, 6) for _, s in got] == [0.666098, 0.259671, 0.241647]


def test_search_order_ties_k_and_empty_queries() -> None:
    index = build({"a": "alpha beta", "b": "gamma", "c": "alpha beta", "d": "alpha beta"})
    assert [d for d, _ in index.search("alpha", k=2)] == ["a", "c"]  # equal scores: insertion order
    assert [d for d, _ in index.search("alpha")] == ["a", "c", "d"]  # "b" scores 0: left out
    assert index.search("the of and") == []  # only stopwords
    assert index.search("") == [] and index.search("unknownword") == []
    assert index.scores("unknownword") == {}
    with pytest.raises(ValueError, match="k"):
        index.search("alpha", k=0)
    assert BM25Index().search("alpha") == [] and len(BM25Index()) == 0


def test_repeated_query_term_counts_twice() -> None:
    index = build(DOCS)
    assert index.scores("red red")["d1"] == pytest.approx(2 * index.scores("red")["d1"])


def assert_same_hits(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [d for d, _ in got] == [d for d, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-12)


def random_corpus(seed: int, n_docs: int = 60) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)] + ["queue", "queues", "batching", "the"]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(n_docs)]
    queries = [" ".join(rng.choices(words, k=rng.randint(1, 5))) for _ in range(20)]
    return [f"doc{i}" for i in range(n_docs)], texts, queries


@pytest.mark.parametrize("seed,k1,b", [(0, 0.9, 0.4), (1, 1.2, 0.75), (2, 0.0, 0.0), (3, 2.0, 1.0)])
def test_matches_bm25s_lucene_on_random_corpus(seed: int, k1: float, b: float) -> None:
    ids, texts, queries = random_corpus(seed)
    index = build(dict(zip(ids, texts)), k1=k1, b=b)
    for query, expected in zip(queries, bm25s_scores(texts, queries, k1, b)):
        np.testing.assert_allclose(all_scores(index, ids, query), expected, rtol=1e-5, atol=1e-9)


def test_matches_bm25s_lucene_on_scifact(scifact) -> None:
    ids = list(scifact.corpus)[:500]
    texts = [" ".join(scifact.corpus[d]) for d in ids]
    queries = list(scifact.queries.values())[:100]
    index = build(dict(zip(ids, texts)))
    for query, expected in zip(queries, bm25s_scores(texts, queries, 0.9, 0.4)):
        np.testing.assert_allclose(all_scores(index, ids, query), expected, rtol=1e-5, atol=1e-9)


def test_incremental_add_equals_one_shot_build() -> None:
    ids, texts, queries = random_corpus(4)
    one_shot = build(dict(zip(ids, texts)))
    incremental = BM25Index()
    for start in range(0, len(ids), 7):
        incremental.add(ids[start : start + 7], texts[start : start + 7])
        incremental.search("w1")  # forces a rebuild between adds
    assert len(incremental) == len(ids)
    for query in queries:
        assert_same_hits(incremental.search(query, k=100), one_shot.search(query, k=100))


def test_delete_equals_build_without_those_documents() -> None:
    ids, texts, queries = random_corpus(5)
    index = build(dict(zip(ids, texts)))
    index.search("w1")
    gone = set(ids[::3])
    index.delete(sorted(gone))
    kept = {d: t for d, t in zip(ids, texts) if d not in gone}
    fresh = build(kept)
    assert len(index) == len(kept)
    for query in queries:
        got = index.search(query, k=100)
        assert not gone & {d for d, _ in got}
        assert_same_hits(got, fresh.search(query, k=100))
    # A deleted id may come back; it then ranks after earlier documents on ties.
    index.add([ids[0]], [texts[0]])
    assert ids[0] in index


def test_save_load_round_trip(tmp_path: Path) -> None:
    ids, texts, queries = random_corpus(6)
    index = build(dict(zip(ids, texts)), k1=1.1, b=0.6)
    index.delete(ids[:5])
    path = tmp_path / "bm25.idx"
    index.save(path)
    loaded = BM25Index.load(path)
    assert (loaded.k1, loaded.b, len(loaded)) == (1.1, 0.6, len(index))
    for query in queries:
        assert loaded.search(query, k=100) == index.search(query, k=100)
    loaded.add(["new"], ["w1 w2"])  # still incremental after loading
    assert loaded.search("w1 w2")[0][0] == "new"
    empty = tmp_path / "empty.npz"
    BM25Index().save(empty)
    assert len(BM25Index.load(empty)) == 0


def test_load_rejects_other_format_version(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    np.savez(path, format_version=np.array(99))
    with pytest.raises(ValueError, match="version 99"):
        BM25Index.load(path)


@pytest.mark.parametrize(
    "k1,b,field", [(-0.1, 0.4, "k1"), (0.9, -0.1, "b"), (0.9, 1.5, "b"), (float("nan"), 0.4, "k1")]
)
def test_bad_parameters(k1: float, b: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BM25Index(k1=k1, b=b)


def test_duplicate_and_unknown_ids() -> None:
    index = build(DOCS)
    with pytest.raises(ValueError, match="'d2'"):
        index.add(["d4", "d2"], ["x", "y"])
    with pytest.raises(ValueError, match="'d5'"):
        index.add(["d5", "d5"], ["x", "y"])
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        index.add(["d6", "d7"], ["x"])
    assert len(index) == 3  # a rejected batch adds nothing
    with pytest.raises(KeyError, match="'nope'"):
        index.delete(["d1", "nope"])
    assert len(index) == 3  # a rejected delete removes nothing


def test_scifact_quality(scifact) -> None:
    # Speed is a benchmark figure (syslab bench rag), never a timed test on a shared machine.
    index = BM25Index()
    # BEIR's BM25 indexes title and text together.
    index.add(list(scifact.corpus), [f"{title} {text}" for title, text in scifact.corpus.values()])
    run = {qid: [d for d, _ in index.search(q, k=100)] for qid, q in scifact.queries.items()}
    figures = evaluate(run, scifact.qrels)
    assert 0.65 <= figures["nDCG@10"] <= 0.72 and figures["Recall@100"] >= 0.88
