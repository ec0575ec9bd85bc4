"""Scoring a pipeline on labelled questions: retrieval quality, refusals and citation support.

Labels name (document, section) pairs, not chunks, so one labelled set scores every chunker: a
ranked list of chunks becomes a ranked list of the sections they come from (first occurrence wins).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from lab_core.rag.corpus import LabelledQuestion
from lab_core.rag.documents import Chunk
from lab_core.rag.evaluation import mrr, ndcg_at_k, recall_at_k
from lab_core.rag.pipeline import RagPipeline
from lab_core.rag.protocol import RankingMetric
from lab_core.rag.rerank import Example
from lab_core.rag.retrieval import Hit

COLUMNS = [
    "id",
    "question",
    "nDCG@10",
    "Recall@10",
    "MRR",
    "refused",
    "should_refuse",
    "citation_support",
    "latency_ms",
]


def section_key(chunk: Chunk) -> str:
    """The label a chunk answers to: "doc_id § section"."""
    return f"{chunk.doc_id} § {chunk.section}"


def ranked_sections(hits: Sequence[Hit]) -> list[str]:
    """Section keys of ``hits`` in rank order, each once."""
    return list(dict.fromkeys(section_key(h.chunk) for h in hits))


def assess(
    pipeline: RagPipeline,
    questions: Sequence[LabelledQuestion],
    *,
    rerank: bool = True,
    answer: bool = True,
    progress: Callable[[int, int], None] | None = None,
    extra: Mapping[str, RankingMetric] | None = None,
) -> pd.DataFrame:
    """One row per question (``COLUMNS``, then a column per ``extra`` metric, e.g. a student's nDCG, on
    the same top 10); retrieval metrics are NaN for unanswerable questions."""
    rows = []
    for i, q in enumerate(questions):
        relevant = {f"{d} § {s}": 1 for d, s in q.relevant}
        started = time.perf_counter()
        if answer:
            result = pipeline.query(q.question, k=10, rerank=rerank)
            hits, refused, support = result.hits, result.answer.refused, result.answer.check.rate
        else:
            _, hits = pipeline.retrieve(q.question, k=10, rerank=rerank)
            refused, support = False, float("nan")
        latency = (time.perf_counter() - started) * 1e3
        ranked = ranked_sections(hits)
        nan = float("nan")
        rows.append(
            {
                "id": q.id,
                "question": q.question,
                "nDCG@10": ndcg_at_k(ranked, relevant, 10) if relevant else nan,
                "Recall@10": recall_at_k(ranked, relevant, 10) if relevant else nan,
                "MRR": mrr(ranked, relevant, 10) if relevant else nan,
                "refused": refused,
                "should_refuse": not relevant,
                "citation_support": support,
                "latency_ms": latency,
                **{name: metric(ranked, relevant, 10) if relevant else nan for name, metric in (extra or {}).items()},
            }
        )
        if progress:
            progress(i + 1, len(questions))
    return pd.DataFrame(rows, columns=[*COLUMNS, *(extra or {})])


def summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over answerable questions (``extra`` metrics' columns too), refusal accuracy over all,
    citation support over answers given."""
    answerable = table[~table.should_refuse]
    answered = table[~table.refused]
    return {
        "nDCG@10": float(answerable["nDCG@10"].mean()),
        "Recall@10": float(answerable["Recall@10"].mean()),
        "MRR": float(answerable["MRR"].mean()),
        "refusal_accuracy": float((table.refused == table.should_refuse).mean()),
        "citation_support": float(answered["citation_support"].mean()) if len(answered) else float("nan"),
        "latency_ms_p50": float(table["latency_ms"].median()),
        **{column: float(answerable[column].mean()) for column in table.columns if column not in COLUMNS},
    }


def examples(pipeline: RagPipeline, questions: Sequence[LabelledQuestion], depth: int = 50) -> list[Example]:
    """Reranker training data: each answerable question's fused candidates, chunks of a labelled
    section marked relevant."""
    out = []
    for q in questions:
        if not q.relevant:
            continue
        wanted = {f"{d} § {s}" for d, s in q.relevant}
        retrieval, _ = pipeline.retrieve(q.question, k=depth, rerank=False)
        hits = tuple(retrieval.stages["fused"])
        out.append(Example(q.question, hits, {h.chunk.chunk_id: 1 for h in hits if section_key(h.chunk) in wanted}))
    return out
