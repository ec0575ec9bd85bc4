"""Lab 06 figures: retrieval quality on SciFact, latency per stage, ANN recall, ingestion, answers.

``syslab bench rag [--quick]`` runs ``run(quick)``. Data: BEIR SciFact, training split (5,183
abstracts, 809 queries, 919 judgments) from the shared data folder (``SYSLAB_DATA``); cite
Wadden et al., "Fact or Fiction: Verifying Scientific Claims", EMNLP 2020, and BEIR (Thakur et
al., NeurIPS 2021). Each abstract is one chunk (title + text), as BEIR indexes it; MiniLM reads
its first 256 tokens.

1. **Quality**: nDCG@10 and Recall@100 of BM25, dense (all-MiniLM-L6-v2, faiss flat), hybrid
   (RRF, k=60; and the min-max weighted sum at weight 0.5) and hybrid + the learned reranker. The reranker is scored by 5-fold cross-validation
   over the queries (fitted on four folds, scored on the fifth), so no query grades weights fitted
   on it; the shipped reranker (fitted on the demo corpus's questions) is scored on SciFact too,
   to show how it transfers. Targets (issue 5): hybrid >= the better of BM25 and dense;
   rerank >= hybrid.
2. **Latency per stage** (p50, p99 over the queries, one query at a time): query embedding,
   BM25, faiss, fusion, rerank. Target: hybrid retrieval p50 (embed + BM25 + faiss + fusion,
   no reranker) < 50 ms.
3. **ANN**: faiss HNSW and IVF recall@10 against exact (flat) search on the same vectors
   (target >= 0.95 for HNSW and for IVF at its default nprobe), and their query speed against
   flat; IVF at nprobe 4 to 32 shows the recall/speed dial.
4. **Ingestion**: chunks embedded per second by MiniLM on this CPU, and re-ingesting the same
   chunks through the content-hash cache, against it.
5. **Answers** on the demo corpus's 40 labelled questions: citation support rate of the
   extractive answerer and refusal accuracy.

``--quick`` keeps 200 abstracts (every abstract judged for the first 30 queries plus others) and
those 30 queries, for a smoke run: its quality figures say nothing about SciFact.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lab_core.bench import Figure, machine_note
from lab_core.labs import data_dir
from lab_core.rag.assess import assess, summary
from lab_core.rag.corpus import load_questions
from lab_core.rag.documents import Chunk, Document, Region, make_chunk
from lab_core.rag.embedding import CachedEmbedder, MiniLMEmbedder
from lab_core.rag.evaluation import BeirDataset, evaluate, load_beir
from lab_core.rag.pipeline import RagPipeline
from lab_core.rag.rerank import Example, cross_validate, default_reranker
from lab_core.rag.retrieval import RetrievalConfig
from lab_core.rag.system import build_pipeline, cache_path
from lab_core.rag.vectordb import IndexConfig, VectorIndex

CITATION = "BEIR SciFact, training split (Wadden et al. EMNLP 2020; Thakur et al. NeurIPS 2021)"
MODES = {
    "BM25": RetrievalConfig(mode="bm25"),
    "dense": RetrievalConfig(mode="dense"),
    "hybrid": RetrievalConfig(),
    "hybrid weighted": RetrievalConfig(fusion="weighted", weight=0.5),
}


def _bar(total: int, label: str) -> tqdm:
    return tqdm(total=total, desc=label, file=sys.stderr, mininterval=5.0, leave=False, ncols=90)


def _subset(data: BeirDataset, queries: int, docs: int) -> BeirDataset:
    """The first ``queries`` queries, every document judged for them, and others up to ``docs``."""
    qids = sorted(data.queries)[:queries]
    keep = {d for q in qids for d in data.qrels[q]}
    keep |= set(list(data.corpus)[: max(0, docs - len(keep))])
    return BeirDataset(
        {d: t for d, t in data.corpus.items() if d in keep},
        {q: data.queries[q] for q in qids},
        {q: data.qrels[q] for q in qids},
    )


def _documents(data: BeirDataset) -> list[Document]:
    return [
        Document(d, text, d, title, (Region(0, len(text)),)) for d, (title, text) in data.corpus.items() if text.strip()
    ]


def _whole(doc: Document) -> list[Chunk]:
    """One chunk per abstract, as BEIR indexes SciFact."""
    return [make_chunk(doc, 0, len(doc.text), 0)]


def _quality(pipeline: RagPipeline, data: BeirDataset) -> list[Figure]:
    scores = {}
    for name, config in MODES.items():
        run = {
            qid: [h.chunk.doc_id for h in pipeline.retrieve(q, 100, rerank=False, config=config)[1]]
            for qid, q in data.queries.items()
        }
        scores[name] = evaluate(run, data.qrels, ks=(10, 100))
        print(
            f"  scifact {name}: nDCG@10 {scores[name]['nDCG@10']:.4f}, Recall@100 {scores[name]['Recall@100']:.4f}",
            file=sys.stderr,
        )

    qids = list(data.queries)
    examples = []
    for qid in qids:
        retrieval, _ = pipeline.retrieve(data.queries[qid], 100, rerank=False, config=MODES["hybrid"])
        examples.append(Example(data.queries[qid], tuple(retrieval.stages["fused"]), data.qrels[qid]))
    folds = cross_validate(examples, folds=5)
    cv_run = {}
    for qid, ex, (_, model) in zip(qids, examples, folds):
        cv_run[qid] = [h.chunk.doc_id for h in model(ex.query, ex.hits)]
    scores["hybrid + rerank (5-fold CV)"] = evaluate(cv_run, data.qrels, ks=(10, 100))
    shipped = default_reranker()
    scores["hybrid + shipped rerank"] = evaluate(
        {qid: [h.chunk.doc_id for h in shipped(ex.query, ex.hits)] for qid, ex in zip(qids, examples)},
        data.qrels,
        ks=(10, 100),
    )
    for name in ("hybrid + rerank (5-fold CV)", "hybrid + shipped rerank"):
        print(f"  scifact {name}: nDCG@10 {scores[name]['nDCG@10']:.4f}", file=sys.stderr)

    best_single = max(("BM25", "dense"), key=lambda n: scores[n]["nDCG@10"])

    def n10(n):
        return scores[n]["nDCG@10"]

    def r100(n):
        return scores[n]["Recall@100"]

    figures = [
        Figure("SciFact nDCG@10, BM25", n10("BM25"), "nDCG"),
        Figure("SciFact nDCG@10, dense (MiniLM)", n10("dense"), "nDCG", "BM25", n10("BM25")),
        Figure(
            "SciFact nDCG@10, hybrid (RRF)",
            n10("hybrid"),
            "nDCG",
            f"best single retriever ({best_single})",
            n10(best_single),
            ">= 1.0",
        ),
        Figure(
            "SciFact nDCG@10, hybrid (min-max weighted sum, weight 0.5)",
            n10("hybrid weighted"),
            "nDCG",
            "hybrid (RRF)",
            n10("hybrid"),
        ),
        Figure(
            "SciFact nDCG@10, hybrid + rerank (5-fold CV)",
            n10("hybrid + rerank (5-fold CV)"),
            "nDCG",
            "hybrid (RRF)",
            n10("hybrid"),
            ">= 1.0",
        ),
        Figure(
            "SciFact nDCG@10, hybrid + shipped rerank (fitted on the demo corpus)",
            n10("hybrid + shipped rerank"),
            "nDCG",
            "hybrid (RRF)",
            n10("hybrid"),
        ),
        Figure("SciFact Recall@100, BM25", r100("BM25"), "recall"),
        Figure("SciFact Recall@100, dense (MiniLM)", r100("dense"), "recall", "BM25", r100("BM25")),
        Figure(
            "SciFact Recall@100, hybrid (RRF)",
            r100("hybrid"),
            "recall",
            "best single retriever",
            max(r100("BM25"), r100("dense")),
            ">= 1.0",
        ),
    ]
    return figures


def _cold_timings(pipeline: RagPipeline, queries: list[str]) -> list[dict]:
    """Stage timings with the query embedded by the model itself: the quality runs have put every
    query in the embedding cache, which would make "embed" a lookup."""
    cached = pipeline.index.embedder
    pipeline.index.embedder = cached.inner
    try:
        return [pipeline.retrieve(q, 10, rerank=True)[0].timings_ms for q in queries]
    finally:
        pipeline.index.embedder = cached


def _latency(timings: list[dict]) -> list[Figure]:
    stage = {s: [t.get(s, 0.0) for t in timings] for s in ("embed", "bm25", "dense", "fuse", "rerank")}
    retrieval = [sum(t.get(s, 0.0) for s in ("embed", "bm25", "dense", "fuse")) for t in timings]

    def p(v, q):
        return float(np.percentile(v, q))

    figures = [
        Figure("hybrid retrieval p50 (embed + BM25 + faiss + fusion)", p(retrieval, 50), "ms", target="value < 50"),
        Figure("hybrid retrieval p99", p(retrieval, 99), "ms"),
    ]
    for s, values in stage.items():
        label = "rerank (50 candidates)" if s == "rerank" else s
        figures.append(Figure(f"stage {label} p50", p(values, 50), "ms"))
        figures.append(Figure(f"stage {label} p99", p(values, 99), "ms"))
    return figures


def _ann(vectors: np.ndarray, ids: list[str], queries: np.ndarray) -> list[Figure]:
    configs = {"flat": IndexConfig(), "HNSW": IndexConfig(kind="hnsw")}
    configs |= {f"IVF nprobe={n}": IndexConfig(kind="ivf", nprobe=n) for n in (4, 8, 16, 32)}
    results, speed = {}, {}
    for name, config in configs.items():
        index = VectorIndex("bench", vectors.shape[1], config)
        index.add(ids, vectors)
        started = time.perf_counter()
        results[name] = [[i for i, _ in index.search(q, 10)[0]] for q in queries]
        speed[name] = len(queries) / (time.perf_counter() - started)
    figures = []
    default_ivf = f"IVF nprobe={IndexConfig().nprobe}"
    for name in configs:
        if name == "flat":
            continue
        recall = statistics.fmean(len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(results[name], results["flat"]))
        target = "value >= 0.95" if name in ("HNSW", default_ivf) else None
        figures.append(Figure(f"faiss {name} recall@10 vs exact", recall, "recall", target=target))
        figures.append(Figure(f"faiss {name} queries/s", speed[name], "queries/s", "flat (exact)", speed["flat"]))
    return figures


def _ingestion(texts: list[str]) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEmbedder(MiniLMEmbedder(), Path(tmp) / "cache.sqlite")
        started = time.perf_counter()
        bar = _bar(len(texts), "embed")
        cached.encode(texts, lambda done, total: bar.update(done - bar.n))
        bar.close()
        cold = len(texts) / (time.perf_counter() - started)
        started = time.perf_counter()
        cached.encode(texts)
        warm = len(texts) / (time.perf_counter() - started)
    return [
        Figure("ingestion: chunks embedded/s (MiniLM, CPU)", cold, "chunks/s"),
        Figure("re-ingestion through the content-hash cache", warm, "chunks/s", "MiniLM forward pass", cold, ">= 10"),
    ]


def _answers() -> list[Figure]:
    table = assess(build_pipeline(), load_questions())
    s = summary(table)
    return [
        Figure(
            "demo corpus: citation support rate (extractive answers)",
            s["citation_support"],
            "share",
            target="value >= 0.95",
        ),
        Figure("demo corpus: refusal accuracy (40 questions, 5 unanswerable)", s["refusal_accuracy"], "share"),
        Figure("demo corpus: nDCG@10 by section, hybrid + rerank", s["nDCG@10"], "nDCG"),
    ]


def run(quick: bool) -> list[Figure]:
    """Every figure; needs the shared data folder for SciFact."""
    folder = data_dir() / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(
            f"{folder} is absent: set SYSLAB_DATA to the public data folder (see ../shared/data/README.md)"
        )
    data = load_beir(folder, "train")
    if quick:
        data = _subset(data, 30, 200)
    machine_note("data", f"{CITATION}: {len(data.corpus):,} abstracts, {len(data.queries):,} queries")
    machine_note("embedding cache", str(cache_path()))
    docs = _documents(data)

    figures = _ingestion([f"{d.title}\n{d.text}" for d in docs[: 40 if quick else 300]])

    pipeline = RagPipeline(CachedEmbedder(MiniLMEmbedder(), cache_path()), chunking=_whole, reranker=default_reranker())
    bar = _bar(len(docs), "index SciFact")
    pipeline.ingest(docs, lambda done, total: bar.update(done - bar.n))
    bar.close()
    figures += _quality(pipeline, data)

    figures += _latency(_cold_timings(pipeline, list(data.queries.values())[:200]))

    ids = [c.chunk_id for c in pipeline.index.chunks.all()]
    vectors = np.stack([pipeline.index.vectors.vector(i) for i in ids])
    queries = pipeline.embedder.encode(list(data.queries.values()))
    figures += _ann(vectors, ids, queries)
    figures += _answers()
    return figures
