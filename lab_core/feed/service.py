"""Read path: cached timeline (push) plus followed celebrities' recent posts (pull), merged, ranked, paginated."""

from __future__ import annotations

from collections.abc import Callable

from lab_core.feed.config import FeedConfig
from lab_core.feed.policy import FeedItem, Page, decode_cursor, is_celebrity, merge
from lab_core.feed.store import FeedStore
from lab_core.feed.timeline import Timelines
from lab_core.sim.clock import Clock, RealClock

RankHook = Callable[[int, list[FeedItem]], list[FeedItem]]
"""Reorders one page of a user's feed; must return the same items. The cursor stays recency-based."""


def recency(user: int, items: list[FeedItem]) -> list[FeedItem]:
    """The default ranker: newest first, as merged."""
    return list(items)


class FeedService:
    """Reads feeds and keeps timelines consistent with follows; the API's single entry to the read side."""

    def __init__(
        self,
        store: FeedStore,
        timelines: Timelines,
        *,
        config: FeedConfig | None = None,
        clock: Clock | None = None,
        ranker: RankHook | None = None,
    ) -> None:
        self.store = store
        self.timelines = timelines
        self.config = config or timelines.config
        self.clock = clock or RealClock()
        self.ranker = ranker or recency

    def read(self, user: int, limit: int | None = None, cursor: str | None = None) -> Page:
        """One page of ``user``'s feed strictly after ``cursor``; CursorError / UnknownUser / ValueError on bad input."""
        limit = self.config.default_page_size if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self.config.max_page_size:
            raise ValueError(f"limit must be an integer in 1..{self.config.max_page_size}, got {limit!r}")
        before = decode_cursor(cursor) if cursor else None
        self.store.user(user)
        now = self.clock.now()
        returning = not self.timelines.is_active(user, now)
        # Mark active before rebuilding: a fan-out that still saw this user inactive read the
        # follower list after its post was stored, so the rebuild's query below finds that post.
        self.timelines.touch(user, now)
        if returning:
            self.timelines.rebuild(user, self.store)
        followees = self.store.followees(user)
        following = set(followees)
        counts = self.store.follower_counts(followees)
        celebrities = [a for a in followees if is_celebrity(counts[a], self.config.celebrity_threshold)]
        # An unfollow racing a fan-out can leave a stale entry; the follow graph is the truth.
        pushed = [i for i in self.timelines.push_items(user, self.store, limit, before) if i.author_id in following]
        pulled = self.store.recent_posts(celebrities, limit + 1, before=before, source="pull")
        page = merge([pushed, pulled], limit=limit, cursor=cursor)
        ranked = self.ranker(user, list(page.items))
        if sorted(i.post_id for i in ranked) != sorted(i.post_id for i in page.items):
            raise RuntimeError("the ranker must return exactly the items of the page it was given")
        return Page(ranked, page.next_cursor)

    def follow(self, follower: int, followee: int) -> None:
        """Follow, and copy the followee's recent posts into the follower's timeline unless they are pulled."""
        self.store.follow(follower, followee)
        self.timelines.touch(follower, self.clock.now())
        if not is_celebrity(self.store.follower_count(followee), self.config.celebrity_threshold):
            posts = self.store.recent_posts([followee], self.config.timeline_length)
            self.timelines.add([follower], [(p.post_id, p.created_at) for p in posts])

    def unfollow(self, follower: int, followee: int) -> None:
        """Unfollow, and drop the followee's posts from the follower's cached timeline."""
        self.store.unfollow(follower, followee)
        self.timelines.touch(follower, self.clock.now())
        cached = self.store.posts_by_ids(self.timelines.post_ids(follower))
        self.timelines.remove(follower, [pid for pid, p in cached.items() if p["author"] == followee])
