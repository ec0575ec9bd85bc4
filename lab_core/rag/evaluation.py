"""Retrieval evaluation: a BEIR data set loader and the ranking metrics (nDCG, recall, MRR, precision).

A *run* maps each query id to its ranked list of document ids, best first, without duplicates.
*Qrels* map each query id to ``{doc_id: relevance}``; relevance is a graded integer (0 = not
relevant) and a document counts as relevant for recall, precision and MRR when it is above 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR data set: ``corpus`` id -> (title, text), the split's ``queries`` and their ``qrels``."""

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "train") -> BeirDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``; only judged queries are kept."""
    folder = Path(folder)
    corpus = {r["_id"]: (r.get("title", ""), r["text"]) for r in _jsonl(folder / "corpus.jsonl", ("_id", "text"))}
    qrels = _qrels(folder / "qrels" / f"{split}.tsv")
    queries = {r["_id"]: r["text"] for r in _jsonl(folder / "queries.jsonl", ("_id", "text")) if r["_id"] in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for each non-blank line; universal newlines drop CRLF."""
    if not path.is_file():
        raise FileNotFoundError(f"BEIR file {str(path)!r} is missing")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line.rstrip("\n")


def _jsonl(path: Path, keys: tuple[str, ...]) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file, each with ``keys``; a bad line is named by file and number."""
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or any(key not in record for key in keys):
            raise ValueError(f"{path}:{number}: expected a JSON object with keys {list(keys)}")
        record["_id"] = str(record["_id"])
        yield record


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` rows, with or without the header row, as qid -> {docid: score}."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated fields, got {len(fields)}")
        qid, docid, score = fields
        try:
            relevance = int(score)
        except ValueError:
            if number == 1:  # the "query-id corpus-id score" header
                continue
            raise ValueError(f"{path}:{number}: score {score!r} is not an integer") from None
        qrels.setdefault(qid, {})[docid] = relevance
    return qrels


def _top(ranked: Sequence[str], k: int | None) -> Sequence[str]:
    """The first ``k`` ids (all when ``k`` is None), checking ``k`` and that no id repeats."""
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = ranked[:k]
    if len(set(top)) != len(top):
        raise ValueError("a ranked list names a document twice")
    return top


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the top ``k``, with graded gains; 0 when nothing is relevant."""
    # The document at 1-based rank r adds gain rel / log2(r + 1): rank 1 counts fully, rank 3 half.
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(_top(ranked, k), 1))
    ideal_gains = sorted((rel for rel in relevant.values() if rel > 0), reverse=True)[:k]
    ideal = sum(rel / math.log2(rank + 1) for rank, rel in enumerate(ideal_gains, 1))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top ``k``; 0 when nothing is relevant."""
    wanted = sum(rel > 0 for rel in relevant.values())
    hits = sum(relevant.get(doc, 0) > 0 for doc in _top(ranked, k))
    return hits / wanted if wanted else 0.0


def precision_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Share of the top ``k`` slots holding a relevant document (a short list still divides by ``k``)."""
    return sum(relevant.get(doc, 0) > 0 for doc in _top(ranked, k)) / k


def mrr(ranked: Sequence[str], relevant: Mapping[str, int], k: int | None = None) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (all when None); 0 when none."""
    for rank, doc in enumerate(_top(ranked, k), 1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


METRICS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "nDCG": ndcg_at_k,
    "Recall": recall_at_k,
    "P": precision_at_k,
    "MRR": mrr,
}


def per_query(run: Run, qrels: Qrels, metric: str, k: int) -> dict[str, float]:
    """``metric`` ("nDCG", "Recall", "P" or "MRR") at ``k`` for every query in ``qrels``; no run scores 0."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    return {qid: METRICS[metric](run.get(qid, ()), relevant, k) for qid, relevant in qrels.items()}


def evaluate(run: Run, qrels: Qrels, ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """Every metric at every ``k``, averaged over the queries in ``qrels``: {"nDCG@10": ..., "Recall@100": ...}."""
    if not qrels:
        raise ValueError("qrels is empty: there is nothing to average over")
    results = {}
    for k in ks:
        for metric in METRICS:
            scores = per_query(run, qrels, metric, k)
            results[f"{metric}@{k}"] = sum(scores.values()) / len(scores)
    return results
