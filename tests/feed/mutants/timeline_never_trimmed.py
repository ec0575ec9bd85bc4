"""Timeline write that never trims.

Every key grows without bound (memory) and holds posts nobody will scroll to.

Expected to fail: the visible timeline test (cap 3) and the hidden comparison with Timelines.add.
"""

# %% grade_id: add_to_timeline
def add_to_timeline(redis, user, post_id, created_at, length):
    """ZADD the post to ``user``'s timeline."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(timeline_key(user), {member(post_id): created_at})
        pipe.execute()
