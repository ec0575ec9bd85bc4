"""Recency inverted: ``1 - 0.5 ** (age / half_life)`` grows with age, so the ranker favours old posts.

Expected to fail: the visible features test (a new post must have recency 1) and the hidden comparison.
"""

# %% grade_id: features
def features(item, viewer, stats):
    """[age score, likes, replies, affinity]."""
    age = max(0.0, stats.now - item.created_at)
    return np.array(
        [
            1.0 - 0.5 ** (age / stats.half_life),
            math.log1p(stats.likes.get(item.post_id, 0)),
            math.log1p(stats.replies.get(item.post_id, 0)),
            math.log1p(stats.interactions.get((viewer, item.author_id), 0)),
        ],
        dtype=np.float64,
    )
