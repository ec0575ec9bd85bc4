"""Write path: store a post, queue it on a Redis stream, and fan it out to followers' timelines from a consumer group."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from lab_core.feed.config import FeedConfig
from lab_core.feed.policy import fanout_targets, is_celebrity
from lab_core.feed.store import FeedStore
from lab_core.feed.timeline import Timelines
from lab_core.sim.clock import Clock, RealClock

STREAM = "feed:fanout"
GROUP = "fanout"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class FanoutJob:
    """One queued post: the stream entry id and what the worker needs to place it."""

    entry_id: str
    post_id: int
    author_id: int
    created_at: float


def ensure_group(client: redis.Redis, stream: str = STREAM, group: str = GROUP) -> None:
    """Create the stream and its consumer group if missing (reading from the stream's start)."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def publish(store: FeedStore, client: redis.Redis, author: int, text: object, *, stream: str = STREAM) -> dict:
    """Store the post, then queue it for fan-out; returns the stored post."""
    post = store.add_post(author, text)
    client.xadd(stream, {"post_id": post["id"], "author_id": author, "created_at": repr(post["created_at"])})
    return post


class FanoutWorker:
    """A consumer in the fan-out group: claims stale entries of dead consumers, reads new ones, writes, then acks."""

    def __init__(
        self,
        store: FeedStore,
        timelines: Timelines,
        client: redis.Redis,
        *,
        config: FeedConfig | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        stream: str = STREAM,
        group: str = GROUP,
    ) -> None:
        self.store = store
        self.timelines = timelines
        self.r = client
        self.config = config or timelines.config
        self.clock = clock or RealClock()
        self.name = name or f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stream = stream
        self.group = group
        self.processed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ensure_group(self.r, stream, group)

    # --- one round ---------------------------------------------------------------------------

    def run_once(self, max_entries: int | None = None) -> int:
        """Claim stale pending entries, else read new ones; fan the batch out and ack it; returns entries done."""
        count = max_entries or self.config.fanout_batch
        jobs = self.claim_stale(count) or self.read_new(count)
        if jobs:
            self.write(jobs)
            self.ack(jobs)
            self.processed += len(jobs)
        return len(jobs)

    def drain(self, max_rounds: int = 10_000) -> int:
        """Run rounds until nothing is left to claim or read; returns entries done."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if n == 0:
                break
            total += n
        return total

    def claim_stale(self, count: int) -> list[FanoutJob]:
        """Take over entries another consumer read but did not ack within ``claim_idle_ms``."""
        jobs: list[FanoutJob] = []
        start = "0-0"
        while len(jobs) < count:
            reply = self.r.xautoclaim(
                self.stream, self.group, self.name, self.config.claim_idle_ms, start_id=start, count=count - len(jobs)
            )
            start, entries = _text(reply[0]), reply[1]
            jobs += [self._job(eid, fields) for eid, fields in entries if fields]
            if start == "0-0":
                break
        return jobs

    def read_new(self, count: int) -> list[FanoutJob]:
        """Entries never delivered to any consumer of the group."""
        reply = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count)
        return [self._job(eid, fields) for _, entries in reply or [] for eid, fields in entries if fields]

    def write(self, jobs: Sequence[FanoutJob]) -> None:
        """Push each job's post to the timelines of its author's active followers, unless the author is a celebrity."""
        now = self.clock.now()
        for job in jobs:
            # A celebrity's post is pulled on read: decide that from the count before fetching
            # (and checking the activity of) a follower list that may be millions long.
            if is_celebrity(self.store.follower_count(job.author_id), self.config.celebrity_threshold):
                continue
            followers = self.store.followers(job.author_id)
            active = self.timelines.active_among(followers, now)
            targets = fanout_targets(len(followers), followers, active, self.config.celebrity_threshold)
            self.timelines.add(targets, [(job.post_id, job.created_at)])

    def ack(self, jobs: Sequence[FanoutJob]) -> None:
        """Acknowledge a fully written batch, so no other consumer claims it."""
        self.r.xack(self.stream, self.group, *[j.entry_id for j in jobs])

    @staticmethod
    def _job(entry_id: object, fields: dict) -> FanoutJob:
        f = {_text(k): _text(v) for k, v in fields.items()}
        return FanoutJob(_text(entry_id), int(f["post_id"]), int(f["author_id"]), float(f["created_at"]))

    # --- background loop ---------------------------------------------------------------------

    def start(self, poll_interval: float = 0.05) -> FanoutWorker:
        """Run rounds on a daemon thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.run_once() > 0
                except redis.RedisError:
                    busy = False  # Redis away: entries stay pending and are claimed once it is back
                if not busy:
                    self._stop.wait(poll_interval)

        self._thread = threading.Thread(target=loop, name=f"fanout-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread after its current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def pending(self) -> int:
        """Entries delivered to some consumer of the group but not yet acked."""
        return int(self.r.xpending(self.stream, self.group)["pending"])
