"""The gateway's waiting room: a bounded priority queue with ageing, and the dispatcher that
hands each waiting request a replica slot as one frees up.

Order: smallest score first, where for a request of tier ``t`` (PAID=0, FREE=1) and length
``n = prompt_tokens + max_tokens`` that has waited ``age`` seconds::

    score = tier_weight * t + length_weight * ln(n) - age / aging_seconds

Paid before free, short before long, and waiting lowers the score, so nothing starves: a free
request that has waited ``aging_seconds * (tier_weight + length_weight * ln(n_free / n_paid))``
seconds goes before any paid request arriving after that. Because ``-age/aging_seconds`` is
``arrival/aging_seconds - now/aging_seconds`` and the last term is the same for every entry,
the order never changes while entries wait: a heap keyed on
``tier_weight*t + length_weight*ln(n) + arrival/aging_seconds`` is exact, O(log n) per push/pop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab_core.sim.clock import Clock, RealClock

if TYPE_CHECKING:
    from lab_core.serving.gateway.router import Replica, Router


class QueueFull(RuntimeError):
    """The queue is at ``max_depth``: maps to 429 with ``Retry-After``."""

    def __init__(self, depth: int, retry_after: int = 1) -> None:
        super().__init__(f"the request queue is full ({depth} waiting); retry later")
        self.depth, self.retry_after = depth, retry_after


@dataclass(order=True)
class Entry:
    """One waiting item; ordered by ``(key, seq)``."""

    key: float
    seq: int
    item: Any = field(compare=False)
    priority: int = field(compare=False)
    length: int = field(compare=False)
    arrival: float = field(compare=False)
    removed: bool = field(default=False, compare=False)


class PriorityQueue:
    """Bounded priority queue with ageing (see the module docstring for the score)."""

    def __init__(
        self,
        max_depth: int = 256,
        *,
        clock: Clock | None = None,
        tier_weight: float = 10.0,
        length_weight: float = 1.0,
        aging_seconds: float = 1.0,
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise ValueError(f"max_depth must be a non-negative integer, got {max_depth!r}")
        for name, v in (("tier_weight", tier_weight), ("length_weight", length_weight)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not isinstance(aging_seconds, (int, float)) or isinstance(aging_seconds, bool) or not aging_seconds > 0:
            raise ValueError(f"aging_seconds must be a positive number, got {aging_seconds!r}")
        self.max_depth = max_depth
        self.clock = clock or RealClock()
        self.tier_weight, self.length_weight, self.aging_seconds = (
            float(tier_weight),
            float(length_weight),
            float(aging_seconds),
        )
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def _static(self, priority: int, length: int) -> float:
        return self.tier_weight * priority + self.length_weight * math.log(max(1, length))

    def score(self, entry: Entry, now: float | None = None) -> float:
        """The entry's effective score at ``now`` (default: the clock's now); smaller goes first."""
        now = self.clock.now() if now is None else now
        return self._static(entry.priority, entry.length) - (now - entry.arrival) / self.aging_seconds

    def push(self, item: Any, *, priority: int, length: int) -> Entry:
        """Add ``item`` (``priority`` PAID/FREE, ``length`` = prompt + max tokens); ``QueueFull`` at the bound."""
        if self._live >= self.max_depth:
            raise QueueFull(self._live)
        now = self.clock.now()
        entry = Entry(
            self._static(priority, length) + now / self.aging_seconds, next(self._seq), item, priority, length, now
        )
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def _drop_removed(self) -> None:
        while self._heap and self._heap[0].removed:
            heapq.heappop(self._heap)

    def peek(self) -> Entry:
        """The entry that ``pop`` would return; IndexError when empty."""
        self._drop_removed()
        if not self._heap:
            raise IndexError("peek from an empty PriorityQueue")
        return self._heap[0]

    def pop(self) -> Any:
        """Remove and return the item with the smallest score; IndexError when empty."""
        self._drop_removed()
        if not self._heap:
            raise IndexError("pop from an empty PriorityQueue")
        entry = heapq.heappop(self._heap)
        entry.removed = True
        self._live -= 1
        return entry.item

    def remove(self, entry: Entry) -> bool:
        """Take ``entry`` out (its request was cancelled); False when it already left."""
        if entry.removed:
            return False
        entry.removed = True
        self._live -= 1
        self._drop_removed()
        return True


class Dispatcher:
    """Per model, a ``PriorityQueue`` in front of the router's replica slots.

    ``await acquire(...)`` returns a replica with a slot taken: at once when nothing waits and a
    slot is free, else after queueing; ``release(replica)`` frees the slot and hands it to the
    best waiting request. When no replica is usable any more, waiting requests fail with
    ``NoReplicaAvailable`` instead of waiting forever.
    """

    def __init__(self, router: Router, *, max_depth: int = 256, clock: Clock | None = None, **weights: float) -> None:
        self.router = router
        self.queues = {m: PriorityQueue(max_depth, clock=clock or router.clock, **weights) for m in router.models}

    def depth(self) -> int:
        """Requests waiting, all models together."""
        return sum(len(q) for q in self.queues.values())

    async def acquire(self, model: str, priority: int, length: int) -> Replica:
        """A replica of ``model`` with a slot for this request (``QueueFull``, ``NoReplicaAvailable``)."""
        replica = self.try_acquire(model)
        return replica if replica is not None else await self.wait(model, priority, length)

    def try_acquire(self, model: str) -> Replica | None:
        """A slot at once when nobody is waiting and one is free, else None (``NoReplicaAvailable``
        when no replica is usable)."""
        if self.queues[model]:
            self.router.check_available(model)
            return None
        return self.router.pick(model)

    async def wait(self, model: str, priority: int, length: int) -> Replica:
        """Queue (``QueueFull`` at the bound) until a slot is handed over; cancelling leaves the queue."""
        q = self.queues[model]
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = q.push(fut, priority=priority, length=length)
        self._dispatch(model)
        try:
            return await fut
        except asyncio.CancelledError:
            if not q.remove(entry) and fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), cancelled=True)  # a slot arrived just as we left
            raise

    def release(self, replica: Replica, *, cancelled: bool = False) -> None:
        """Free ``replica``'s slot and dispatch the queue of its model."""
        if cancelled:
            replica.breaker.record_cancel()
        self.router.release(replica)
        self._dispatch(replica.model)

    def _dispatch(self, model: str) -> None:
        from lab_core.serving.gateway.router import NoReplicaAvailable

        q = self.queues[model]
        while q:
            try:
                replica = self.router.pick(model)
            except NoReplicaAvailable as exc:
                while q:
                    fut = q.pop()
                    if not fut.done():
                        fut.set_exception(NoReplicaAvailable(exc.model, exc.retry_after))
                return
            if replica is None:
                return
            fut = q.pop()
            if fut.done():
                replica.breaker.record_cancel()
                self.router.release(replica)
                continue
            fut.set_result(replica)
