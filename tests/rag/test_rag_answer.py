"""Answers with citations: numbering, the support check, the extractive answerer, and an
OpenAI-compatible answerer against a mocked endpoint."""

from __future__ import annotations

import json

import httpx
import pytest
from test_rag_retrieval import CHUNKS, DOCS

from lab_core.rag.answer import (
    NOT_FOUND,
    ExtractiveAnswerer,
    OpenAIAnswerer,
    Sentence,
    check_citations,
    cite,
    cited_sentences,
    supports,
)
from lab_core.rag.documents import Chunk
from lab_core.rag.embedding import HashEmbedder
from lab_core.rag.retrieval import Hit, HybridIndex

A = Chunk(
    "a#0", "a", "Token buckets refill at a steady rate. Bursts spend saved tokens.", 0, 64, 2, "Buckets", "a.md", "A"
)
B = Chunk("b#3", "b", "Consistent hashing maps keys onto a ring of servers.", 100, 152, 0, "", "b.md", "B")


def test_cite_numbers_chunks_in_first_use_order():
    text, citations = cite(
        [
            Sentence("Consistent hashing maps keys onto a ring of servers.", B),
            Sentence("Token buckets refill at a steady rate.", A),
            Sentence("Bursts spend saved tokens.", A),
        ]
    )
    assert text == (
        "Consistent hashing maps keys onto a ring of servers. [1] Token buckets refill at a steady rate. [2] "
        "Bursts spend saved tokens. [2]"
    )
    assert [(c.n, c.chunk_id) for c in citations] == [(1, "b#3"), (2, "a#0")]
    c = citations[1]
    assert (c.doc_id, c.source, c.page, c.section, c.start, c.end) == ("a", "a.md", 2, "Buckets", 0, 64)
    assert cite([]) == ("", [])


def test_cited_sentences_moves_trailing_markers_back():
    assert cited_sentences("Buckets refill. [1] Bursts spend tokens. [2][3] Done [4].") == [
        ("Buckets refill.", [1]),
        ("Bursts spend tokens.", [2, 3]),
        ("Done.", [4]),
    ]
    assert cited_sentences("Buckets refill [1]. Hashing uses a ring [2].") == [
        ("Buckets refill.", [1]),
        ("Hashing uses a ring.", [2]),
    ]
    assert cited_sentences("No citation here. Another one.") == [("No citation here.", []), ("Another one.", [])]
    assert cited_sentences("") == []


def test_supports_verbatim_and_near_verbatim():
    assert supports(A.text, "Token buckets refill at a steady rate.")
    assert supports(A.text, "token   buckets REFILL\nat a steady rate")  # whitespace and case
    assert supports(A.text, "Token buckets refill at a constant steady rate.")  # 4 of 5 terms
    assert not supports(A.text, "Token buckets refill at a fixed constant pace.")
    assert not supports(A.text, "the and of")  # no terms and not verbatim
    assert supports(A.text, "Bursts spend saved tokens quickly.", min_recall=0.75)


def test_check_citations_flags_unsupported_and_unknown_markers():
    chunks = {1: A, 2: B}
    ok = check_citations(
        "Token buckets refill at a steady rate. [1] Keys sit on a ring of servers, by consistent hashing. [2]", chunks
    )
    assert (ok.supported, ok.cited, ok.uncited, ok.problems, ok.rate) == (2, 2, 0, [], 1.0)
    wrong = check_citations(
        "Consistent hashing maps keys onto a ring of servers. [1] Bursts spend saved tokens. [1]", chunks
    )
    assert (wrong.supported, wrong.cited) == (1, 2) and wrong.rate == 0.5
    assert len(wrong.problems) == 1 and wrong.problems[0].startswith("[1] does not support 'Consistent hashing")
    either = check_citations("Bursts spend saved tokens. [2][1]", chunks)
    assert either.supported == 1  # supported by one of the chunks it cites
    unknown = check_citations("Bursts spend saved tokens. [7] No marks at all here.", chunks)
    assert (unknown.supported, unknown.cited, unknown.uncited) == (0, 1, 1)
    assert unknown.problems == ["cites [7], which is not a citation of this answer: 'Bursts spend saved tokens.'"]
    assert check_citations("", chunks).rate == 1.0


def hits_for(index: HybridIndex, query: str, k: int = 5) -> list[Hit]:
    return index.search(query, k).stages["fused"][:k]


@pytest.fixture(scope="module")
def index() -> HybridIndex:
    idx = HybridIndex(HashEmbedder(256))
    idx.add(CHUNKS)
    return idx


