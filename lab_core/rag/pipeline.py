"""The RAG pipeline end to end: ingest (parse, chunk, embed, index) and query (retrieve, fuse,
rerank, answer with citations), timing every stage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab_core.rag.answer import Answer, ExtractiveAnswerer
from lab_core.rag.chunking import ChunkConfig, chunk_all
from lab_core.rag.documents import Document
from lab_core.rag.embedding import Embedder, Progress
from lab_core.rag.fusion import rrf
from lab_core.rag.parsing import ParseError, parse_folder
from lab_core.rag.protocol import Answerer, Chunker, RankFusion, Reranker
from lab_core.rag.retrieval import Hit, HybridIndex, Retrieval, RetrievalConfig
from lab_core.rag.vectordb import IndexConfig

MAX_QUERY_CHARS = 2000


@dataclass
class IngestReport:
    """What one ingest did: documents and chunks added, files refused (by name, with the reason)."""

    documents: int = 0
    chunks: int = 0
    errors: list[ParseError] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class QueryResult:
    """An answer and everything behind it: each stage's list and time per stage (milliseconds)."""

    query: str
    answer: Answer
    retrieval: Retrieval
    hits: list[Hit]

    @property
    def timings_ms(self) -> dict[str, float]:
        """Milliseconds per stage: embed, dense, bm25, fuse, rerank, answer."""
        return self.retrieval.timings_ms


def check_query(query: object) -> str:
    """``query`` stripped; a ValueError naming the problem when it is not a usable question."""
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    query = query.strip()
    if not query:
        raise ValueError("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    return query


class RagPipeline:
    """Documents in, grounded answers out. The chunker, rank fusion, reranker and answerer are
    seams: a student's function plugs in where the reference one sits."""

    def __init__(
        self,
        embedder: Embedder,
        chunking: ChunkConfig | Chunker = ChunkConfig(),
        index: IndexConfig = IndexConfig(),
        retrieval: RetrievalConfig = RetrievalConfig(),
        reranker: Reranker | None = None,
        answerer: Answerer | None = None,
        path: str | Path | None = None,
        rank_fusion: RankFusion = rrf,
    ) -> None:
        self.embedder = embedder
        self.chunker = chunking.chunker() if isinstance(chunking, ChunkConfig) else chunking
        self.index = HybridIndex(embedder, index, path)
        self.retrieval = retrieval
        self.rank_fusion = rank_fusion
        self.reranker = reranker
        self.answerer = answerer or ExtractiveAnswerer(embedder)

    def ingest(self, docs: Sequence[Document], progress: Progress | None = None) -> IngestReport:
        """Chunk and index ``docs``; a document id already indexed is replaced, not duplicated."""
        started = time.perf_counter()
        ids = [d.doc_id for d in docs]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"document ids repeat within one ingest: {sorted({i for i in ids if ids.count(i) > 1})[:5]}"
            )
        chunks = chunk_all(list(docs), self.chunker)
        for d in docs:
            self.index.delete_doc(d.doc_id)
        self.index.add(chunks, progress)
        return IngestReport(len(docs), len(chunks), [], time.perf_counter() - started)

    def ingest_folder(self, folder: str | Path, progress: Progress | None = None) -> IngestReport:
        """Parse every supported file in ``folder`` and ingest the ones that parse; the rest are reported."""
        docs, errors = parse_folder(Path(folder))
        report = self.ingest(docs, progress)
        report.errors = errors
        return report

    def delete(self, doc_id: str) -> int:
        """Remove a document's chunks; returns how many."""
        return self.index.delete_doc(doc_id)

    def retrieve(
        self, query: str, k: int = 5, rerank: bool = True, config: RetrievalConfig | None = None
    ) -> tuple[Retrieval, list[Hit]]:
        """Each stage's list, and the final top ``k`` (reranked when a reranker is set and asked for);
        ``config`` overrides the pipeline's retrieval settings for this call."""
        query = check_query(query)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
            raise ValueError(f"k must be a whole number from 1 to 100, got {k!r}")
        retrieval = self.index.search(query, k, config or self.retrieval, self.rank_fusion)
        hits = retrieval.stages["fused"]
        if rerank and self.reranker is not None:
            t = time.perf_counter()
            hits = self.reranker(query, hits)
            retrieval.timings_ms["rerank"] = (time.perf_counter() - t) * 1e3
            retrieval.stages["reranked"] = hits[:k]
        retrieval.stages["fused"] = retrieval.stages["fused"][:k]
        return retrieval, hits[:k]

    def query(self, query: str, k: int = 5, rerank: bool = True, config: RetrievalConfig | None = None) -> QueryResult:
        """Retrieve, rerank and answer ``query`` with citations."""
        retrieval, hits = self.retrieve(query, k, rerank, config)
        t = time.perf_counter()
        answer = self.answerer(retrieval.query, hits)
        retrieval.timings_ms["answer"] = (time.perf_counter() - t) * 1e3
        return QueryResult(query, answer, retrieval, hits)
