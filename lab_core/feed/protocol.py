"""The student seams of Lab 03: the signatures the notebook's exercises implement.

Each has a reference in ``lab_core.feed`` that the real system calls, and each plugs into the
simulator, the live service or the dashboard through a keyword (``simulate(fanout=...)``,
``dashboard(merge=...)``):

* :class:`FanoutPolicy` -- exercise 1, reference :func:`lab_core.feed.policy.fanout_targets`.
* :class:`Merge` -- exercise 2, reference :func:`lab_core.feed.policy.merge`.
* :class:`TimelineWrite` -- exercise 3, reference :func:`lab_core.feed.timeline.add_to_timeline`.
* :class:`Features` -- exercise 4, reference :func:`lab_core.feed.ranker.features`.
* ``RankHook`` -- the feed service's ranking hook (``Ranker.hook`` makes one), re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from lab_core.feed.policy import FeedItem, Page
from lab_core.feed.service import RankHook

if TYPE_CHECKING:  # the ranker module imports torch; a type needs none of it
    import numpy as np
    import redis

    from lab_core.feed.ranker import EngagementStats

__all__ = ["FanoutPolicy", "Features", "Merge", "RankHook", "TimelineWrite"]


class FanoutPolicy(Protocol):
    """Whose cached timelines get a new post: none for a celebrity (``>= threshold`` followers),
    else the followers in ``active`` (all of them when ``active`` is None), in the order given."""

    def __call__(
        self, author_follower_count: int, followers: Iterable[int], active: set[int] | None, threshold: int
    ) -> list[int]: ...


class Merge(Protocol):
    """One page of ``limit`` items merged from newest-first sources: newest first by ``(created_at,
    post_id)``, each post once, strictly after ``cursor``; ``next_cursor`` None on the last page."""

    def __call__(self, sources: Iterable[Iterable[FeedItem]], *, limit: int, cursor: str | None = None) -> Page: ...


class TimelineWrite(Protocol):
    """Add one post to ``user``'s cached timeline (a Redis sorted set) and trim it to the ``length``
    newest, both in one transaction."""

    def __call__(self, redis: redis.Redis, user: int, post_id: int, created_at: float, length: int) -> None: ...


class Features(Protocol):
    """``[recency, likes, replies, affinity]`` of ``item`` for ``viewer``, a float64 array of shape (4,)."""

    def __call__(self, item: FeedItem, viewer: int, stats: EngagementStats) -> np.ndarray: ...
