"""The hybrid index: chunk metadata (SQLite), dense vectors (faiss) and BM25 kept in step, and
retrieval that returns every stage's list, so a dashboard can show BM25, dense and fused side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lab_core.rag.bm25 import BM25Index
from lab_core.rag.chunkstore import ChunkStore
from lab_core.rag.documents import Chunk
from lab_core.rag.embedding import Embedder, Progress
from lab_core.rag.fusion import rrf, weighted_sum
from lab_core.rag.protocol import RankFusion
from lab_core.rag.vectordb import IndexConfig, VectorIndex

Mode = Literal["hybrid", "dense", "bm25"]
Fusion = Literal["rrf", "weighted"]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: ``score`` is the stage's own score; ``dense`` (cosine) and ``sparse`` (BM25)
    are filled for every candidate of a hybrid search, so later stages can use both."""

    chunk: Chunk
    score: float
    dense: float = 0.0
    sparse: float = 0.0
    dense_rank: int = 0
    sparse_rank: int = 0


@dataclass
class Retrieval:
    """One query's lists by stage ("bm25", "dense", "fused") and time per stage in milliseconds."""

    query: str
    stages: dict[str, list[Hit]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    query_vector: np.ndarray | None = None


@dataclass(frozen=True)
class RetrievalConfig:
    """How to search: ``mode``, the fusion and its ``weight`` (dense share), ``rrf_k``, and how many
    ``candidates`` each retriever contributes before fusion."""

    mode: Mode = "hybrid"
    fusion: Fusion = "rrf"
    weight: float = 0.5
    rrf_k: int = 60
    candidates: int = 100

    def __post_init__(self) -> None:
        if self.mode not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"mode must be 'hybrid', 'dense' or 'bm25', got {self.mode!r}")
        if self.fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be 'rrf' or 'weighted', got {self.fusion!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be between 0 and 1, got {self.weight!r}")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"candidates must be a whole number >= 1, got {self.candidates!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 0:
            raise ValueError(f"rrf_k must be a whole number >= 0, got {self.rrf_k!r}")


class HybridIndex:
    """Chunks searchable by BM25 and by embedding; add and delete keep the three stores in step."""

    def __init__(
        self,
        embedder: Embedder,
        index: IndexConfig = IndexConfig(),
        path: str | Path | None = None,
        bm25: BM25Index | None = None,
        vectors: VectorIndex | None = None,
    ) -> None:
        self.embedder = embedder
        self.path = Path(path) if path else None
        self.chunks = ChunkStore(self.path / "chunks.sqlite" if self.path else ":memory:")
        self.bm25 = bm25 or BM25Index()
        self.vectors = vectors or VectorIndex(embedder.name, embedder.dim, index)

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, chunks: Sequence[Chunk], progress: Progress | None = None) -> None:
        """Index new chunks; an id already indexed is a ValueError and nothing is added."""
        ids = [c.chunk_id for c in chunks]
        dupes = [i for i in ids if i in self.vectors]
        if dupes or len(set(ids)) != len(ids):
            raise ValueError(f"chunk id(s) already indexed or repeated: {', '.join(map(repr, (dupes or ids)[:5]))}")
        vectors = self.embedder.encode([_indexed_text(c) for c in chunks], progress)
        self.chunks.add(chunks)
        self.vectors.add(ids, vectors)
        self.bm25.add(ids, [_indexed_text(c) for c in chunks])

    def delete_doc(self, doc_id: str) -> int:
        """Remove every chunk of ``doc_id``; returns how many (0 for an unknown document)."""
        ids = self.chunks.delete_doc(doc_id)
        if ids:
            self.vectors.delete(ids)
            self.bm25.delete(ids)
        return len(ids)

    def search(
        self, query: str, k: int = 10, config: RetrievalConfig = RetrievalConfig(), rank_fusion: RankFusion = rrf
    ) -> Retrieval:
        """The top ``k`` of each stage the mode uses; "fused" is always the list later stages take.
        ``rank_fusion`` (rankings, k) replaces reciprocal rank fusion, e.g. with a student's version."""
        out = Retrieval(query)
        n = max(k, config.candidates)
        dense: list[tuple[str, float]] = []
        sparse: list[tuple[str, float]] = []
        if config.mode in ("hybrid", "dense"):
            t = time.perf_counter()
            out.query_vector = self.embedder.encode([query])[0]
            out.timings_ms["embed"] = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            dense = self.vectors.search(out.query_vector, n)[0]
            out.timings_ms["dense"] = (time.perf_counter() - t) * 1e3
        if config.mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            sparse = self.bm25.search(query, n)
            out.timings_ms["bm25"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        if config.mode == "dense":
            fused = dense
        elif config.mode == "bm25":
            fused = sparse
        elif config.fusion == "rrf":
            fused = rank_fusion([[d for d, _ in dense], [d for d, _ in sparse]], config.rrf_k)
        else:
            fused = weighted_sum(dense, sparse, config.weight)
        out.timings_ms["fuse"] = (time.perf_counter() - t) * 1e3
        fused = fused[:n]
        lookup = {d for d, _ in [*dense[:k], *sparse[:k], *fused]}
        chunks = dict(zip(lookup, self.chunks.get(list(lookup))))
        dense_rank = {d: r for r, (d, _) in enumerate(dense, 1)}
        sparse_rank = {d: r for r, (d, _) in enumerate(sparse, 1)}
        cos = self._cosines(out.query_vector, [d for d, _ in fused]) if out.query_vector is not None else {}
        bm = self.bm25.scores(query) if config.mode != "dense" else {}

        def hit(d: str, score: float) -> Hit:
            return Hit(chunks[d], score, cos.get(d, 0.0), bm.get(d, 0.0), dense_rank.get(d, 0), sparse_rank.get(d, 0))

        if config.mode in ("hybrid", "dense"):
            out.stages["dense"] = [hit(d, s) for d, s in dense[:k]]
        if config.mode in ("hybrid", "bm25"):
            out.stages["bm25"] = [hit(d, s) for d, s in sparse[:k]]
        out.stages["fused"] = [hit(d, s) for d, s in fused]
        return out

    def _cosines(self, qv: np.ndarray, ids: list[str]) -> dict[str, float]:
        if not ids:
            return {}
        matrix = np.stack([self.vectors.vector(i) for i in ids])
        return dict(zip(ids, (matrix @ qv).astype(float).tolist()))

    def save(self, folder: str | Path) -> None:
        """Save vectors, BM25 and chunks under ``folder`` (chunks are already there when the index has a path)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vectors.save(folder / "dense")
        self.bm25.save(folder / "bm25.npz")
        if self.path != folder:
            # Replace, never append to, an earlier save: deleted documents must not come back.
            for suffix in ("", "-wal", "-shm"):
                (folder / f"chunks.sqlite{suffix}").unlink(missing_ok=True)
            ChunkStore(folder / "chunks.sqlite").add(self.chunks.all())

    @classmethod
    def load(cls, folder: str | Path, embedder: Embedder) -> HybridIndex:
        """An index saved by ``save``; refused (``IndexMismatch``) when built with another embedder."""
        folder = Path(folder)
        if not (folder / "chunks.sqlite").is_file():
            raise FileNotFoundError(f"no saved index in {folder}: chunks.sqlite is missing")
        vectors = VectorIndex.load(folder / "dense", embedder.name, embedder.dim)
        return cls(embedder, vectors.config, folder, BM25Index.load(folder / "bm25.npz"), vectors)


def _indexed_text(chunk: Chunk) -> str:
    # The title goes in front, as BEIR does for SciFact: a chunk from the middle of a note still
    # says what the note is about.
    return f"{chunk.title}\n{chunk.text}" if chunk.title and not chunk.text.startswith(chunk.title) else chunk.text
