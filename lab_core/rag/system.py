"""Ready-made pipelines over the demo corpus, shared by the notebook, the dashboard, the demo
service and the benchmark. Embeddings are cached on disk by content, so changing the chunk size
re-embeds only the chunks that changed."""

from __future__ import annotations

import os
from functools import cache, lru_cache
from pathlib import Path

from lab_core.rag.answer import ExtractiveAnswerer
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.corpus import load_demo_corpus
from lab_core.rag.documents import Document
from lab_core.rag.embedding import CachedEmbedder, Embedder, Progress, get_embedder
from lab_core.rag.fusion import rrf
from lab_core.rag.pipeline import RagPipeline
from lab_core.rag.protocol import Chunker, RankFusion
from lab_core.rag.rerank import DEFAULT_PATH, LinearReranker, default_reranker, fit
from lab_core.rag.retrieval import RetrievalConfig
from lab_core.rag.vectordb import IndexConfig

# Refusal thresholds on each embedder's cosine scale, tuned on the demo questions (docs/labs/06_rag.md).
MIN_SCORE = {"minilm": 0.33, "hash": 0.2}


def cache_path() -> Path:
    """Where embeddings are cached: ``$SYSLAB_CACHE`` or ``~/.cache/sysdesign-lab``."""
    return Path(os.environ.get("SYSLAB_CACHE") or Path.home() / ".cache" / "sysdesign-lab") / "embeddings.sqlite"


@cache
def cached_embedder(name: str = "minilm") -> Embedder:
    """The named embedder behind the process-wide on-disk cache."""
    return CachedEmbedder(get_embedder(name), cache_path())


@lru_cache(maxsize=1)
def demo_documents() -> tuple[Document, ...]:
    """The demo corpus, parsed once per process (OCR of the image takes a second)."""
    return tuple(load_demo_corpus())


def build_pipeline(
    embedder: str = "minilm",
    chunking: ChunkConfig | Chunker = ChunkConfig(),
    retrieval: RetrievalConfig = RetrievalConfig(),
    index: IndexConfig = IndexConfig(),
    rerank: bool = True,
    documents: tuple[Document, ...] | None = None,
    progress: Progress | None = None,
    rank_fusion: RankFusion = rrf,
) -> RagPipeline:
    """A pipeline over ``documents`` (the demo corpus by default), ingested and ready to query."""
    emb = cached_embedder(embedder)
    pipeline = RagPipeline(
        emb,
        chunking=chunking,
        index=index,
        retrieval=retrieval,
        reranker=default_reranker() if rerank else None,
        answerer=ExtractiveAnswerer(emb, min_score=MIN_SCORE["hash" if embedder.startswith("hash") else "minilm"]),
        rank_fusion=rank_fusion,
    )
    pipeline.ingest(list(documents if documents is not None else demo_documents()), progress)
    return pipeline


def fit_default_reranker(path: Path = DEFAULT_PATH) -> LinearReranker:
    """Refit the shipped reranker on the demo corpus's labelled questions (MiniLM, default chunks)."""
    from lab_core.rag.assess import examples
    from lab_core.rag.corpus import load_questions

    reranker = fit(examples(build_pipeline(rerank=False), load_questions()))
    reranker.save(path)
    return reranker


if __name__ == "__main__":
    print(fit_default_reranker())
