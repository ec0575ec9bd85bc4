"""Timeline write through one MULTI/EXEC pipeline, executed twice: ZADD in one EXEC, the trim in another.

The pipeline is opened with ``transaction=True``, but ``execute()`` after the ZADD sends it as a
transaction of its own; the trim follows in a second MULTI/EXEC. Between the two a reader sees a
timeline over its cap, and a crash leaves it there. The final contents are right.

Expected to fail: the hidden transaction check, which counts the commands inside each EXEC.
"""

# %% grade_id: add_to_timeline
def add_to_timeline(redis, user, post_id, created_at, length):
    """ZADD the post, then trim, through one transaction pipeline."""
    key = timeline_key(user)
    with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {member(post_id): created_at})
        pipe.execute()
        pipe.zremrangebyrank(key, 0, -length - 1)
        pipe.execute()