def test_extractive_answerer_answers_with_spans_in_documents(index):
    answerer = ExtractiveAnswerer(HashEmbedder(256), min_score=0.2)
    hits = hits_for(index, "How does a token bucket handle a burst?")
    answer = answerer("How does a token bucket handle a burst?", hits)
    assert not answer.refused and 1 <= len(cited_sentences(answer.text)) <= answerer.max_sentences
    assert answer.check.rate == 1.0 and answer.check.problems == [] and answer.check.cited >= 1
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    docs = {d.doc_id: d for d in DOCS}
    by_id = {h.chunk.chunk_id: h.chunk for h in hits}
    for c in answer.citations:
        chunk = by_id[c.chunk_id]
        assert docs[c.doc_id].text[c.start : c.end] == chunk.text and c.section == chunk.section
    for sentence, marks in cited_sentences(answer.text):
        assert marks and all(sentence in by_id[answer.citations[n - 1].chunk_id].text for n in marks)
    assert answer.citations[0].doc_id == "rate"


def test_extractive_answerer_refuses_below_min_score(index):
    hits = hits_for(index, "How does a token bucket handle a burst?")
    answer = ExtractiveAnswerer(HashEmbedder(256), min_score=0.99)("How does a token bucket handle a burst?", hits)
    assert answer.refused and answer.text == NOT_FOUND and answer.citations == []
    assert ExtractiveAnswerer(HashEmbedder(256))("anything", []).refused
    ranked = ExtractiveAnswerer(HashEmbedder(256)).candidates("token bucket burst", hits)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert all(len(s.text.split()) >= 4 and not s.text.startswith("#") for s in ranked)


def test_extractive_answerer_does_not_repeat_a_sentence_from_overlapping_chunks():
    """Overlapping chunks (the default chunker repeats 40 words) hold the same sentence twice;
    the answer should state it once."""
    text = "A token bucket refills at a steady rate. A burst spends the saved tokens at once."
    first = Chunk("d#0", "d", text, 0, len(text), title="T")
    second = Chunk("d#1", "d", text[40:], 40, len(text), title="T")
    hits = [Hit(first, 1.0), Hit(second, 0.9)]
    answer = ExtractiveAnswerer(HashEmbedder(256), min_score=0.1)("token bucket burst saved tokens", hits)
    sentences = [s for s, _ in cited_sentences(answer.text)]
    assert len(sentences) == len(set(sentences)), answer.text


def mock_client(reply: str | None, status: int = 200, seen: list | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if status != 200:
            return httpx.Response(status, text="model overloaded")
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": reply}}]})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_openai_answerer_sends_numbered_context_and_resolves_citations():
    hits = [Hit(A, 1.0), Hit(B, 0.5)]
    seen: list[httpx.Request] = []
    reply = "Consistent hashing maps keys onto a ring of servers [2]. Token buckets refill at a steady rate [1]."
    answerer = OpenAIAnswerer(
        "http://gateway:8000/", "tiny-llm", api_key="sk-test", client=mock_client(reply, seen=seen)
    )
    answer = answerer("How do buckets and rings work?", hits)
    (request,) = seen
    assert str(request.url) == "http://gateway:8000/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "tiny-llm" and body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system" and NOT_FOUND in system["content"]
    assert user["content"] == f"[1] {A.text}\n\n[2] {B.text}\n\nQuestion: How do buckets and rings work?"
    assert not answer.refused and answer.text == reply
    assert [(c.n, c.chunk_id) for c in answer.citations] == [(1, "a#0"), (2, "b#3")]
    assert answer.check.rate == 1.0 and answer.check.cited == 2


def test_openai_answerer_reports_unsupported_and_unknown_citations():
    hits = [Hit(A, 1.0), Hit(B, 0.5)]
    reply = "Token buckets are made of copper wire [2]. Rings hold keys [1]. Servers vote [9]."
    answer = OpenAIAnswerer("http://x", "m", client=mock_client(reply))("q", hits)
    assert not answer.refused and [c.n for c in answer.citations] == [1, 2]
    assert answer.check.cited == 3 and answer.check.supported == 0 and len(answer.check.problems) == 3
    assert any("[9]" in p and "not a citation" in p for p in answer.check.problems)


def test_openai_answerer_only_sends_top_chunks_and_refuses():
    hits = [Hit(A, 1.0), Hit(B, 0.5)]
    seen: list[httpx.Request] = []
    answer = OpenAIAnswerer("http://x", "m", chunks=1, client=mock_client("Not found in the documents.", seen=seen))(
        "q", hits
    )
    assert answer.refused and answer.text == NOT_FOUND and answer.citations == []
    content = json.loads(seen[0].content)["messages"][1]["content"]
    assert "[1] Token" in content and "[2]" not in content and "authorization" not in seen[0].headers


def test_openai_answerer_raises_on_http_error():
    with pytest.raises(RuntimeError, match="http://x answered 503: model overloaded"):
        OpenAIAnswerer("http://x", "m", client=mock_client(None, status=503))("q", [Hit(A, 1.0)])
