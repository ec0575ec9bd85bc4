"""Reranking the fused list: a learned linear scorer over features both retrievers already give.

No cross-encoder ships offline, so the reranker learns how much to trust each signal: cosine,
BM25 (scaled within the list), the two ranks, and how much of the query the chunk and its title
cover. Weights are fitted with a pairwise logistic loss (RankNet with a linear model) on labelled
queries; ``cross_validate`` measures it on queries it was not fitted on, and the pipeline keeps it
only where that measurement says it helps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lab_core.rag.retrieval import Hit
from lab_core.rag.text import terms

FEATURES = (
    "cosine",
    "bm25_scaled",
    "dense_rr",
    "bm25_rr",
    "query_coverage",
    "title_coverage",
    "bigram_coverage",
)


def features(query: str, hits: Sequence[Hit]) -> np.ndarray:
    """One row of ``FEATURES`` per hit; BM25 is divided by the list's best so queries compare."""
    q = list(dict.fromkeys(terms(query)))
    q_bigrams = set(zip(q, q[1:]))
    top_bm25 = max((h.sparse for h in hits), default=0.0) or 1.0
    rows = []
    for h in hits:
        words = terms(h.chunk.text)
        vocab = set(words)
        title = set(terms(h.chunk.title))
        bigrams = set(zip(words, words[1:]))
        rows.append(
            [
                h.dense,
                h.sparse / top_bm25,
                1.0 / (1 + h.dense_rank) if h.dense_rank else 0.0,
                1.0 / (1 + h.sparse_rank) if h.sparse_rank else 0.0,
                sum(t in vocab for t in q) / len(q) if q else 0.0,
                sum(t in title for t in q) / len(q) if q else 0.0,
                len(q_bigrams & bigrams) / len(q_bigrams) if q_bigrams else 0.0,
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(len(hits), len(FEATURES))


@dataclass(frozen=True)
class LinearReranker:
    """Scores ``features(query, hits) @ weights``; reorders the top ``depth`` hits, keeps the rest."""

    weights: tuple[float, ...]
    depth: int = 50

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ValueError(
                f"weights must have {len(FEATURES)} entries ({', '.join(FEATURES)}), got {len(self.weights)}"
            )

    def __call__(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits reordered best first, each with the reranker's score."""
        head, tail = list(hits[: self.depth]), list(hits[self.depth :])
        if not head:
            return tail
        scores = features(query, head) @ np.asarray(self.weights)
        order = np.argsort(-scores, kind="stable")
        return [replace(head[i], score=float(scores[i])) for i in order] + tail

    def save(self, path: str | Path) -> None:
        """Write the weights with their feature names as JSON."""
        Path(path).write_text(
            json.dumps({"features": FEATURES, "weights": self.weights, "depth": self.depth}, indent=1)
        )

    @classmethod
    def load(cls, path: str | Path) -> LinearReranker:
        """Read weights written by ``save``; refused when the feature list differs."""
        data = json.loads(Path(path).read_text())
        if tuple(data.get("features", ())) != FEATURES:
            raise ValueError(
                f"{path}: reranker was fitted on features {data.get('features')}, this code has {FEATURES}"
            )
        return cls(tuple(data["weights"]), data.get("depth", 50))


@dataclass(frozen=True)
class Example:
    """A labelled query: its candidate hits and which chunk ids are relevant (gain > 0)."""

    query: str
    hits: tuple[Hit, ...]
    relevant: Mapping[str, int]


def fit(
    examples: Sequence[Example], *, l2: float = 1e-2, steps: int = 400, lr: float = 0.5, depth: int = 50
) -> LinearReranker:
    """Pairwise logistic regression: for each query, every (relevant, non-relevant) pair of
    candidates should score relevant first. Full-batch gradient descent; deterministic."""
    diffs = []
    for ex in examples:
        hits = ex.hits[:depth]
        if not hits:
            continue
        x = features(ex.query, hits)
        gain = np.array([ex.relevant.get(h.chunk.chunk_id, ex.relevant.get(h.chunk.doc_id, 0)) for h in hits])
        pos, neg = np.flatnonzero(gain > 0), np.flatnonzero(gain <= 0)
        if len(pos) and len(neg):
            diffs.append((x[pos][:, None, :] - x[neg][None, :, :]).reshape(-1, x.shape[1]))
    if not diffs:
        raise ValueError("no labelled query has both a relevant and a non-relevant candidate: nothing to fit")
    d = np.vstack(diffs)
    w = np.zeros(d.shape[1])
    w[0] = 1.0  # start at "rank by cosine", a sensible prior
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(np.clip(d @ w, -30, 30)))
        grad = -(d * p[:, None]).mean(0) + l2 * w
        w -= lr * grad
    return LinearReranker(tuple(float(v) for v in w), depth)


def cross_validate(examples: Sequence[Example], folds: int = 5, **fit_args: float) -> list[tuple[int, LinearReranker]]:
    """Fold index of each example's test fold and a reranker fitted on the other folds
    (fold = position mod ``folds``, so it is deterministic)."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    models = [fit([e for i, e in enumerate(examples) if i % folds != f], **fit_args) for f in range(folds)]
    return [(i % folds, models[i % folds]) for i in range(len(examples))]


DEFAULT_PATH = Path(__file__).with_name("reranker.json")


def default_reranker() -> LinearReranker:
    """The reranker fitted on the demo corpus's labelled questions (``syslab bench rag`` refits it)."""
    return LinearReranker.load(DEFAULT_PATH)
