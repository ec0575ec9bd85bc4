"""Features in the wrong order: replies before likes.

The values are right, but the ranker's weights are per position, so likes get the replies' weight.

Expected to fail: the visible features test and the hidden comparison with the reference.
"""

# %% grade_id: features
def features(item, viewer, stats):
    """[recency, replies, likes, affinity]."""
    age = max(0.0, stats.now - item.created_at)
    return np.array(
        [
            0.5 ** (age / stats.half_life),
            math.log1p(stats.replies.get(item.post_id, 0)),
            math.log1p(stats.likes.get(item.post_id, 0)),
            math.log1p(stats.interactions.get((viewer, item.author_id), 0)),
        ],
        dtype=np.float64,
    )
