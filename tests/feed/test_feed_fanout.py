"""Fan-out on write through a Redis stream consumer group, including a worker that dies mid-batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import redis

from lab_core.feed.config import FeedConfig
from lab_core.feed.fanout import GROUP, STREAM, FanoutWorker, publish
from lab_core.feed.store import FeedStore
from lab_core.feed.timeline import Timelines, timeline_key
from lab_core.procs import stop_process
from lab_core.sim.clock import ManualClock

CFG = FeedConfig(celebrity_threshold=4, active_window=3600, claim_idle_ms=300)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis_server)])
def r(request) -> redis.Redis:
    return request.getfixturevalue("redis_fake" if request.param == "fake" else "redis_real")


class World:
    """Users 1..n in a file store, all active, with timelines on ``r``."""

    def __init__(self, r: redis.Redis, tmp_path, n: int = 8) -> None:
        self.r, self.clock = r, ManualClock(10_000.0)
        self.store = FeedStore(tmp_path / "feed.db", clock=self.clock)
        self.tl = Timelines(r, CFG)
        for i in range(1, n + 1):
            self.store.add_user(f"u{i}")
            self.tl.touch(i, self.clock.now())

    def worker(self, name: str, cls: type[FanoutWorker] = FanoutWorker) -> FanoutWorker:
        return cls(self.store, self.tl, self.r, config=CFG, clock=self.clock, name=name)


def assert_every_post_once(w: World, followers: list[int], post_ids: list[int]) -> None:
    for f in followers:
        members = w.r.zrange(timeline_key(f), 0, -1)
        assert len(members) == len(set(members)) == len(post_ids), f"user {f}: {members}"
        assert sorted(w.tl.post_ids(f)) == sorted(post_ids)


def test_post_reaches_every_active_follower(r, tmp_path):
    w = World(r, tmp_path)
    worker = w.worker("w1")
    for f in (2, 3, 4):
        w.store.follow(f, 1)
    w.clock.advance(3601)
    w.tl.touch(2, w.clock.now())
    w.tl.touch(3, w.clock.now())  # 4 stayed away past the window
    post = publish(w.store, r, 1, "hello")
    assert w.tl.post_ids(2) == []  # asynchronous: nothing before the worker runs
    assert worker.run_once() == 1
    assert w.tl.post_ids(2) == [post["id"]] and w.tl.post_ids(3) == [post["id"]]
    assert w.tl.post_ids(4) == [] and w.tl.post_ids(1) == []
    assert worker.pending() == 0 and worker.run_once() == 0


def test_celebrity_posts_are_not_fanned_out(r, tmp_path):
    w = World(r, tmp_path)
    for f in (2, 3, 4, 5):
        w.store.follow(f, 1)  # 4 followers = threshold: a celebrity
    w.store.follow(2, 6)
    publish(w.store, r, 1, "from the star")
    normal = publish(w.store, r, 6, "from a friend")
    assert w.worker("w1").drain() == 2
    assert w.tl.post_ids(2) == [normal["id"]]
    assert all(w.tl.post_ids(f) == [] for f in (3, 4, 5))


class Killed(BaseException):
    """Stands in for the process dying: not an Exception, so nothing on the way up handles it."""


class DiesMidBatch(FanoutWorker):
    """Writes the first job of its batch, then dies before writing the rest or acking."""

    def write(self, jobs):
        super().write(jobs[:1])
        raise Killed


def test_worker_dying_mid_batch_loses_nothing_and_duplicates_nothing(r, tmp_path):
    w = World(r, tmp_path)
    followers = [2, 3, 4]
    for f in followers:
        w.store.follow(f, 1)
    posts = [publish(w.store, r, 1, f"post {i}")["id"] for i in range(5)]
    doomed = w.worker("doomed", DiesMidBatch)
    with pytest.raises(Killed):
        doomed.run_once(max_entries=5)
    assert all(w.tl.post_ids(f) == [posts[0]] for f in followers)  # half done
    assert doomed.pending() == 5
    rescuer = w.worker("rescuer")
    assert rescuer.run_once() == 0  # entries are not stale yet: a live worker's batch is not stolen
    time.sleep(CFG.claim_idle_ms / 1000 * 2)
    assert rescuer.run_once() == 5  # claimed with XAUTOCLAIM, rewritten (the first post again), acked
    assert rescuer.pending() == 0
    assert_every_post_once(w, followers, posts)
    info = {c["name"]: c["pending"] for c in r.xinfo_consumers(STREAM, GROUP)}
    assert info.get("doomed", 0) == 0 and info["rescuer"] == 0


def test_worker_that_read_and_died_before_writing(r, tmp_path):
    w = World(r, tmp_path)
    w.store.follow(2, 1)
    posts = [publish(w.store, r, 1, f"p{i}")["id"] for i in range(3)]
    w.worker("setup")  # creates the group
    r.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=10)  # a worker read the batch, then vanished
    time.sleep(CFG.claim_idle_ms / 1000 * 2)
    assert w.worker("rescuer").drain() == 3
    assert_every_post_once(w, [2], posts)


def test_background_thread_fans_out(r, tmp_path):
    w = World(r, tmp_path)
    w.store.follow(2, 1)
    worker = w.worker("bg").start(poll_interval=0.01)
    try:
        post = publish(w.store, r, 1, "async")
        deadline = time.monotonic() + 5
        while w.tl.post_ids(2) != [post["id"]] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.tl.post_ids(2) == [post["id"]]
    finally:
        worker.stop()
    assert worker.pending() == 0


DOOMED_WORKER = textwrap.dedent("""
    import sys, time
    import redis
    from lab_core.feed.config import FeedConfig
    from lab_core.feed.fanout import FanoutWorker
    from lab_core.feed.store import FeedStore
    from lab_core.feed.timeline import Timelines

    url, db = sys.argv[1:3]
    r = redis.Redis.from_url(url, decode_responses=True)
    cfg = FeedConfig(celebrity_threshold=4, active_window=1e6)

    class Stalls(FanoutWorker):
        def write(self, jobs):
            super().write(jobs[:2])
            print("half", flush=True)
            time.sleep(60)

    Stalls(FeedStore(db), Timelines(r, cfg), r, config=cfg, name="doomed-process").run_once(10)
""")


@pytest.mark.redis_server
def test_sigkilled_worker_process_loses_no_post(redis_real, redis_server, tmp_path):
    r = redis_real
    store = FeedStore(tmp_path / "feed.db")
    cfg = FeedConfig(celebrity_threshold=4, active_window=1e6, claim_idle_ms=100)
    tl = Timelines(r, cfg)
    for i in range(1, 4):
        store.add_user(f"u{i}")
        tl.touch(i, time.time())
    store.follow(2, 1), store.follow(3, 1)
    FanoutWorker(store, tl, r, config=cfg, name="setup")
    posts = [publish(store, r, 1, f"p{i}")["id"] for i in range(6)]
    proc = subprocess.Popen(
        [sys.executable, "-c", DOOMED_WORKER, redis_server, str(tmp_path / "feed.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "half", proc.stderr.read()
        proc.kill()  # SIGKILL mid-batch: no cleanup, no ack
        proc.wait(5)
    finally:
        stop_process(proc)
    assert sorted(tl.post_ids(2)) == posts[:2]
    assert r.xpending(STREAM, GROUP)["pending"] == 6
    time.sleep(0.25)
    assert FanoutWorker(store, tl, r, config=cfg, name="rescuer").drain() == 6
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    for f in (2, 3):
        members = r.zrange(timeline_key(f), 0, -1)
        assert len(members) == 6 and sorted(int(m) for m in members) == posts
