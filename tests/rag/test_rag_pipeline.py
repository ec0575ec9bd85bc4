"""The pipeline end to end with the hash embedder: ingest replaces, delete removes everywhere,
queries are validated, and the reranker and answerer seams are used."""

from __future__ import annotations

import pytest
from test_rag_retrieval import DOCS, sectioned

from lab_core.rag.answer import Answer
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.documents import Document
from lab_core.rag.embedding import HashEmbedder
from lab_core.rag.pipeline import MAX_QUERY_CHARS, RagPipeline, check_query
from lab_core.rag.retrieval import RetrievalConfig


def make(**kw) -> RagPipeline:
    kw.setdefault("chunking", ChunkConfig("recursive", 15, 0))
    return RagPipeline(HashEmbedder(256), **kw)


@pytest.fixture
def pipeline() -> RagPipeline:
    p = make()
    p.ingest(DOCS)
    return p


def test_ingest_reports_and_replaces_a_document(pipeline):
    n = len(pipeline.index)
    assert n == len(pipeline.index.chunks) == len(pipeline.index.bm25) > len(DOCS)
    report = pipeline.ingest([DOCS[0]])
    assert (report.documents, report.errors) == (1, []) and report.seconds >= 0
    assert report.chunks == len(pipeline.index.chunks.doc_chunk_ids("rate"))
    assert len(pipeline.index) == len(pipeline.index.chunks) == len(pipeline.index.bm25) == n
    changed = sectioned(
        "rate", "Rate limiter", {"Leaky bucket": "A leaky bucket drains requests at a fixed pace like water."}
    )
    pipeline.ingest([changed])
    texts = " ".join(c.text for c in pipeline.index.chunks.get(pipeline.index.chunks.doc_chunk_ids("rate")))
    assert "leaky" in texts and "token" not in texts
    _, hits = pipeline.retrieve("leaky bucket drains water", k=3)
    assert hits[0].chunk.doc_id == "rate" and hits[0].chunk.section == "Leaky bucket"
    _, hits = pipeline.retrieve("token bucket refills", k=10)
    assert all("token" not in h.chunk.text for h in hits)


def test_ingest_rejects_ids_repeated_within_one_batch(pipeline):
    n = len(pipeline.index)
    with pytest.raises(ValueError, match="repeat within one ingest"):
        pipeline.ingest([DOCS[1], Document("hash", "another text"), DOCS[2]])
    assert len(pipeline.index) == n
    assert pipeline.ingest([]).chunks == 0 and len(pipeline.index) == n


def test_delete_removes_a_document_from_every_list(pipeline):
    assert pipeline.delete("queue") > 0
    retrieval, hits = pipeline.retrieve("message queue consumers acknowledge producers requests", k=10)
    assert set(retrieval.stages) == {"dense", "bm25", "fused"} and retrieval.stages["bm25"]
    for stage in retrieval.stages.values():
        assert all(h.chunk.doc_id != "queue" for h in stage)
    assert all(h.chunk.doc_id != "queue" for h in hits)
    assert pipeline.delete("queue") == 0


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "query is empty"),
        ("   \n\t ", "query is empty"),
        (None, "must be a string, got NoneType"),
        (42, "must be a string, got int"),
        (b"bytes", "must be a string, got bytes"),
        ("x" * (MAX_QUERY_CHARS + 1), f"{MAX_QUERY_CHARS + 1} characters; the limit is {MAX_QUERY_CHARS}"),
    ],
)
def test_bad_queries_are_refused(pipeline, query, message):
    with pytest.raises(ValueError, match=message):
        check_query(query)
    with pytest.raises(ValueError, match=message):
        pipeline.query(query)


def test_check_query_strips_and_accepts_the_limit():
    assert check_query("  token bucket?\n") == "token bucket?"
    assert check_query(" " + "x" * MAX_QUERY_CHARS + " ") == "x" * MAX_QUERY_CHARS


