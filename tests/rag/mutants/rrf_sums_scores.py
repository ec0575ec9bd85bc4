"""Sums 1 / rank, forgetting k: rank 1 in one list then outweighs ranks 2 and 3 in both.

Without k the fusion is dominated by whichever retriever put a document first: exactly what RRF's
k = 60 is there to damp.

Expected to fail: the visible test and the comparison with the reference.
"""

# %% grade_id: rrf
def rrf(rankings, k=60):
    """Reciprocal rank fusion of ranked lists of ids: [(id, score), ...], best first."""
    scores = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / rank
    return sorted(scores.items(), key=lambda kv: -kv[1])
