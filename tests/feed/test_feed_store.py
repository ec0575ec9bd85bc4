"""FeedConfig validation and the SQLite store: users, follows, posts, typed errors, nothing half-written."""

from __future__ import annotations

import pytest

from lab_core.feed.config import FeedConfig
from lab_core.feed.store import (
    DuplicateFollow,
    DuplicateUser,
    EmptyPost,
    FeedStore,
    InvalidName,
    NotFollowing,
    PostTooLong,
    SelfFollow,
    UnknownUser,
)
from lab_core.sim.clock import ManualClock


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("celebrity_threshold", 0),
        ("timeline_length", 0),
        ("max_post_chars", -1),
        ("active_window", 0),
        ("active_window", float("inf")),
        ("default_page_size", True),
        ("max_page_size", 2.5),
        ("claim_idle_ms", 0),
    ],
)
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"FeedConfig.{field}"):
        FeedConfig(**{field: value})


def test_config_page_sizes_must_be_ordered():
    with pytest.raises(ValueError, match="default_page_size"):
        FeedConfig(default_page_size=50, max_page_size=10)
    assert FeedConfig(default_page_size=10, max_page_size=10).max_page_size == 10


@pytest.fixture
def store(tmp_path) -> FeedStore:
    return FeedStore(tmp_path / "feed.db", clock=ManualClock(100.0), max_post_chars=10)


def test_users_and_duplicate_names(store):
    a = store.add_user("  alice ")
    assert a == {"id": 1, "name": "alice", "created_at": 100.0}
    assert store.user(1)["name"] == "alice"
    with pytest.raises(DuplicateUser, match="alice"):
        store.add_user("alice")
    for bad in ("", "   ", 7, None, "x" * 41):
        with pytest.raises(InvalidName):
            store.add_user(bad)
    with pytest.raises(UnknownUser, match="99"):
        store.user(99)
    assert [u["name"] for u in store.users()] == ["alice"]


def test_follow_graph_queries_and_errors(store):
    for name in "abcd":
        store.add_user(name)
    store.follow(2, 1)
    store.follow(3, 1)
    store.follow(3, 2)
    assert store.followers(1) == [2, 3]
    assert store.followees(3) == [1, 2]
    assert store.follower_counts([1, 2, 4]) == {1: 2, 2: 1, 4: 0}
    assert store.follower_count(1) == 2
    with pytest.raises(SelfFollow):
        store.follow(1, 1)
    with pytest.raises(DuplicateFollow):
        store.follow(2, 1)
    with pytest.raises(UnknownUser):
        store.follow(1, 42)
    with pytest.raises(UnknownUser):
        store.follow(42, 1)
    with pytest.raises(NotFollowing):
        store.unfollow(4, 1)
    assert store.followers(1) == [2, 3]  # refused writes changed nothing
    store.unfollow(2, 1)
    assert store.followers(1) == [3] and store.is_following(3, 1) and not store.is_following(2, 1)


def test_posts_are_stamped_by_the_injected_clock(store):
    store.add_user("a")
    clock = store.clock
    p1 = store.add_post(1, "hello")
    clock.advance(5)
    p2 = store.add_post(1, "again")
    assert (p1["created_at"], p2["created_at"]) == (100.0, 105.0)
    assert store.posts_by_ids([p2["id"], 999]) == {
        p2["id"]: {"id": 2, "author": 1, "text": "again", "created_at": 105.0}
    }


def test_bad_posts_are_refused_and_not_stored(store):
    store.add_user("a")
    with pytest.raises(PostTooLong, match="11 characters; the limit is 10"):
        store.add_post(1, "x" * 11)
    with pytest.raises(EmptyPost):
        store.add_post(1, "  ")
    with pytest.raises(EmptyPost):
        store.add_post(1, 5)
    with pytest.raises(UnknownUser):
        store.add_post(2, "hi")
    assert store.post_count() == 0
    assert store.add_post(1, "x" * 10)["id"] == 1


def test_recent_posts_newest_first_with_tuple_cursor(store):
    for name in "abc":
        store.add_user(name)
    for i in range(6):
        store.add_post(1 + i % 3, f"p{i}")  # same instant: post id breaks the tie
    store.clock.advance(1)
    store.add_post(1, "late")
    got = store.recent_posts([1, 2], limit=10)
    assert [p.post_id for p in got] == [7, 5, 4, 2, 1]
    assert all(p.source == "pull" for p in got)
    assert [p.post_id for p in store.recent_posts([1, 2], limit=2)] == [7, 5]
    assert [p.post_id for p in store.recent_posts([1, 2], limit=10, before=(100.0, 4))] == [2, 1]
    assert store.recent_posts([], limit=5) == []


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "feed.db"
    s = FeedStore(path, clock=ManualClock())
    s.add_user("a"), s.add_user("b")
    s.follow(1, 2)
    s.add_post(2, "kept")
    s.conn.close()
    again = FeedStore(path, clock=ManualClock())
    assert again.followers(2) == [1] and again.post_count() == 1