@pytest.mark.parametrize("k", [0, -1, 101, 2.0, True, "5", None])
def test_k_out_of_range(pipeline, k):
    with pytest.raises(ValueError, match="k must be a whole number from 1 to 100"):
        pipeline.retrieve("token bucket", k)


def test_retrieve_cuts_to_k_and_uses_the_reranker():
    seen = []

    def reverse(query, hits):
        seen.append((query, len(hits)))
        return list(reversed(hits))

    p = make(reranker=reverse, retrieval=RetrievalConfig(candidates=50))
    p.ingest(DOCS)
    plain, plain_hits = p.retrieve(" token bucket ", k=3, rerank=False)
    assert seen == [] and "reranked" not in plain.stages and "rerank" not in plain.timings_ms
    assert len(plain_hits) == 3 and len(plain.stages["fused"]) == 3 and plain_hits == plain.stages["fused"]
    retrieval, hits = p.retrieve(" token bucket ", k=3)
    total = len(p.index)
    assert seen == [("token bucket", min(total, 50))]  # the reranker sees every fused candidate, stripped query
    assert hits == retrieval.stages["reranked"] and len(hits) == 3 and "rerank" in retrieval.timings_ms
    assert len(retrieval.stages["fused"]) == 3
    assert hits[-1] != plain_hits[0] or total <= 3


def test_query_answers_with_the_answerer_and_times_it():
    calls = []

    def answerer(query, hits):
        calls.append((query, [h.chunk.chunk_id for h in hits]))
        return Answer("fixed answer", [])

    p = make(answerer=answerer)
    p.ingest(DOCS)
    result = p.query("  how does a token bucket handle a burst ", k=2)
    assert result.answer.text == "fixed answer" and len(result.hits) == 2
    assert calls == [("how does a token bucket handle a burst", [h.chunk.chunk_id for h in result.hits])]
    assert {"embed", "dense", "bm25", "fuse", "answer"} <= set(result.timings_ms)
    assert result.hits[0].chunk.doc_id == "rate"


def test_default_answerer_cites_and_refuses():
    p = make()
    p.answerer.min_score = 0.2
    p.ingest(DOCS)
    answered = p.query("How does a token bucket handle a burst?")
    assert not answered.answer.refused and answered.answer.citations
    assert answered.answer.citations[0].doc_id == "rate" and answered.answer.check.rate == 1.0
    refused = p.query("What is the capital of France?")
    assert refused.answer.refused and refused.answer.citations == []


def test_custom_chunker_and_ingest_folder(tmp_path):
    (tmp_path / "a.md").write_text("# Ring\n\nConsistent hashing maps keys onto a ring.\n")
    (tmp_path / "b.txt").write_text("Queues decouple producers from consumers.\n")
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf at all")
    calls = []

    def one_chunk(doc):
        from lab_core.rag.documents import make_chunk

        calls.append(doc.doc_id)
        return [make_chunk(doc, 0, len(doc.text.rstrip()), 0)]

    p = make(chunking=one_chunk)
    report = p.ingest_folder(tmp_path)
    assert sorted(calls) == ["a.md", "b.txt"] and (report.documents, report.chunks) == (2, 2)
    assert [e.path.name for e in report.errors] == ["broken.pdf"]
    _, hits = p.retrieve("consumers", k=1)
    assert hits[0].chunk.doc_id == "b.txt"


def test_pipeline_with_a_path_persists_and_reloads(tmp_path):
    p = make(path=tmp_path / "idx")
    p.ingest(DOCS)
    p.index.save(tmp_path / "idx")
    from lab_core.rag.retrieval import HybridIndex

    loaded = HybridIndex.load(tmp_path / "idx", HashEmbedder(256))
    q = "consistent hashing ring servers"
    assert [h.chunk for h in loaded.search(q, 5).stages["fused"]] == [
        h.chunk for h in p.index.search(q, 5).stages["fused"]
    ]
