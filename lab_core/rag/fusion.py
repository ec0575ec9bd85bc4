"""Fusing ranked lists from different retrievers into one.

Reciprocal rank fusion (Cormack et al., SIGIR 2009) uses ranks only, so BM25's unbounded scores
and cosine similarities never have to be put on one scale; the weighted sum does put them on one
scale (min-max per list) and lets a single weight say how much to trust each retriever.
"""

from __future__ import annotations

from collections.abc import Sequence

Ranking = Sequence[tuple[str, float]]


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over lists of 1 / (k + rank of d), rank from 1;
    best first, ties in order of first appearance."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def min_max(ranking: Ranking) -> dict[str, float]:
    """Scores rescaled to [0, 1] within the list (all 1.0 when they are equal)."""
    if not ranking:
        return {}
    lo, hi = min(s for _, s in ranking), max(s for _, s in ranking)
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in ranking}


def weighted_sum(dense: Ranking, sparse: Ranking, weight: float = 0.5) -> list[tuple[str, float]]:
    """``weight`` x min-max(dense) + (1 - weight) x min-max(sparse); a document missing from a list
    scores 0 there. Best first, ties in order of first appearance."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, got {weight!r}")
    d, s = min_max(dense), min_max(sparse)
    docs = list(dict.fromkeys([*d, *s]))
    fused = {doc: weight * d.get(doc, 0.0) + (1 - weight) * s.get(doc, 0.0) for doc in docs}
    return sorted(fused.items(), key=lambda kv: -kv[1])
