"""Fan-out that pushes celebrities' posts to their followers too.

It ignores the celebrity threshold: one celebrity post means millions of writes.

Expected to fail: the visible fan-out test and the hidden comparison with the reference.
"""

# %% grade_id: fanout_targets
def fanout_targets(author_follower_count, followers, active, threshold):
    """Every active follower, in order."""
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1 follower, got {threshold}")
    return [f for f in followers if active is None or f in active]
