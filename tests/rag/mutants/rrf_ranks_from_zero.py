"""Ranks counted from 0 (Python's enumerate default): every score is 1 / (k + rank - 1).

The order barely changes with k = 60, so a ranking-only check passes; the scores, and with k = 0 a
division by zero for every first-ranked document, give it away.

Expected to fail: the visible test (score of a) and the comparison with the reference.
"""

# %% grade_id: rrf
def rrf(rankings, k=60):
    """Reciprocal rank fusion of ranked lists of ids: [(id, score), ...], best first."""
    scores = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
