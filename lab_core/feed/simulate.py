"""The news feed at scale in simulated time: push, pull and hybrid fan-out on a synthetic graph.

A simpy environment replays posts and timeline reads (arrival streams from
``lab_core.sim.arrivals``) against a service-time model of the feed:

* **write path** -- a post is stored (``CostModel.post_write``), then its fan-out targets
  (``policy.fanout_targets``: none for a celebrity) are split into pipelines of
  ``fanout_batch`` ZADDs and queued on a pool of ``fanout_workers``. A post is *visible to all
  followers* when its last pipeline finishes; a pulled post is visible once stored.
* **read path** -- a feed server (pool of ``read_workers``) reads the reader's own cached
  timeline and, pipelined with it, the post list of every followed celebrity
  (``policy.is_celebrity``), then merges a page from each source.

Strategies: ``push`` (nobody is a celebrity), ``pull`` (every author is pulled: threshold 1)
and ``hybrid`` (authors with ``>= threshold`` followers are pulled). Every run with the same
graph and seed sees the same posts and reads, so strategies compare like for like.

The service times in :class:`CostModel` are **assumptions**, order-of-magnitude figures for
Redis on a LAN; they are to be calibrated against the lab's real Redis implementation
(``lab_core.feed`` with a real ``REDIS_URL``) as the design's "measure small, simulate large"
asks. Conclusions that depend on ratios (writes per post, p99 of hybrid vs push) are far less
sensitive to them than absolute milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import simpy

from lab_core.feed.graph import SocialGraph
from lab_core.feed.policy import fanout_targets, is_celebrity
from lab_core.feed.protocol import FanoutPolicy
from lab_core.sim import DEFAULT_SEED, Progress, Recorder, arrivals, drive, percentiles, rng, steps

__all__ = [
    "CostModel",
    "FeedSimResult",
    "POST_COLUMNS",
    "READ_COLUMNS",
    "STRATEGIES",
    "SUMMARY_COLUMNS",
    "Strategy",
    "add_ratios",
    "compare",
    "simulate",
]

Strategy = Literal["push", "pull", "hybrid"]
STRATEGIES: tuple[str, ...] = ("push", "pull", "hybrid")

#: One row per post.
POST_COLUMNS = [
    "post_id",  # 0, 1, ... in arrival order
    "t",  # arrival time (s)
    "author",  # user id
    "followers",  # the author's follower count
    "celebrity",  # pulled on read instead of pushed
    "fanout_writes",  # ZADDs into follower timelines (write amplification)
    "batches",  # pipelines queued on the fan-out workers
    "visible_at",  # time the last follower's timeline holds the post (or the post is stored, if pulled)
    "visibility_delay",  # visible_at - t (s)
]
#: One row per timeline read.
READ_COLUMNS = [
    "t",  # arrival time (s)
    "reader",  # user id
    "followees",  # accounts the reader follows
    "pulled",  # celebrity post lists read alongside the timeline
    "items_merged",  # items merged into the page (a page per source)
    "service",  # service time without queueing (s)
    "latency",  # queueing + service (s)
]
#: One row per run (``FeedSimResult.summary``, ``compare``).
SUMMARY_COLUMNS = [
    "strategy",
    "threshold",  # follower count from which an author is pulled (push: n_users + 1, pull: 1)
    "posts",
    "reads",
    "fanout_writes",
    "writes_per_post",
    "visibility_p50",
    "visibility_p99",
    "visibility_max",
    "read_p50",
    "read_p90",
    "read_p99",
    "read_p99.9",
    "timeline_entries",  # entries in the cached per-user timelines (capped at timeline_cap)
    "author_list_entries",  # entries in cached post lists of pulled authors (capped at timeline_cap)
    "cache_bytes",  # (timeline_entries + author_list_entries) * bytes_per_entry
]


@dataclass(frozen=True)
class CostModel:
    """Service times (seconds) and sizes of the simulated feed. ALL DEFAULTS ARE ASSUMPTIONS.

    They are plausible figures for Redis and a Python feed service on one LAN, chosen before
    any measurement; calibrate them against the real implementation (time ``ZADD`` pipelines
    and feed reads on a real Redis) before quoting absolute latencies.
    """

    post_write: float = 1.0e-3  # store the post in post storage (one round trip + write)
    fanout_workers: int = 8  # fan-out workers draining the queue in parallel
    fanout_batch: int = 100  # ZADDs sent per pipeline (one round trip each)
    fanout_batch_overhead: float = 0.5e-3  # round trip + dispatch per pipeline
    zadd: float = 10e-6  # server time per ZADD (+ trim) inside a pipeline
    read_workers: int = 32  # concurrent timeline reads the feed service handles
    timeline_read: float = 0.5e-3  # one round trip reading the own timeline (pull: the pulls' round trip)
    celebrity_pull: float = 30e-6  # extra per celebrity post list read in the same pipeline
    pull_round_trip: float = 0.0  # hybrid: extra round trip when a read also pulls (0: one pipeline)
    merge_per_item: float = 0.5e-6  # merging one item into the page
    bytes_per_entry: int = 80  # memory of one sorted-set entry (member, score, skiplist, dict)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"CostModel.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"CostModel.{name} must be >= 0, got {value!r}")
        for name in ("fanout_workers", "fanout_batch", "read_workers"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"CostModel.{name} must be an integer >= 1, got {value!r}")

    def batch_time(self, writes: int) -> float:
        """Service time of one fan-out pipeline of ``writes`` ZADDs."""
        return self.fanout_batch_overhead + self.zadd * writes

    def read_time(self, has_timeline: bool, pulled: int, items: int) -> float:
        """Service time of one feed read pulling ``pulled`` lists and merging ``items``."""
        return (
            self.timeline_read
            + (self.pull_round_trip if pulled and has_timeline else 0.0)
            + self.celebrity_pull * pulled
            + self.merge_per_item * items
        )


@dataclass
class FeedSimResult:
    """One run: every post and every read as tidy tables, plus the cache it left behind."""

    strategy: str
    threshold: int
    posts: pd.DataFrame  # POST_COLUMNS
    reads: pd.DataFrame  # READ_COLUMNS
    timeline_entries: int
    author_list_entries: int
    cost: CostModel
    duration: float
    recorder: Recorder = field(repr=False)

    @property
    def cache_bytes(self) -> int:
        """Timeline cache memory: entries times ``CostModel.bytes_per_entry``."""
        return (self.timeline_entries + self.author_list_entries) * int(self.cost.bytes_per_entry)

    def summary(self) -> pd.DataFrame:
        """One row with ``SUMMARY_COLUMNS``."""
        writes = int(self.posts["fanout_writes"].sum())
        vis = percentiles(self.posts["visibility_delay"].to_numpy(), (50, 99))
        read = percentiles(self.reads["latency"].to_numpy())
        row = {
            "strategy": self.strategy,
            "threshold": self.threshold,
            "posts": len(self.posts),
            "reads": len(self.reads),
            "fanout_writes": writes,
            "writes_per_post": writes / len(self.posts) if len(self.posts) else math.nan,
            "visibility_p50": vis["p50"],
            "visibility_p99": vis["p99"],
            "visibility_max": float(self.posts["visibility_delay"].max()) if len(self.posts) else math.nan,
            "read_p50": read["p50"],
            "read_p90": read["p90"],
            "read_p99": read["p99"],
            "read_p99.9": read["p99.9"],
            "timeline_entries": self.timeline_entries,
            "author_list_entries": self.author_list_entries,
            "cache_bytes": self.cache_bytes,
        }
        return pd.DataFrame([row], columns=SUMMARY_COLUMNS)


def _threshold(graph: SocialGraph, strategy: str, threshold: int | None) -> int:
    if strategy == "push":
        return graph.n_users + 1  # nobody can have more than n_users - 1 followers
    if strategy == "pull":
        return 1
    if strategy == "hybrid":
        if threshold is None:
            raise ValueError("hybrid needs a threshold (followers from which an author is pulled)")
        if isinstance(threshold, bool) or int(threshold) != threshold:
            raise ValueError(f"threshold must be an integer, got {threshold!r}")
        is_celebrity(0, int(threshold))  # the policy's own check: >= 1
        return int(threshold)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Workload:
    post_times: np.ndarray
    authors: np.ndarray
    read_times: np.ndarray
    readers: np.ndarray


def _workload(
    graph: SocialGraph,
    duration: float,
    write_rate: float,
    read_ratio: float,
    author_exponent: float,
    activity_sigma: float,
    seed: int | None,
) -> _Workload:
    """Posts and reads, independent of the strategy so every strategy sees the same traffic."""
    base = DEFAULT_SEED if seed is None else int(seed)
    post_times = arrivals.poisson(write_rate, duration, seed=base)
    read_times = arrivals.poisson(write_rate * read_ratio, duration, seed=base + 1)
    g = rng(base + 2)
    n = graph.n_users
    # Assumption: posting activity grows with audience (followers^author_exponent) times
    # lognormal individual variation; reading activity is lognormal only.
    author_w = (1.0 + graph.follower_counts()) ** author_exponent * g.lognormal(0.0, activity_sigma, n)
    reader_w = g.lognormal(0.0, activity_sigma, n)
    authors = g.choice(n, size=post_times.size, p=author_w / author_w.sum())
    readers = g.choice(n, size=read_times.size, p=reader_w / reader_w.sum())
    return _Workload(post_times, authors, read_times, readers)


def simulate(
    graph: SocialGraph,
    strategy: Strategy = "hybrid",
    threshold: int | None = None,
    *,
    duration: float = 2.0,
    write_rate: float = 100.0,
    read_ratio: float = 50.0,
    page_size: int = 20,
    timeline_cap: int = 800,
    author_exponent: float = 0.5,
    activity_sigma: float = 1.0,
    cost: CostModel | None = None,
    seed: int | None = None,
    fanout: FanoutPolicy | None = None,
) -> FeedSimResult:
    """Run ``strategy`` for ``duration`` simulated seconds of posts and reads on ``graph``.

    Posts arrive as a Poisson stream at ``write_rate`` per second, reads at
    ``write_rate * read_ratio`` (Twitter reported ~300K reads/s vs ~6K writes/s: 50). Authors
    are drawn by activity ``(1 + followers)^author_exponent * lognormal(0, activity_sigma)``,
    readers by ``lognormal(0, activity_sigma)``. After the last arrival the simulation runs on
    until every queued fan-out is done, so every post has a visibility time.
    ``fanout`` replaces the fan-out decision (``policy.fanout_targets``), e.g. by a student's.
    Cache sizes assume every list read holds at least a page (steady state) and count entries
    written during the run, each list capped at ``timeline_cap`` entries.
    """
    cut = _threshold(graph, strategy, threshold)
    duration = _positive("duration", duration)
    write_rate = _positive("write_rate", write_rate)
    read_ratio = _positive("read_ratio", read_ratio)
    for name, value in (("page_size", page_size), ("timeline_cap", timeline_cap)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not author_exponent >= 0:
        raise ValueError(f"author_exponent must be >= 0, got {author_exponent!r}")
    if not activity_sigma >= 0:
        raise ValueError(f"activity_sigma must be >= 0, got {activity_sigma!r}")
    cost = cost or CostModel()
    decide = fanout or fanout_targets  # looked up per call, so a patched module seam is used too
    work = _workload(graph, duration, write_rate, read_ratio, author_exponent, activity_sigma, seed)

    counts = graph.follower_counts()
    followee_counts = graph.followee_counts()
    pulled_per_user = graph.pulled_followees(cut)
    has_timeline = strategy != "pull"
    pushed = np.zeros(graph.n_users, dtype=np.int64)  # entries written into each timeline
    celebrity_posts = np.zeros(graph.n_users, dtype=np.int64)  # posts in pulled authors' lists

    env = simpy.Environment()
    fanout_pool = simpy.Resource(env, capacity=int(cost.fanout_workers))
    read_pool = simpy.Resource(env, capacity=int(cost.read_workers))
    recorder = Recorder()
    post_rows: list[tuple[Any, ...]] = []

    def pipeline(writes: int) -> Generator[simpy.Event, Any, None]:
        with fanout_pool.request() as slot:
            yield slot
            yield env.timeout(cost.batch_time(writes))

    def post_handler(post_id: int, author: int) -> Generator[simpy.Event, Any, None]:
        t0 = env.now
        yield env.timeout(cost.post_write)
        followers = int(counts[author])
        celebrity = is_celebrity(followers, cut)
        targets = list(decide(followers, graph.followers(author), None, cut))
        batch = int(cost.fanout_batch)
        sizes = [min(batch, len(targets) - k) for k in range(0, len(targets), batch)]
        if sizes:
            np.add.at(pushed, np.asarray(targets, dtype=np.int64), 1)
            yield env.all_of([env.process(pipeline(s)) for s in sizes])
        if celebrity:
            celebrity_posts[author] += 1
        post_rows.append((post_id, t0, author, followers, celebrity, len(targets), len(sizes), env.now, env.now - t0))

    def read_handler(reader: int) -> Generator[simpy.Event, Any, None]:
        t0 = env.now
        pulled = int(pulled_per_user[reader])
        items = page_size * (int(has_timeline) + pulled)
        service = cost.read_time(has_timeline, pulled, items)
        with read_pool.request() as slot:
            yield slot
            yield env.timeout(service)
        recorder.record(
            t0,
            env.now - t0,
            reader=reader,
            followees=int(followee_counts[reader]),
            pulled=pulled,
            items_merged=items,
            service=service,
        )

    post_iter = iter(enumerate(work.authors.tolist()))
    read_iter = iter(work.readers.tolist())
    drive(env, work.post_times, lambda t: post_handler(*next(post_iter)))
    drive(env, work.read_times, lambda t: read_handler(next(read_iter)))
    env.run()  # runs past `duration` only to drain queued fan-outs and reads

    posts = pd.DataFrame(post_rows, columns=POST_COLUMNS).sort_values("post_id", kind="stable")
    posts = posts.reset_index(drop=True).astype({"celebrity": bool})
    reads = _reads_frame(recorder)
    return FeedSimResult(
        strategy=strategy,
        threshold=cut,
        posts=posts,
        reads=reads,
        timeline_entries=int(np.minimum(pushed, timeline_cap).sum()) if has_timeline else 0,
        author_list_entries=int(np.minimum(celebrity_posts, timeline_cap).sum()),
        cost=cost,
        duration=duration,
        recorder=recorder,
    )


def _reads_frame(recorder: Recorder) -> pd.DataFrame:
    if len(recorder) == 0:
        return pd.DataFrame(columns=READ_COLUMNS)
    frame = recorder.frame()
    return frame[READ_COLUMNS].sort_values("t", kind="stable").reset_index(drop=True)


def add_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (``SUMMARY_COLUMNS``) with ``writes_vs_push`` and ``read_p99_vs_push``: each row over
    the push row (NaN when push is not among the rows, or when push writes nothing)."""
    push = table[table["strategy"] == "push"]
    writes = float(push["writes_per_post"].iloc[0]) if len(push) else math.nan
    p99 = float(push["read_p99"].iloc[0]) if len(push) else math.nan
    return table.assign(
        writes_vs_push=table["writes_per_post"].astype(float) / writes if writes else math.nan,
        read_p99_vs_push=table["read_p99"].astype(float) / p99 if p99 else math.nan,
    )


def compare(
    graph: SocialGraph,
    thresholds: Iterable[int] = (),
    strategies: Sequence[str] = ("push", "pull"),
    *,
    progress: Progress | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Summaries of ``strategies`` plus ``hybrid`` at each of ``thresholds``, same workload for all.

    Returns ``SUMMARY_COLUMNS`` plus ``writes_vs_push`` and ``read_p99_vs_push`` (ratios to
    the push row; NaN when push is not among the runs). ``kwargs`` go to :func:`simulate`;
    ``progress`` hears of each run before it starts.
    """
    runs: list[tuple[str, int | None]] = []
    for s in strategies:
        if s == "hybrid":
            raise ValueError("give hybrid runs through thresholds=..., not strategies")
        _threshold(graph, s, None)  # validates the name
        runs.append((s, None))
    runs += [("hybrid", int(t)) for t in thresholds]
    if not runs:
        raise ValueError("nothing to compare: give strategies and/or thresholds")

    def label(run: tuple[str, int | None]) -> str:
        return run[0] if run[1] is None else f"{run[0]} at {run[1]:,}"

    table = pd.concat(
        [simulate(graph, s, t, **kwargs).summary() for s, t in steps(runs, progress, label)], ignore_index=True
    )
    return add_ratios(table)
