"""The RAG service (Starlette): ask questions, list, add and delete documents, read latency per stage.

Every refusal of input is a 4xx JSON body naming the field; a refused request changes nothing
already indexed. The pipeline is not safe for concurrent writers, so calls into it hold one lock
and run on a worker thread, leaving the event loop free.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab_core import jsonapi
from lab_core.jsonapi import BadInput, read_json
from lab_core.rag.documents import Document, Region
from lab_core.rag.pipeline import MAX_QUERY_CHARS, QueryResult, RagPipeline, check_query
from lab_core.rag.retrieval import Hit, RetrievalConfig
from lab_core.sim.metrics import percentiles

MAX_K = 20
MAX_DOC_CHARS = 50_000
MODES = ("hybrid", "dense", "bm25")
QUERY_FIELDS = {"query", "k", "mode", "rerank"}
DOC_FIELDS = {"doc_id", "text", "title", "source"}
LATENCY_WINDOW = 1000
T = TypeVar("T")


def _fields(body: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(body, dict):
        raise BadInput(400, "bad_request", "body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadInput(
            422, "unknown_field", f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(body))
    if missing:
        raise BadInput(422, "missing_field", f"missing field(s): {', '.join(missing)}")
    return body


def _query_args(body: dict) -> tuple[str, int, RetrievalConfig, bool]:
    try:
        query = check_query(body["query"])
    except ValueError as exc:
        code = "query_too_long" if len(str(body["query"])) > MAX_QUERY_CHARS else "invalid_query"
        raise BadInput(413 if code == "query_too_long" else 422, code, f"query: {exc}") from None
    k = body.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise BadInput(422, "invalid_field", f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    mode = body.get("mode", "hybrid")
    if mode not in MODES:
        raise BadInput(422, "invalid_field", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    rerank = body.get("rerank", True)
    if not isinstance(rerank, bool):
        raise BadInput(422, "invalid_field", f"rerank must be true or false, got {rerank!r}")
    return query, k, RetrievalConfig(mode=mode), rerank


def _document(body: dict) -> Document:
    for name in DOC_FIELDS & set(body):
        if not isinstance(body[name], str):
            raise BadInput(422, "invalid_field", f"{name} must be a string, got {type(body[name]).__name__}")
    doc_id, text = body["doc_id"].strip(), body["text"]
    if not doc_id or len(doc_id) > 200 or "#" in doc_id:
        raise BadInput(422, "invalid_field", "doc_id must be 1 to 200 characters without '#'")
    if not text.strip():
        raise BadInput(422, "invalid_field", "text is empty")
    if len(text) > MAX_DOC_CHARS:
        raise BadInput(413, "document_too_large", f"text is {len(text)} characters; the limit is {MAX_DOC_CHARS}")
    title = body.get("title", "")
    return Document(doc_id, text, body.get("source", doc_id), title, (Region(0, len(text), 0, title),))


def _hit(rank: int, hit: Hit) -> dict:
    c = hit.chunk
    return {
        "rank": rank,
        "chunk_id": c.chunk_id,
        "doc_id": c.doc_id,
        "source": c.source,
        "page": c.page,
        "section": c.section,
        "start": c.start,
        "end": c.end,
        "score": hit.score,
        "text": c.text,
    }


def _result(result: QueryResult) -> dict:
    a = result.answer
    return {
        "query": result.query,
        "answer": a.text,
        "refused": a.refused,
        "citations": [vars(c) for c in a.citations],
        "citation_support": a.check.rate,
        "citation_problems": a.check.problems,
        "retrieved": [_hit(i, h) for i, h in enumerate(result.hits, 1)],
        "stages": {name: [[h.chunk.chunk_id, h.score] for h in hits] for name, hits in result.retrieval.stages.items()},
        "timings_ms": result.timings_ms,
    }


def create_api(pipeline: RagPipeline) -> Starlette:
    """The service over ``pipeline``: ``POST /query``, ``GET/POST /documents``,
    ``DELETE /documents/{doc_id}``, ``GET /metrics``, ``GET /health``."""
    lock = threading.Lock()
    latencies: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=LATENCY_WINDOW))

    def locked(fn: Callable[..., T], *args: object) -> T:
        with lock:
            return fn(*args)

    async def query(request: Request) -> JSONResponse:
        body = _fields(await read_json(request), QUERY_FIELDS, {"query"})
        q, k, config, rerank = _query_args(body)
        result = await run_in_threadpool(locked, pipeline.query, q, k, rerank, config)
        for stage, ms in result.timings_ms.items():
            latencies[stage].append(ms)
        return JSONResponse(_result(result))

    async def documents(request: Request) -> JSONResponse:
        return JSONResponse({"documents": await run_in_threadpool(locked, pipeline.index.chunks.documents)})

    async def add_document(request: Request) -> JSONResponse:
        doc = _document(_fields(await read_json(request), DOC_FIELDS, {"doc_id", "text"}))
        report = await run_in_threadpool(locked, pipeline.ingest, [doc])
        return JSONResponse({"doc_id": doc.doc_id, "chunks": report.chunks}, status_code=201)

    async def delete_document(request: Request) -> JSONResponse:
        doc_id = request.path_params["doc_id"]
        removed = await run_in_threadpool(locked, pipeline.delete, doc_id)
        if not removed:
            raise BadInput(404, "not_found", f"no document {doc_id!r}")
        return JSONResponse({"doc_id": doc_id, "chunks_deleted": removed})

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "queries": len(latencies["answer"]),
                "latency_ms": {s: percentiles(v, (50, 99)) for s, v in latencies.items()},
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "embedder": pipeline.embedder.name,
                "documents": len(pipeline.index.chunks.documents()),
                "chunks": len(pipeline.index),
            }
        )

    errors = {ValueError: (422, "invalid_input")}
    routes = [
        Route("/query", jsonapi.guarded(query, errors), methods=["POST"]),
        Route("/documents", jsonapi.guarded(documents), methods=["GET"]),
        Route("/documents", jsonapi.guarded(add_document, errors), methods=["POST"]),
        Route("/documents/{doc_id:path}", jsonapi.guarded(delete_document), methods=["DELETE"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=jsonapi.EXCEPTION_HANDLERS)
