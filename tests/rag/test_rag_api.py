"""The RAG service over HTTP (in process, through ASGI): answers with citations, documents added and
deleted, metrics, and every kind of bad input refused with a JSON 4xx that names the field and
changes nothing already indexed. One test starts the real `syslab demo rag` server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import assert_json_error, run_asgi
from lab_core.procs import free_port, stop_process, wait_until
from lab_core.rag.answer import OpenAIAnswerer
from lab_core.rag.api import create_api
from lab_core.rag.demo import create_app
from lab_core.rag.documents import Document, Region
from lab_core.rag.system import build_pipeline

NOTES = (
    Document(
        "bucket.md",
        "A token bucket of capacity 10 refilled at 5 tokens per second admits a burst of 10 requests.\n\n"
        "The capacity sets the burst and the rate sets the long-run average.",
        "bucket.md",
        "Token bucket",
        (Region(0, 155, 0, "Token bucket"),),
    ),
    Document(
        "window.md",
        "A fixed window counter lets a client send twice its limit across a window boundary.\n\n"
        "A sliding window counter weights the previous window to smooth the boundary.",
        "window.md",
        "Windows",
        (Region(0, 161, 0, "Windows"),),
    ),
)


@pytest.fixture(scope="module")
def app():
    return create_api(build_pipeline("hash", documents=NOTES))


def _call(app, method: str, path: str, **kwargs) -> httpx.Response:
    return run_asgi(app, lambda c: c.request(method, path, **kwargs))


def test_a_query_gets_a_cited_answer_with_every_stage(app):
    r = _call(app, "POST", "/query", json={"query": "How big a burst does a token bucket admit?", "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["refused"] and "[1]" in body["answer"]
    cited = body["citations"][0]
    assert cited["doc_id"] == "bucket.md" and cited["section"] == "Token bucket" and cited["end"] > cited["start"]
    assert body["citation_support"] == 1.0 and body["citation_problems"] == []
    assert [h["rank"] for h in body["retrieved"]] == [1, 2] and body["retrieved"][0]["doc_id"] == "bucket.md"
    assert set(body["stages"]) == {"dense", "bm25", "fused", "reranked"}
    assert set(body["timings_ms"]) >= {"embed", "dense", "bm25", "fuse", "rerank", "answer"}


def test_modes_and_rerank_switch_per_request(app):
    r = _call(app, "POST", "/query", json={"query": "sliding window boundary", "mode": "bm25", "rerank": False})
    assert set(r.json()["stages"]) == {"bm25", "fused"}


def test_an_unrelated_question_is_refused(app):
    body = _call(app, "POST", "/query", json={"query": "Who painted the Mona Lisa?"}).json()
    assert body["refused"] and body["answer"] == "not found in the documents" and body["citations"] == []


BAD_QUERIES = [
    ({"query": ""}, 422, "invalid_query", "empty"),
    ({"query": "   \n"}, 422, "invalid_query", "empty"),
    ({"query": 7}, 422, "invalid_query", "string"),
    ({"query": None}, 422, "invalid_query", "string"),
    ({"query": "x" * 2001}, 413, "query_too_long", "2000"),
    ({"k": 3}, 422, "missing_field", "query"),
    ({"query": "x", "k": 0}, 422, "invalid_field", "k must"),
    ({"query": "x", "k": 21}, 422, "invalid_field", "k must"),
    ({"query": "x", "k": 2.5}, 422, "invalid_field", "k must"),
    ({"query": "x", "k": "5"}, 422, "invalid_field", "k must"),
    ({"query": "x", "k": True}, 422, "invalid_field", "k must"),
    ({"query": "x", "mode": "sparse"}, 422, "invalid_field", "mode"),
    ({"query": "x", "rerank": "yes"}, 422, "invalid_field", "rerank"),
    ({"query": "x", "top": 3}, 422, "unknown_field", "top"),
    ([], 400, "bad_request", "JSON object"),
    ("a question", 400, "bad_request", "JSON object"),
]


@pytest.mark.parametrize("body, status, error, mentions", BAD_QUERIES)
def test_bad_queries_are_refused_naming_the_field(app, body, status, error, mentions):
    assert_json_error(_call(app, "POST", "/query", json=body), status, error, mentions)


def test_unparseable_and_oversized_bodies(app):
    assert_json_error(_call(app, "POST", "/query", content=b"{not json"), 400, "bad_request", "JSON")
    assert_json_error(_call(app, "POST", "/query", content=b"{" + b" " * 70_000 + b"}"), 413, "body_too_large", "bytes")


def test_documents_can_be_added_queried_and_deleted():
    app = create_api(build_pipeline("hash", documents=NOTES))
    r = _call(
        app,
        "POST",
        "/documents",
        json={
            "doc_id": "bloom.md",
            "title": "Bloom filters",
            "text": "A Bloom filter answers set membership with false positives but never false negatives.",
        },
    )
    assert r.status_code == 201 and r.json() == {"doc_id": "bloom.md", "chunks": 1}
    assert [d["doc_id"] for d in _call(app, "GET", "/documents").json()["documents"]] == [
        "bucket.md",
        "window.md",
        "bloom.md",
    ]
    answer = _call(app, "POST", "/query", json={"query": "Does a Bloom filter give false negatives?"}).json()
    assert answer["citations"][0]["doc_id"] == "bloom.md"
    assert _call(app, "DELETE", "/documents/bloom.md").json() == {"doc_id": "bloom.md", "chunks_deleted": 1}
    after = _call(app, "POST", "/query", json={"query": "Does a Bloom filter give false negatives?", "k": 5}).json()
    assert all(h["doc_id"] != "bloom.md" for h in after["retrieved"])
    assert_json_error(_call(app, "DELETE", "/documents/bloom.md"), 404, "not_found", "bloom.md")


BAD_DOCUMENTS = [
    ({"text": "x"}, 422, "missing_field", "doc_id"),
    ({"doc_id": "a.md"}, 422, "missing_field", "text"),
    ({"doc_id": "", "text": "x"}, 422, "invalid_field", "doc_id"),
    ({"doc_id": "a#1", "text": "x"}, 422, "invalid_field", "doc_id"),
    ({"doc_id": "a.md", "text": "   "}, 422, "invalid_field", "text is empty"),
    ({"doc_id": "a.md", "text": 5}, 422, "invalid_field", "text must be a string"),
    ({"doc_id": "a.md", "text": "x", "title": ["t"]}, 422, "invalid_field", "title"),
    ({"doc_id": "a.md", "text": "x" * 50_001}, 413, "document_too_large", "50000"),
    ({"doc_id": "a.md", "text": "x", "author": "me"}, 422, "unknown_field", "author"),
]


@pytest.mark.parametrize("body, status, error, mentions", BAD_DOCUMENTS)
def test_bad_documents_are_refused_and_nothing_indexed_changes(app, body, status, error, mentions):
    before = _call(app, "GET", "/documents").json()
    assert_json_error(_call(app, "POST", "/documents", json=body), status, error, mentions)
    assert _call(app, "GET", "/documents").json() == before


def test_metrics_report_latency_per_stage_and_health_counts(app):
    _call(app, "POST", "/query", json={"query": "token bucket burst"})
    metrics = _call(app, "GET", "/metrics").json()
    assert metrics["queries"] >= 1 and metrics["latency_ms"]["bm25"]["p50"] >= 0
    health = _call(app, "GET", "/health").json()
    assert health == {"status": "ok", "embedder": "hash-256", "documents": 2, "chunks": 2}
    assert_json_error(_call(app, "GET", "/nowhere"), 404, "http_error")
    assert_json_error(_call(app, "GET", "/query"), 405, "http_error")


def test_a_folder_with_a_bad_file_serves_the_rest(tmp_path):
    (tmp_path / "good.md").write_text("# Caches\n\nA write-through cache writes to the store and the cache together.\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    app, report = create_app(tmp_path, embedder="hash")
    assert report.documents == 1 and [e for e in map(str, report.errors) if "broken.pdf" in e]
    body = _call(app, "POST", "/query", json={"query": "What does a write-through cache do?"}).json()
    assert body["citations"][0]["doc_id"] == "good.md"


def test_a_missing_docs_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        create_app(tmp_path / "nope", embedder="hash")


def test_syslab_demo_rag_serves_on_loopback(tmp_path):
    port = free_port()
    (tmp_path / "note.md").write_text(
        "# Consistent hashing\n\nConsistent hashing moves only 1/n of the keys when a node joins.\n"
    )
    log_path = tmp_path / "demo.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("syslab")),
            "demo",
            "rag",
            "--port",
            str(port),
            "--docs",
            str(tmp_path),
            "--embedder",
            "hash",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200,
            proc,
            timeout=60,
            what="syslab demo rag",
            log=log_path,
        )
        r = httpx.post(f"{url}/query", json={"query": "How many keys move when a node joins?"}, timeout=10)
        assert r.status_code == 200 and r.json()["citations"][0]["doc_id"] == "note.md"
        bad = httpx.post(f"{url}/query", content=json.dumps({"query": ""}), timeout=10)
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_query"
    finally:
        stop_process(proc)
        log.close()


def test_an_openai_compatible_endpoint_answers_through_the_same_citation_check(tmp_path):
    seen = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        reply = "A token bucket of capacity 10 admits a burst of 10 requests [1]. It also brews coffee [1]."
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": reply}}]})

    (tmp_path / "bucket.md").write_text(f"# Token bucket\n\n{NOTES[0].text}\n")
    llm = OpenAIAnswerer("http://gateway", "tiny", client=httpx.Client(transport=httpx.MockTransport(endpoint)))
    app, _ = create_app(tmp_path, embedder="hash", llm=llm)
    body = _call(app, "POST", "/query", json={"query": "How big a burst does a token bucket admit?"}).json()
    assert seen[0]["model"] == "tiny" and seen[0]["messages"][1]["content"].startswith("[1] Token bucket")
    assert body["citations"][0]["doc_id"] == "bucket.md"
    assert body["citation_support"] == 0.5 and "brews coffee" in body["citation_problems"][0]
