"""Redis timelines: trim on write, newest-first slices with tie-safe cursors, activity, rebuild on return."""

from __future__ import annotations

import pytest
import redis

from lab_core.feed.config import FeedConfig
from lab_core.feed.service import FeedService
from lab_core.feed.store import FeedStore
from lab_core.feed.timeline import Timelines, timeline_key
from lab_core.sim.clock import ManualClock


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis_server)])
def r(request) -> redis.Redis:
    return request.getfixturevalue("redis_fake" if request.param == "fake" else "redis_real")


def test_trim_on_write_keeps_newest(r):
    tl = Timelines(r, FeedConfig(timeline_length=3))
    for pid in range(1, 8):
        tl.add([1, 2], [(pid, float(pid))])
        assert r.zcard(timeline_key(1)) <= 3
    assert tl.post_ids(1) == [7, 6, 5] and tl.post_ids(2) == [7, 6, 5]


def test_add_is_idempotent(r):
    tl = Timelines(r, FeedConfig())
    tl.add([1], [(5, 5.0), (6, 6.0)])
    tl.add([1], [(5, 5.0)])
    assert tl.post_ids(1) == [6, 5]


def test_read_slices_newest_first_and_orders_ties_by_post_id(r):
    tl = Timelines(r, FeedConfig())
    tl.add([1], [(pid, 1.0) for pid in (2, 10, 9)] + [(11, 2.0), (1, 0.5)])
    assert tl.read(1, 2) == [(11, 2.0), (10, 1.0), (9, 1.0)]  # limit + 1 for the "more" test
    # Cursor inside a run of equal times: older ties still come first, nothing skipped.
    assert tl.read(1, 2, before=(1.0, 10)) == [(9, 1.0), (2, 1.0), (1, 0.5)]
    assert tl.read(1, 5, before=(0.5, 1)) == []


def test_activity_window(r):
    tl = Timelines(r, FeedConfig(active_window=10))
    assert tl.last_active(1) is None
    tl.touch(1, 100.0)
    tl.touch(2, 85.0)
    assert tl.last_active(1) == 100.0
    assert tl.active_among([1, 2, 3], now=105.0) == {1}
    assert tl.is_active(2, 95.0) and not tl.is_active(2, 95.5)


def test_rebuild_on_return_restores_missed_posts(r, tmp_path):
    clock = ManualClock(1000.0)
    cfg = FeedConfig(active_window=60, celebrity_threshold=3, timeline_length=4)
    store = FeedStore(tmp_path / "f.db", clock=clock)
    tl = Timelines(r, cfg)
    svc = FeedService(store, tl, config=cfg, clock=clock)
    for name in ("reader", "friend", "celeb", "x", "y"):
        store.add_user(name)
    svc.follow(1, 2)
    for fan in (1, 4, 5):
        store.follow(fan, 3)  # celeb has 3 followers: pulled, never cached
    clock.advance(3600)  # reader is inactive now; fan-out would skip them
    for i in range(6):
        clock.advance(1)
        store.add_post(2, f"friend {i}")
        store.add_post(3, f"celeb {i}")
    assert tl.post_ids(1) == []
    page = svc.read(1, limit=3)
    assert tl.is_active(1, clock.now())
    assert tl.post_ids(1) == [11, 9, 7, 5]  # capped at timeline_length, friend's posts only
    assert [(i.post_id, i.source) for i in page.items] == [(12, "pull"), (11, "push"), (10, "pull")]


def test_rebuild_keeps_entries_that_landed_meanwhile(r, tmp_path):
    store = FeedStore(tmp_path / "f.db", clock=ManualClock(5.0))
    tl = Timelines(r, FeedConfig())
    store.add_user("a"), store.add_user("b")
    store.follow(1, 2)
    p = store.add_post(2, "stored")
    tl.add([1], [(77, 9.0)])  # a fan-out write that arrived during the rebuild
    assert tl.rebuild(1, store) == 1
    assert tl.post_ids(1) == [77, p["id"]]


def test_read_hides_a_stale_entry_from_an_unfollow_racing_a_fanout(r, tmp_path):
    clock = ManualClock(50.0)
    store = FeedStore(tmp_path / "f.db", clock=clock)
    tl = Timelines(r, FeedConfig())
    svc = FeedService(store, tl, clock=clock)
    store.add_user("reader"), store.add_user("old friend")
    svc.follow(1, 2)
    post = store.add_post(2, "late")
    svc.unfollow(1, 2)
    tl.add([1], [(post["id"], post["created_at"])])  # the fan-out read the follower list before the unfollow
    assert svc.read(1).items == []


def test_service_validates_limit_and_ranker_output(r, tmp_path):
    clock = ManualClock(50.0)
    store = FeedStore(tmp_path / "f.db", clock=clock)
    tl = Timelines(r, FeedConfig(max_page_size=5, default_page_size=5))
    store.add_user("a"), store.add_user("b")
    store.add_post(2, "one"), store.add_post(2, "two")
    FeedService(store, tl, clock=clock).follow(1, 2)  # copies b's recent posts into a's timeline
    assert len(FeedService(store, tl, clock=clock).read(1).items) == 2
    for bad in (0, 6, True, "3"):
        with pytest.raises(ValueError, match="limit"):
            FeedService(store, tl, clock=clock).read(1, bad)
    dropping = FeedService(store, tl, clock=clock, ranker=lambda user, items: items[:1])
    with pytest.raises(RuntimeError, match="ranker"):
        dropping.read(1)
