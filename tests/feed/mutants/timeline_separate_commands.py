"""Timeline write as two separate commands: ZADD, then ZREMRANGEBYRANK in another round trip.

The final contents are right, so only the hidden transaction check notices: between the two
commands a reader sees a timeline over its cap, and a crash leaves it there.
"""

# %% grade_id: add_to_timeline
def add_to_timeline(redis, user, post_id, created_at, length):
    """ZADD then trim, as two commands."""
    key = timeline_key(user)
    redis.zadd(key, {member(post_id): created_at})
    redis.zremrangebyrank(key, 0, -length - 1)
