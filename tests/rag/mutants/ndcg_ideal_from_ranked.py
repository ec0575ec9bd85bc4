"""The ideal DCG from the retrieved list re-sorted, not from the judgements: missing documents are free.

A retriever that finds one of three relevant documents, ranked first, scores a perfect 1.0; recall
failures become invisible to the metric.

Expected to fail: the hidden hand-made case (a judged document never retrieved) and the comparison.
"""

# %% grade_id: ndcg
def ndcg_at_k(ranked, relevant, k=10):
    """Normalised DCG of the top ``k`` of ``ranked`` with graded gains ``relevant[id]``."""
    top = ranked[:k]
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(top, start=1))
    gains = sorted((relevant.get(doc, 0) for doc in top if relevant.get(doc, 0) > 0), reverse=True)
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))
    return dcg / ideal if ideal > 0 else 0.0
