"""The pure seams: celebrity cut, fan-out targets, merge with dedup, stable cursors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.feed.policy import (
    CursorError,
    FeedItem,
    decode_cursor,
    encode_cursor,
    fanout_targets,
    is_celebrity,
    merge,
)


def item(pid: int, t: float, author: int = 1, source: str = "push") -> FeedItem:
    return FeedItem(pid, author, t, source)  # type: ignore[arg-type]


def test_celebrity_threshold_is_inclusive_and_validated():
    assert is_celebrity(10, 10) and not is_celebrity(9, 10)
    with pytest.raises(ValueError, match="threshold"):
        is_celebrity(5, 0)


def test_fanout_targets_normal_author_reaches_active_followers_only():
    assert fanout_targets(3, [1, 2, 3], {1, 3, 99}, threshold=10) == [1, 3]
    assert fanout_targets(3, [1, 2, 3], None, threshold=10) == [1, 2, 3]
    assert fanout_targets(3, [1, 2, 3], set(), threshold=10) == []


def test_fanout_targets_celebrity_gets_no_push():
    assert fanout_targets(10, range(10), None, threshold=10) == []


def test_merge_dedups_and_orders_newest_first():
    push = [item(3, 3.0), item(1, 1.0)]
    pull = [item(3, 3.0, source="pull"), item(2, 2.0, source="pull")]
    page = merge([push, pull], limit=10)
    assert [i.post_id for i in page.items] == [3, 2, 1]
    assert page.items[0].source == "push"  # first source wins a duplicate
    assert page.next_cursor is None


def test_merge_breaks_time_ties_by_post_id():
    page = merge([[item(1, 5.0), item(7, 5.0), item(4, 5.0)]], limit=2)
    assert [i.post_id for i in page.items] == [7, 4]
    rest = merge([[item(1, 5.0), item(7, 5.0), item(4, 5.0)]], limit=2, cursor=page.next_cursor)
    assert [i.post_id for i in rest.items] == [1] and rest.next_cursor is None


def test_cursor_is_stable_when_new_posts_arrive_between_pages():
    posts = [item(i, float(i)) for i in range(1, 11)]
    first = merge([posts], limit=4)
    assert [i.post_id for i in first.items] == [10, 9, 8, 7]
    newer = [item(i, float(i)) for i in range(11, 15)] + posts  # four new posts arrive
    second = merge([newer], limit=4, cursor=first.next_cursor)
    assert [i.post_id for i in second.items] == [6, 5, 4, 3]


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor(item(42, 1234.5678))) == (1234.5678, 42)


@pytest.mark.parametrize("bad", ["", "!!!", "bm90LWEtY3Vyc29y", encode_cursor(item(1, 1.0))[:-3] + "@@", "YTpi"])
def test_malformed_cursor_raises_cursor_error(bad):
    with pytest.raises(CursorError):
        decode_cursor(bad)
    if bad:
        with pytest.raises(CursorError):
            merge([[item(1, 1.0)]], limit=1, cursor=bad)


def test_merge_rejects_bad_limit():
    with pytest.raises(ValueError, match="limit"):
        merge([[item(1, 1.0)]], limit=0)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 6), min_size=0, max_size=30),
    limit=st.integers(1, 7),
    split=st.integers(0, 30),
)
def test_paging_yields_every_post_once_in_order(times, limit, split):
    posts = [item(pid, float(t)) for pid, t in enumerate(times, start=1)]
    push, pull = posts[:split], posts[split // 2 :]  # overlapping sources: duplicates must vanish
    seen: list[FeedItem] = []
    cursor = None
    for _ in range(len(posts) + 2):
        page = merge([push, pull], limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert cursor is None
    assert [i.post_id for i in seen] == [p.post_id for p in sorted(posts, key=lambda p: p.order, reverse=True)]
