"""Fit the simulator's :class:`~lab_core.feed.simulate.CostModel` from the real feed, and check it.

"Measure small, simulate large" (DESIGN.md, principle 1): :func:`measure` builds the real system
(SQLite ``FeedStore``, Redis ``Timelines``, the real ``FanoutWorker`` and ``FeedService``) on a
small synthetic graph, replays a simulated workload through it and times every step;
:func:`calibrated_cost_model` turns those timings into a ``CostModel``; :func:`validate` replays
another graph's workload through both the real system and the simulator and reports what each
says (fan-out writes per post, mean fan-out time, mean read time); ``Validation.table()`` is that
comparison as the course's one validation table (``lab_core.sim.calibration.validation_table``).

What is fitted, and how it maps onto the real code:

* ``post_write``: median time of ``publish`` (SQLite insert + ``XADD``).
* ``fanout_batch_overhead`` + ``zadd`` * n: least-squares line through the time of one
  ``FanoutWorker.run_once()`` handling one post whose author has n (active, pushed) followers:
  XAUTOCLAIM + XREADGROUP + follower query + activity check + one transactional pipeline of
  n ZADD+ZREMRANGEBYRANK + XACK. The real worker writes all of a post's targets in one pipeline,
  so the model mirrors it with ``fanout_batch`` = one pipeline per post and one worker.
* ``pull_round_trip`` * [k > 0] + ``celebrity_pull`` * k: least squares through the median
  ``FeedService.read`` time of probe users who follow k = 0 .. all celebrities and nobody else
  (read in alternating rounds); ``timeline_read``: the mean over the replayed reads of their time
  minus those pull terms. A read is: activity check and touch, followee and follower-count
  queries, ``ZREVRANGE``, post lookup, one SQL query for the pulled authors' recent posts, merge.
  Merging is folded in (``merge_per_item`` = 0).

Known gap: the real worker checks every follower's activity (a pipeline of ZSCOREs) *before*
learning the author is a celebrity, so a pulled post still costs the worker time proportional to
its follower count; the simulator gives pulled posts no fan-out work at all. The calibration and
the validation fit and compare pushed posts only, and report the celebrity cost separately
(``Calibration.celebrity_post``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import redis

from lab_core.feed.config import FeedConfig
from lab_core.feed.fanout import FanoutWorker, publish
from lab_core.feed.graph import SocialGraph, power_law_graph
from lab_core.feed.service import FeedService
from lab_core.feed.simulate import CostModel, FeedSimResult, simulate
from lab_core.feed.store import FeedStore
from lab_core.feed.timeline import Timelines
from lab_core.sim.calibration import validation_table
from lab_core.store import redis_client

__all__ = [
    "FANOUT_TIME",
    "READ_TIME",
    "WRITES_PER_POST",
    "Calibration",
    "RealRun",
    "Validation",
    "calibrated_cost_model",
    "calibration_graph",
    "fit",
    "measure",
    "replay",
    "validate",
]

#: One pipeline per post, as the real ``FanoutWorker.write`` sends it.
ONE_PIPELINE = 10**9
#: The metrics of :meth:`Validation.table`.
WRITES_PER_POST = "fan-out writes per post"
FANOUT_TIME = "mean fan-out time per pushed post"
READ_TIME = "mean read time"


def calibration_graph(n_users: int = 300, seed: int = 11) -> SocialGraph:
    """The small celebrity-heavy graph the calibration runs on (~10 follows per user)."""
    return power_law_graph(n_users, 10, 2.1, seed=seed, celebrity_boost=5)


class _CountingTimelines(Timelines):
    """Timelines that count the ZADDs the fan-out issues (one per target user per post)."""

    writes = 0

    def add(self, users, posts) -> None:  # type: ignore[override]
        users, posts = list(users), list(posts)
        if users and posts:
            self.writes += len(users) * len(posts)
        super().add(users, posts)


@dataclass
class RealRun:
    """Per-post and per-read timings of one replay on the real system (medians over ``repeats``)."""

    followers: np.ndarray  # per post: the author's follower count
    fanout_writes: np.ndarray  # per post: ZADDs the real worker issued (from the last repeat)
    fanout_time: np.ndarray  # per post: seconds of FanoutWorker.run_once() for that one post
    post_write: np.ndarray  # per post: seconds of publish()
    pulled: np.ndarray  # per read: celebrities the reader follows
    read_time: np.ndarray  # per read: seconds of FeedService.read()
    celebrity: np.ndarray  # per post: author pulled instead of pushed
    probe_pulled: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # k celebrities followed
    probe_time: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # median read time per k


def _client(url: str | redis.Redis | None) -> redis.Redis:
    if isinstance(url, redis.Redis):
        return url
    return redis_client(url, fresh=url is None)


def replay(
    graph: SocialGraph,
    authors: np.ndarray,
    readers: np.ndarray,
    *,
    url: str | redis.Redis | None = None,
    threshold: int = 40,
    repeats: int = 3,
    probe_rounds: int = 15,
) -> RealRun:
    """Run ``authors``' posts (one fan-out each) and ``readers``' reads through the real feed, timed.

    Graph user ``u`` is feed user ``u + 1``. Every user is marked active first, so the worker
    pushes to every follower of a non-celebrity (as the simulator assumes). The posts are
    replayed ``repeats`` times (each pass publishes them again) and the reads ``repeats`` times;
    each post's and read's time is the median over the passes. Then probe users following
    k = 0 .. all celebrities are read ``probe_rounds`` times each (the per-celebrity pull cost).
    ``url`` None: fakeredis.
    """
    client = _client(url)
    client.flushdb()
    config = FeedConfig(celebrity_threshold=int(threshold))
    store = FeedStore(":memory:", max_post_chars=config.max_post_chars)
    ids = [store.add_user(f"u{u}")["id"] for u in range(graph.n_users)]
    assert ids == list(range(1, graph.n_users + 1))
    with store.lock:
        store.conn.executemany(
            "INSERT INTO follows (follower, followee, created_at) VALUES (?, ?, 0.0)",
            [(int(f) + 1, int(u) + 1) for u in range(graph.n_users) for f in graph.followers(u)],
        )
    timelines = _CountingTimelines(client, config)
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for u in ids:
            pipe.zadd("feed:active", {str(u): now})
        pipe.execute()
    worker = FanoutWorker(store, timelines, client, config=config, name="calibration")
    service = FeedService(store, timelines, config=config)
    counts = graph.follower_counts()
    authors = np.asarray(authors, dtype=np.int64)
    readers = np.asarray(readers, dtype=np.int64)
    clock = time.perf_counter
    fan = np.zeros((repeats, authors.size))
    pub = np.zeros((repeats, authors.size))
    writes = np.zeros(authors.size, dtype=np.int64)
    for r in range(repeats):
        for i, a in enumerate(authors.tolist()):
            t0 = clock()
            publish(store, client, a + 1, f"post {i} pass {r}")
            t1 = clock()
            before = timelines.writes
            done = worker.run_once(1)
            t2 = clock()
            if done != 1:
                raise RuntimeError(f"the fan-out worker handled {done} entries, expected 1")
            pub[r, i], fan[r, i] = t1 - t0, t2 - t1
            writes[i] = timelines.writes - before
    reads = np.zeros((repeats, readers.size))
    for r in range(repeats):
        for i, u in enumerate(readers.tolist()):
            t0 = clock()
            service.read(u + 1)
            reads[r, i] = clock() - t0
    probe_k, probe_t = _probe_pulls(graph, store, service, client, int(threshold), probe_rounds, now)
    celebrity = counts[authors] >= threshold
    pulled = graph.pulled_followees(int(threshold))[readers]
    store.conn.close()
    return RealRun(
        followers=counts[authors],
        fanout_writes=writes,
        fanout_time=np.median(fan, axis=0),
        post_write=np.median(pub, axis=0),
        pulled=pulled,
        read_time=np.median(reads, axis=0),
        celebrity=celebrity,
        probe_pulled=probe_k,
        probe_time=probe_t,
    )


def _probe_pulls(graph, store, service, client, threshold, rounds, now) -> tuple[np.ndarray, np.ndarray]:
    """Median ``FeedService.read`` time of probe users following k = 0 .. all celebrities and nobody else.

    Probes follow celebrities only (already pulled), so nobody's push/pull status changes. Rounds
    visit the probes in turn, so a change in the machine's load spreads over every k.
    """
    celebs = [int(c) + 1 for c in graph.celebrities(threshold)]
    if rounds < 1 or not celebs:
        return np.zeros(0), np.zeros(0)
    ks = list(range(len(celebs) + 1))
    probes = [store.add_user(f"probe{k}")["id"] for k in ks]
    with store.lock:
        store.conn.executemany(
            "INSERT INTO follows (follower, followee, created_at) VALUES (?, ?, 0.0)",
            [(p, c) for p, k in zip(probes, ks) for c in celebs[:k]],
        )
    with client.pipeline(transaction=False) as pipe:
        for p in probes:
            pipe.zadd("feed:active", {str(p): now})
        pipe.execute()
    for p in probes:
        service.read(p)  # warm up
    times = np.zeros((rounds, len(ks)))
    clock = time.perf_counter
    for r in range(rounds):
        order = range(len(ks)) if r % 2 == 0 else reversed(range(len(ks)))
        for j in order:
            t0 = clock()
            service.read(probes[j])
            times[r, j] = clock() - t0
    return np.asarray(ks, dtype=float), np.median(times, axis=0)


@dataclass(frozen=True)
class Calibration:
    """Measured costs (seconds) of the real feed, and the fit behind :func:`calibrated_cost_model`."""

    post_write: float  # median publish()
    fanout_overhead: float  # per pushed post: intercept of the fan-out line
    zadd: float  # per pushed follower: slope of the fan-out line
    timeline_read: float  # read with nothing pulled: intercept
    pull_round_trip: float  # extra once a read pulls anything (the pull query)
    celebrity_pull: float  # per pulled celebrity
    celebrity_post: float  # median worker time for a pulled (celebrity) post: not in the simulator
    posts: int
    reads: int

    def cost_model(self, **overrides: float) -> CostModel:
        """The simulator's model of the real single-process system (one worker each way)."""
        base = CostModel(
            post_write=self.post_write,
            fanout_workers=1,
            fanout_batch=ONE_PIPELINE,
            fanout_batch_overhead=self.fanout_overhead,
            zadd=self.zadd,
            read_workers=1,
            timeline_read=self.timeline_read,
            celebrity_pull=self.celebrity_pull,
            pull_round_trip=self.pull_round_trip,
            merge_per_item=0.0,
        )
        return dataclasses.replace(base, **overrides)


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0 (a negative cost is noise: drop that term, refit)."""
    cols = list(range(X.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
        out = np.zeros(X.shape[1])
        out[cols] = coef
        neg = [c for c, v in zip(cols, coef) if v < 0 and c != 0]
        if not neg:
            out[0] = max(out[0], 0.0)
            return out
        cols.remove(neg[0])


def fit(run: RealRun) -> Calibration:
    """Fit the cost terms from one replay (see the module docstring)."""
    pushed = (~run.celebrity) & (run.fanout_writes > 0)
    if pushed.sum() < 3:
        raise ValueError("need at least 3 pushed posts with followers to fit the fan-out line")
    n = run.fanout_writes[pushed].astype(float)
    a, b = _lstsq(np.column_stack([np.ones_like(n), n]), run.fanout_time[pushed])
    p = run.pulled.astype(float)
    if run.probe_pulled.size >= 3:
        # Pull costs from the probes (k = 0 .. all celebrities followed, nothing pushed); the
        # intercept from the replayed reads, which also carry pushed items: mean of what is left.
        k = run.probe_pulled
        _, rt, per = _lstsq(np.column_stack([np.ones_like(k), (k > 0).astype(float), k]), run.probe_time)
        t0 = max(float(np.mean(run.read_time - rt * (p > 0) - per * p)), 0.0)
    else:
        X = np.column_stack([np.ones_like(p), (p > 0).astype(float), p])
        if min((p == 0).sum(), (p > 0).sum()) < 5:  # the intercept and the pull query cannot be told apart
            X[:, 1] = 0.0
        t0, rt, per = _lstsq(X, run.read_time)
    celeb = run.fanout_time[run.celebrity]
    return Calibration(
        post_write=float(np.median(run.post_write)),
        fanout_overhead=float(a),
        zadd=float(b),
        timeline_read=float(t0),
        pull_round_trip=float(rt),
        celebrity_pull=float(per),
        celebrity_post=float(np.median(celeb)) if celeb.size else float("nan"),
        posts=int(run.fanout_time.size),
        reads=int(run.read_time.size),
    )


def _unqueued_run(
    graph: SocialGraph, threshold: int, seed: int, posts: int, reads: int, cost: CostModel | None = None
) -> FeedSimResult:
    """A simulated run whose posts and reads the real replay repeats (same seed, same traffic).

    A low write rate and pools wide enough that nothing queues: the real replay is sequential,
    so simulated and real latencies are both service times.
    """
    duration = 100.0
    wide = dataclasses.replace(cost or CostModel(), fanout_workers=64, read_workers=64)
    return simulate(
        graph,
        "hybrid",
        threshold,
        duration=duration,
        write_rate=posts / duration,
        read_ratio=reads / posts,
        seed=seed,
        cost=wide,
    )


def measure(
    url: str | redis.Redis | None = None,
    *,
    n_users: int = 300,
    threshold: int = 40,
    posts: int = 150,
    reads: int = 300,
    repeats: int = 3,
    seed: int = 11,
) -> Calibration:
    """Time the real feed on :func:`calibration_graph` (``n_users``, ``seed``) and fit the costs."""
    graph = calibration_graph(n_users, seed)
    work = _unqueued_run(graph, threshold, seed, posts, reads)
    authors, readers = work.posts["author"].to_numpy(), work.reads["reader"].to_numpy()
    return fit(replay(graph, authors, readers, url=url, threshold=threshold, repeats=repeats))


def calibrated_cost_model(url: str | redis.Redis | None = None, **kwargs) -> CostModel:
    """A ``CostModel`` whose service times are measured on the real feed at ``url`` (see :func:`measure`).

    It models the real single-process system: one fan-out worker writing each post's targets in
    one pipeline, one read worker. For a fleet, ``dataclasses.replace`` the pool sizes.
    """
    return measure(url, **kwargs).cost_model()


@dataclass(frozen=True)
class Validation:
    """The real system and the simulator on the same graph and workload."""

    real_writes: np.ndarray  # per post
    sim_writes: np.ndarray  # per post
    real_fanout_mean: float  # mean fan-out seconds over pushed posts with followers
    sim_fanout_mean: float
    real_read_mean: float  # mean read seconds
    sim_read_mean: float

    @property
    def fanout_ratio(self) -> float:
        """Simulated / real mean fan-out time."""
        return self.sim_fanout_mean / self.real_fanout_mean

    @property
    def read_ratio(self) -> float:
        """Simulated / real mean read time."""
        return self.sim_read_mean / self.real_read_mean

    def table(self) -> pd.DataFrame:
        """The comparison as ``lab_core.sim.calibration.validation_table`` rows (times in ms); the
        per-post write counts of both sides are in ``attrs["real_writes"]`` and ``attrs["sim_writes"]``."""
        table = validation_table(
            [
                (WRITES_PER_POST, "writes/post", self.real_writes.mean(), self.sim_writes.mean()),
                (FANOUT_TIME, "ms", self.real_fanout_mean * 1e3, self.sim_fanout_mean * 1e3),
                (READ_TIME, "ms", self.real_read_mean * 1e3, self.sim_read_mean * 1e3),
            ]
        )
        table.attrs.update(real_writes=self.real_writes, sim_writes=self.sim_writes)
        return table


def validate(
    cost: CostModel,
    url: str | redis.Redis | None = None,
    *,
    n_users: int = 300,
    threshold: int = 40,
    posts: int = 150,
    reads: int = 300,
    repeats: int = 3,
    seed: int = 12,
) -> Validation:
    """Replay one simulated workload on a fresh graph through the real feed and through ``cost``'s simulator."""
    graph = calibration_graph(n_users, seed)
    sim = _unqueued_run(graph, threshold, seed, posts, reads, cost)
    authors, readers = sim.posts["author"].to_numpy(), sim.reads["reader"].to_numpy()
    real = replay(graph, authors, readers, url=url, threshold=threshold, repeats=repeats)
    pushed = (~real.celebrity) & (real.fanout_writes > 0)
    sim_fan = (sim.posts["visibility_delay"] - cost.post_write).to_numpy()
    return Validation(
        real_writes=real.fanout_writes,
        sim_writes=sim.posts["fanout_writes"].to_numpy(),
        real_fanout_mean=float(real.fanout_time[pushed].mean()),
        sim_fanout_mean=float(sim_fan[pushed].mean()),
        real_read_mean=float(real.read_time.mean()),
        sim_read_mean=float(sim.reads["service"].mean()),
    )
