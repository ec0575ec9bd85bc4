"""The feed's three decisions as pure functions: whom to push a post to, how to merge, where a page ends.

These are the lab's seams: the write path, the read path and the simulator all call them, and
the notebook's exercises re-implement them against the same signatures.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Source = Literal["push", "pull"]


@dataclass(frozen=True)
class FeedItem:
    """One post as a feed sees it: ordered newest first by ``(created_at, post_id)``."""

    post_id: int
    author_id: int
    created_at: float
    source: Source = "push"

    @property
    def order(self) -> tuple[float, int]:
        """The sort key; post ids break ties between posts made in the same instant."""
        return (self.created_at, self.post_id)


def is_celebrity(follower_count: int, threshold: int) -> bool:
    """Authors with at least ``threshold`` followers are pulled on read instead of pushed on write."""
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1 follower, got {threshold}")
    return follower_count >= threshold


def fanout_targets(
    author_follower_count: int,
    followers: Iterable[int],
    active: set[int] | None,
    threshold: int,
) -> list[int]:
    """Followers whose cached timelines get the post: none for a celebrity, else the active ones.

    ``active=None`` means every follower is active. Inactive users get no writes; their timeline
    is rebuilt when they return.
    """
    if is_celebrity(author_follower_count, threshold):
        return []
    return [f for f in followers if active is None or f in active]


class CursorError(ValueError):
    """A cursor that this service did not make."""


def encode_cursor(item: FeedItem) -> str:
    """An opaque cursor pointing just past ``item``."""
    return base64.urlsafe_b64encode(f"{item.created_at!r}:{item.post_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """The ``(created_at, post_id)`` a cursor points past; CursorError if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_text, post_text = raw.split(":")
        created, post = float(created_text), int(post_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError(f"malformed cursor {cursor[:40]!r}") from None
    # Only this service makes cursors: a time that is not finite or a post id past SQLite's 64-bit
    # range was forged, and would fail or match nothing further down.
    if not math.isfinite(created) or not 0 <= post < 2**63:
        raise CursorError(f"cursor {cursor[:40]!r} points at no post (time {created!r}, post id {post})")
    return created, post


@dataclass(frozen=True)
class Page:
    """One page of a feed and the cursor of the next (None at the end)."""

    items: list[FeedItem]
    next_cursor: str | None


def merge(sources: Iterable[Iterable[FeedItem]], *, limit: int, cursor: str | None = None) -> Page:
    """Merge pushed and pulled items newest first, each post once, strictly after ``cursor``.

    The cursor is the last item's sort key, not an offset, so posts arriving between two page
    reads never shift an item onto the next page twice or off it.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    after = decode_cursor(cursor) if cursor else None
    seen: dict[int, FeedItem] = {}
    for source in sources:
        for item in source:
            if after is not None and item.order >= after:
                continue
            seen.setdefault(item.post_id, item)
    ordered = sorted(seen.values(), key=lambda i: i.order, reverse=True)
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page(page, encode_cursor(page[-1]) if page and more else None)
