"""``syslab demo rag``: ingest a folder (the course notes by default) and serve ``POST /query``."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from starlette.applications import Starlette

from lab_core import httpserve
from lab_core.jsonapi import ApiSurface, Example
from lab_core.rag.answer import OpenAIAnswerer
from lab_core.rag.api import create_api
from lab_core.rag.parsing import parse_folder
from lab_core.rag.pipeline import IngestReport
from lab_core.rag.system import build_pipeline, demo_documents
from lab_core.rag.vectordb import IndexConfig


def create_app(
    docs: str | Path | None = None,
    embedder: str = "minilm",
    index: str = "flat",
    rerank: bool = True,
    llm: OpenAIAnswerer | None = None,
) -> tuple[Starlette, IngestReport]:
    """The service over ``docs`` (a folder; the demo corpus when None) and what ingesting it did.
    Files that fail to parse are reported and skipped; the rest are served. ``llm`` answers
    instead of the extractive answerer."""
    if docs is None:
        documents, errors = demo_documents(), []
    else:
        if not Path(docs).is_dir():
            raise ValueError(f"--docs {docs}: not a folder")
        parsed, errors = parse_folder(Path(docs))
        documents = tuple(parsed)
        if not documents:
            raise ValueError(f"--docs {docs}: no document could be parsed ({len(errors)} refused)")
    pipeline = build_pipeline(embedder, index=IndexConfig(kind=index), rerank=rerank, documents=documents)
    if llm is not None:
        pipeline.answerer = llm
    report = IngestReport(len(documents), len(pipeline.index), list(errors))
    return create_api(pipeline), report


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo rag``."""
    parser.add_argument("--docs", help="folder of .md/.txt/.html/.pdf/.png files to ingest (default: the course notes)")
    parser.add_argument(
        "--embedder", default="minilm", choices=["minilm", "hash"], help="minilm (default) or hash (fast, no model)"
    )
    parser.add_argument(
        "--index", default="flat", choices=["flat", "ivf", "hnsw"], help="faiss index kind (default flat)"
    )
    parser.add_argument("--no-rerank", action="store_true", help="serve the fused list without the learned reranker")
    parser.add_argument(
        "--llm-url", help="answer with an OpenAI-compatible endpoint at this base URL instead of extracting sentences"
    )
    parser.add_argument("--llm-model", default="default", help="model name sent to --llm-url")
    parser.add_argument("--llm-key", default="", help="API key sent to --llm-url as a bearer token")


def run_demo(args: argparse.Namespace) -> int:
    """Ingest, print what was refused, and serve with uvicorn until interrupted."""

    llm = OpenAIAnswerer(args.llm_url, args.llm_model, args.llm_key) if args.llm_url else None
    app, report = create_app(args.docs, args.embedder, args.index, not args.no_rerank, llm)
    for error in report.errors:
        print(f"skipped: {error}")
    print(f"RAG demo: {report.documents} documents, {report.chunks} chunks on http://{args.host}:{args.port}/")
    print(
        f"""  try: curl -s -X POST http://{args.host}:{args.port}/query -d '{{"query": "How does a token bucket handle bursts?"}}'"""
    )
    httpserve.run(app, args.host, args.port)
    return 0


def api_surface() -> ApiSurface:
    """The service over the demo corpus with the hash embedder (no model to load), and what its
    clients send (for the shared hostile-input tests)."""
    return ApiSurface(
        open=lambda: nullcontext(create_api(build_pipeline("hash", documents=demo_documents()))),
        writes=(
            Example(
                "POST",
                "/documents",
                {
                    "doc_id": "bloom.md",
                    "title": "Bloom filters",
                    "text": "A Bloom filter answers set membership with false positives.",
                },
            ),
            Example(
                "POST",
                "/query",
                {"query": "How big a burst does a token bucket admit?", "k": 2, "mode": "hybrid", "rerank": False},
            ),
        ),
        reads=(Example("GET", "/documents"),),
        ids=(("DELETE", "/documents/{id}"),),
    )
