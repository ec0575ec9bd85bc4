"""The ready-made pipeline over the demo corpus (MiniLM): it answers with citations from the right
note and refuses what the notes do not cover."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rag_retrieval import DOCS

from conftest import need
from lab_core.rag.answer import cited_sentences
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.system import MIN_SCORE, build_pipeline, cache_path, demo_documents


def test_cache_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYSLAB_CACHE", str(tmp_path))
    assert cache_path() == tmp_path / "embeddings.sqlite"
    monkeypatch.delenv("SYSLAB_CACHE")
    assert cache_path() == Path.home() / ".cache" / "sysdesign-lab" / "embeddings.sqlite"


def test_hash_pipeline_over_given_documents():
    p = build_pipeline("hash", chunking=ChunkConfig("recursive", 20, 0), rerank=False, documents=tuple(DOCS))
    assert p.reranker is None and p.answerer.min_score == MIN_SCORE["hash"]
    assert {c.doc_id for c in p.index.chunks.all()} == {d.doc_id for d in DOCS}
    result = p.query("How does a token bucket handle a burst?")
    assert result.hits[0].chunk.doc_id == "rate" and not result.answer.refused


@pytest.fixture(scope="module")
def pipeline():
    need("tesseract", "the demo corpus includes an image that only OCR can read")
    return build_pipeline()


@pytest.mark.slow
def test_demo_pipeline_answers_and_refuses(pipeline):
    assert pipeline.reranker is not None and pipeline.answerer.min_score == MIN_SCORE["minilm"]
    assert len({c.doc_id for c in pipeline.index.chunks.all()}) == len(demo_documents()) == 11
    result = pipeline.query("How does a token bucket handle bursts?")
    answer = result.answer
    assert not answer.refused and answer.citations and answer.check.rate == 1.0
    assert answer.citations[0].doc_id == "rate_limiter.md"
    assert "burst" in answer.text.lower() and "reranked" in result.retrieval.stages
    by_id = {h.chunk.chunk_id: h.chunk for h in result.hits}
    for sentence, marks in cited_sentences(answer.text):
        assert marks and any(sentence in by_id[answer.citations[n - 1].chunk_id].text for n in marks)
    refused = pipeline.query("What is the capital of France?")
    assert refused.answer.refused and refused.answer.citations == []
