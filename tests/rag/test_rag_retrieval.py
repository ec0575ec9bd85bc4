"""The hybrid index: BM25, dense and fused lists per mode, scores carried on every hit, the three
stores kept in step by add and delete, and save/load."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.rag.chunking import ChunkConfig, chunk_all
from lab_core.rag.documents import Document, Region
from lab_core.rag.embedding import HashEmbedder
from lab_core.rag.fusion import rrf
from lab_core.rag.retrieval import HybridIndex, RetrievalConfig, _indexed_text
from lab_core.rag.vectordb import IndexConfig, IndexMismatch


def sectioned(doc_id: str, title: str, sections: dict[str, str]) -> Document:
    text, regions = "", []
    for heading, body in sections.items():
        part = f"# {heading}\n\n{body}\n\n"
        regions.append(Region(len(text), len(text) + len(part), 0, heading))
        text += part
    return Document(doc_id, text, source=f"{doc_id}.md", title=title, regions=tuple(regions))


DOCS = [
    sectioned(
        "rate",
        "Rate limiter",
        {
            "Token bucket": "A token bucket refills at a steady rate. A burst spends the saved tokens at once, then requests wait for the refill.",
            "Sliding window": "A sliding window log counts the requests of each client in the last minute and rejects the excess.",
        },
    ),
    sectioned(
        "hash",
        "Sharding",
        {"Ring": "Consistent hashing maps keys onto a ring of servers. Adding a server moves only a few keys."},
    ),
    sectioned(
        "queue",
        "Queues",
        {
            "Delivery": "A message queue decouples producers from consumers. Consumers acknowledge messages after processing them."
        },
    ),
    sectioned(
        "cache",
        "Caching",
        {
            "Eviction": "A cache keeps hot data in memory. LRU eviction drops the least recently used entry when the cache is full."
        },
    ),
]
CHUNKS = chunk_all(DOCS, ChunkConfig("fixed", 12, 3).chunker())


@pytest.fixture
def index() -> HybridIndex:
    idx = HybridIndex(HashEmbedder(256))
    idx.add(CHUNKS)
    return idx


def ids(hits) -> list[str]:
    return [h.chunk.chunk_id for h in hits]


@pytest.mark.parametrize(
    "mode, stages, timings",
    [
        ("hybrid", {"dense", "bm25", "fused"}, {"embed", "dense", "bm25", "fuse"}),
        ("dense", {"dense", "fused"}, {"embed", "dense", "fuse"}),
        ("bm25", {"bm25", "fused"}, {"bm25", "fuse"}),
    ],
)
def test_stages_per_mode(index, mode, stages, timings):
    r = index.search("token bucket burst refill", 5, RetrievalConfig(mode=mode))
    assert set(r.stages) == stages and set(r.timings_ms) == timings
    assert all(t >= 0 for t in r.timings_ms.values())
    assert r.stages["fused"][0].chunk.doc_id == "rate"
    assert all(len(hits) <= 5 for name, hits in r.stages.items() if name != "fused")
    assert (r.query_vector is None) == (mode == "bm25")
    if mode == "dense":
        assert ids(r.stages["fused"])[:5] == ids(r.stages["dense"])
    if mode == "bm25":
        assert ids(r.stages["fused"])[:5] == ids(r.stages["bm25"])


def test_hybrid_stage_lists_exist_when_one_retriever_finds_nothing(index):
    """A query no chunk shares a term with: BM25 finds nothing, but the hybrid search still reports
    a (empty) "bm25" list beside "dense", as its mode promises."""
    r = index.search("zebra giraffe", 5, RetrievalConfig(mode="hybrid"))
    assert r.stages.get("bm25") == [] and "dense" in r.stages


def test_fused_hits_carry_both_scores_and_ranks(index):
    query = "consumers acknowledge queue messages"
    config = RetrievalConfig(candidates=100)
    r = index.search(query, 4, config)
    dense = index.vectors.search(index.embedder.encode([query]), 100)[0]
    sparse = index.bm25.search(query, 100)
    assert ids(r.stages["fused"]) == [d for d, _ in rrf([[d for d, _ in dense], [d for d, _ in sparse]], 60)]
    assert ids(r.stages["dense"]) == [d for d, _ in dense[:4]] and ids(r.stages["bm25"]) == [d for d, _ in sparse[:4]]
    bm = index.bm25.scores(query)
    qv = index.embedder.encode([query])[0]
    dense_rank = {d: i for i, (d, _) in enumerate(dense, 1)}
    sparse_rank = {d: i for i, (d, _) in enumerate(sparse, 1)}
    for h in r.stages["fused"]:
        cid = h.chunk.chunk_id
        assert h.dense == pytest.approx(float(index.vectors.vector(cid) @ qv), abs=1e-6)
        assert h.sparse == pytest.approx(bm.get(cid, 0.0))
        assert (h.dense_rank, h.sparse_rank) == (dense_rank.get(cid, 0), sparse_rank.get(cid, 0))
    top = r.stages["fused"][0]
    assert top.chunk.doc_id == "queue" and top.dense > 0 and top.sparse > 0
    assert top.score == pytest.approx(1 / (60 + top.dense_rank) + 1 / (60 + top.sparse_rank))
    for h in r.stages["bm25"]:
        assert h.score == pytest.approx(h.sparse)


def test_weighted_fusion_and_custom_rank_fusion(index):
    q = "least recently used cache eviction"
    dense_only = index.search(q, 5, RetrievalConfig(mode="dense"))
    heavy = index.search(q, 5, RetrievalConfig(fusion="weighted", weight=1.0))
    assert ids(heavy.stages["fused"])[:5] == ids(dense_only.stages["dense"])
    calls = []

    def reverse_rrf(rankings, k):
        calls.append((len(rankings), k))
        return list(reversed(rrf(rankings, k)))

    r = index.search(q, 5, RetrievalConfig(rrf_k=10), rank_fusion=reverse_rrf)
    assert calls == [(2, 10)]
    assert ids(r.stages["fused"]) == ids(index.search(q, 5, RetrievalConfig(rrf_k=10)).stages["fused"])[::-1]


def test_candidates_bound_the_fused_list(index):
    r = index.search("token", 2, RetrievalConfig(candidates=3))
    assert len(r.stages["fused"]) <= 3 and len(r.stages["dense"]) == 2
    r = index.search("token", 6, RetrievalConfig(candidates=1))  # k above candidates still gives k
    assert len(r.stages["dense"]) == 6


def test_retrieval_config_validation():
    for kwargs, field in [
        ({"mode": "sparse"}, "mode"),
        ({"fusion": "max"}, "fusion"),
        ({"weight": 1.2}, "weight"),
        ({"candidates": 0}, "candidates"),
        ({"candidates": True}, "candidates"),
    ]:
        with pytest.raises(ValueError, match=f"^{field} must"):
            RetrievalConfig(**kwargs)


def test_add_rejects_known_or_repeated_ids_and_changes_nothing(index):
    n = len(index)
    extra = chunk_all([Document("new", "brand new words about tokens")], ChunkConfig("fixed", 10, 0).chunker())
    with pytest.raises(ValueError, match="already indexed or repeated"):
        index.add([*extra, CHUNKS[0]])
    with pytest.raises(ValueError, match="already indexed or repeated"):
        index.add([extra[0], extra[0]])
    assert len(index) == n == len(index.chunks) == len(index.bm25) and "new#0" not in index.vectors


def test_delete_doc_removes_from_all_three_stores(index):
    rate_ids = index.chunks.doc_chunk_ids("rate")
    assert rate_ids and index.delete_doc("rate") == len(rate_ids)
    assert len(index) == len(index.chunks) == len(index.bm25) == len(CHUNKS) - len(rate_ids)
    assert not any(i in index.vectors or i in index.bm25 for i in rate_ids)
    r = index.search("token bucket burst refill sliding window", 20)
    for hits in r.stages.values():
        assert all(h.chunk.doc_id != "rate" for h in hits)
    assert index.delete_doc("rate") == 0 and index.delete_doc("never") == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_gives_identical_results(tmp_path, kind):
    index = HybridIndex(HashEmbedder(256), IndexConfig(kind=kind))
    index.add(CHUNKS)
    index.delete_doc("hash")
    index.save(tmp_path / "idx")
    loaded = HybridIndex.load(tmp_path / "idx", HashEmbedder(256))
    assert len(loaded) == len(index) and loaded.vectors.config.kind == kind
    for q in ["token bucket burst", "queue consumers", "cache eviction memory", "consistent hashing ring"]:
        a, b = index.search(q, 5), loaded.search(q, 5)
        for stage in a.stages:
            assert [(h.chunk, round(h.score, 6), round(h.dense, 6), round(h.sparse, 6)) for h in a.stages[stage]] == [
                (h.chunk, round(h.score, 6), round(h.dense, 6), round(h.sparse, 6)) for h in b.stages[stage]
            ]
    with pytest.raises(IndexMismatch, match="hash-256.*hash-128"):
        HybridIndex.load(tmp_path / "idx", HashEmbedder(128))


def test_saving_twice_to_one_folder_keeps_the_latest_state(tmp_path):
    index = HybridIndex(HashEmbedder(64))
    index.add(CHUNKS)
    index.save(tmp_path / "idx")
    index.delete_doc("cache")
    index.save(tmp_path / "idx")  # e.g. a notebook cell run again after a change
    loaded = HybridIndex.load(tmp_path / "idx", HashEmbedder(64))
    assert len(loaded.chunks) == len(loaded) == len(index)
    assert "cache" not in {c.doc_id for c in loaded.chunks.all()}


def test_index_with_a_path_keeps_chunks_there(tmp_path):
    index = HybridIndex(HashEmbedder(64), path=tmp_path / "live")
    index.add(CHUNKS)
    index.save(tmp_path / "live")
    loaded = HybridIndex.load(tmp_path / "live", HashEmbedder(64))
    assert loaded.chunks.all() == CHUNKS


def test_indexed_text_puts_the_title_first():
    c = CHUNKS[0]
    assert _indexed_text(c) == f"Rate limiter\n{c.text}"
    from dataclasses import replace

    assert _indexed_text(replace(c, title="")) == c.text
    assert _indexed_text(replace(c, text="Rate limiter rules")) == "Rate limiter rules"
    index = HybridIndex(HashEmbedder(64))
    index.add(CHUNKS)
    # the title alone finds every chunk of the document through BM25
    assert {h.chunk.doc_id for h in index.search("sharding", 10, RetrievalConfig(mode="bm25")).stages["bm25"]} == {
        "hash"
    }


def test_empty_index_searches_to_nothing():
    r = HybridIndex(HashEmbedder(64)).search("anything at all", 5)
    assert r.stages["fused"] == [] and np.isfinite(r.query_vector).all()
