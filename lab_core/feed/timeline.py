"""Cached timelines as Redis sorted sets, capped on write, plus last-active tracking and rebuild on return."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from lab_core.feed.config import FeedConfig
from lab_core.feed.policy import FeedItem, is_celebrity
from lab_core.feed.store import FeedStore

TIMELINE_KEY = "feed:tl:{user}"
ACTIVE_KEY = "feed:active"
# Members are zero-padded so that Redis orders equal-score members (reverse lexicographic) exactly
# as the feed orders equal-time posts (higher post id first); 19 digits hold any SQLite rowid.
MEMBER_DIGITS = 19


def timeline_key(user: int) -> str:
    """The sorted-set key of ``user``'s cached timeline."""
    return TIMELINE_KEY.format(user=user)


def member(post_id: int) -> str:
    """The sorted-set member for ``post_id``."""
    return f"{post_id:0{MEMBER_DIGITS}d}"


def add_to_timeline(redis: redis.Redis, user: int, post_id: int, created_at: float, length: int) -> None:
    """Add one post to ``user``'s timeline and trim it to ``length`` in one transaction (exercise 3's reference;
    the parameter names are the notebook's)."""
    Timelines(redis, FeedConfig(timeline_length=length)).add([user], [(post_id, created_at)])


class Timelines:
    """Per-user timelines ``feed:tl:{user}`` (score created_at, member post id) and the ``feed:active`` set."""

    def __init__(self, client: redis.Redis, config: FeedConfig | None = None) -> None:
        self.r = client
        self.config = config or FeedConfig()

    def add(self, users: Iterable[int], posts: Iterable[tuple[int, float]]) -> None:
        """Add ``(post_id, created_at)`` pairs to each user's timeline and trim it, all in one transaction."""
        mapping = {member(pid): created for pid, created in posts}
        users = list(users)
        if not mapping or not users:
            return
        with self.r.pipeline(transaction=True) as pipe:
            for user in users:
                key = timeline_key(user)
                pipe.zadd(key, mapping)  # same member again only rewrites its score: retries are idempotent
                pipe.zremrangebyrank(key, 0, -self.config.timeline_length - 1)
            pipe.execute()

    def read(self, user: int, limit: int, before: tuple[float, int] | None = None) -> list[tuple[int, float]]:
        """Up to ``limit`` + 1 newest ``(post_id, created_at)`` strictly older than ``before`` (newest first).

        With a cursor, posts at exactly the cursor's time are fetched separately, so an item older than
        the cursor is never crowded out of the slice by same-time items the cursor already passed.
        """
        key = timeline_key(user)
        if before is None:
            rows = self.r.zrevrange(key, 0, limit, withscores=True)
        else:
            created, post_id = before
            with self.r.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(key, created, created, withscores=True)
                pipe.zrevrangebyscore(key, f"({created!r}", "-inf", start=0, num=limit + 1, withscores=True)
                ties, older = pipe.execute()
            rows = [(m, s) for m, s in ties if int(m) < post_id] + list(older)
        items = [(int(m), float(s)) for m, s in rows]
        items.sort(key=lambda p: (p[1], p[0]), reverse=True)
        return items[: limit + 1]

    def post_ids(self, user: int) -> list[int]:
        """Every post id in ``user``'s cached timeline, newest first."""
        return [int(m) for m in self.r.zrevrange(timeline_key(user), 0, -1)]

    def remove(self, user: int, post_ids: Iterable[int]) -> None:
        """Drop posts from ``user``'s timeline (after an unfollow)."""
        members = [member(p) for p in post_ids]
        if members:
            self.r.zrem(timeline_key(user), *members)

    # --- activity ----------------------------------------------------------------------------

    def touch(self, user: int, now: float) -> None:
        """Record that ``user`` was active at ``now``."""
        self.r.zadd(ACTIVE_KEY, {str(user): now})

    def last_active(self, user: int) -> float | None:
        """When ``user`` was last active, or None if never."""
        score = self.r.zscore(ACTIVE_KEY, str(user))
        return None if score is None else float(score)

    def active_among(self, users: Iterable[int], now: float) -> set[int]:
        """The given users active within the configured window before ``now``."""
        users = list(users)
        if not users:
            return set()
        with self.r.pipeline(transaction=False) as pipe:
            for u in users:
                pipe.zscore(ACTIVE_KEY, str(u))
            scores = pipe.execute()
        horizon = now - self.config.active_window
        return {u for u, s in zip(users, scores) if s is not None and float(s) >= horizon}

    def is_active(self, user: int, now: float) -> bool:
        """Whether ``user`` was active within the window before ``now``."""
        return bool(self.active_among([user], now))

    # --- rebuild -----------------------------------------------------------------------------

    def rebuild(self, user: int, store: FeedStore) -> int:
        """Refill ``user``'s timeline from the store with recent posts of followed non-celebrities; returns posts added.

        It adds rather than replaces: a fan-out landing meanwhile is kept, and anything already
        cached is a followee's post that the cap trims in order anyway.
        """
        followees = store.followees(user)
        counts = store.follower_counts(followees)
        pushed = [a for a in followees if not is_celebrity(counts[a], self.config.celebrity_threshold)]
        posts = store.recent_posts(pushed, self.config.timeline_length, source="push")
        self.add([user], [(p.post_id, p.created_at) for p in posts])
        return len(posts)

    def push_items(self, user: int, store: FeedStore, limit: int, before: tuple[float, int] | None) -> list[FeedItem]:
        """Cached timeline entries as FeedItems (source "push"), authors looked up in the store."""
        rows = self.read(user, limit, before)
        posts = store.posts_by_ids(pid for pid, _ in rows)
        return [FeedItem(pid, posts[pid]["author"], created, "push") for pid, created in rows if pid in posts]
