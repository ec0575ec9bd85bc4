"""Discounts by 1 / rank instead of 1 / log2(rank + 1): reciprocal-rank style, far too steep.

Expected to fail: the visible test (rank 2 must be discounted by log2(3)) and the comparison.
"""

# %% grade_id: ndcg
def ndcg_at_k(ranked, relevant, k=10):
    """Normalised DCG of the top ``k`` of ``ranked`` with graded gains ``relevant[id]``."""
    dcg = sum(relevant.get(doc, 0) / rank for rank, doc in enumerate(ranked[:k], start=1))
    gains = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / rank for rank, g in enumerate(gains, start=1))
    return dcg / ideal if ideal > 0 else 0.0
