"""The six reference algorithms with in-process state (one dict per limiter, guarded by a lock).

Every method reads time only from the injected clock, so a test or a simulation decides what
"now" is. The Redis versions in ``redis_backend`` implement the same arithmetic in Lua.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

from lab_core.ratelimit.params import check_cost, check_limits
from lab_core.ratelimit.protocol import Decision
from lab_core.sim.clock import Clock


class _Base:
    uses_burst = False

    def __init__(self, limit: int, period: float, *, clock: Clock, burst: int | None = None) -> None:
        check_limits(limit, period, burst)
        if burst is not None and not self.uses_burst:
            raise ValueError(f"burst does not apply to {type(self).__name__}; leave it None")
        self.limit = limit
        self.period = float(period)
        self.burst = burst
        self.clock = clock
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """The most units one key can hold or spend at once."""
        return self.burst or self.limit

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Decide on ``cost`` units for ``key`` at the clock's current time."""
        check_cost(cost, self.capacity)
        now = self.clock.now()
        with self._lock:
            return self._decide(key, cost, now)

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        raise NotImplementedError


class TokenBucket(_Base):
    """Tokens refill at ``limit/period`` per second up to ``burst`` (default ``limit``); a request spends ``cost``."""

    uses_burst = True

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        rate = self.limit / self.period
        tokens, last = self._state.get(key, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + max(0.0, now - last) * rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._state[key] = (tokens, now)
        return Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=math.floor(tokens),
            reset_after=(self.capacity - tokens) / rate,
            retry_after=0.0 if allowed else (cost - tokens) / rate,
        )


class LeakyBucket(_Base):
    """A queue of at most ``burst`` units drained at ``limit/period`` per second: it smooths, it never bursts.

    An admitted request waits ``delay`` seconds (its place in the queue) before it is released.
    """

    uses_burst = True

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        rate = self.limit / self.period
        level, last = self._state.get(key, (0.0, now))
        level = max(0.0, level - max(0.0, now - last) * rate)
        allowed = level + cost <= self.capacity
        delay = level / rate if allowed else 0.0
        if allowed:
            level += cost
        self._state[key] = (level, now)
        return Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=math.floor(self.capacity - level),
            reset_after=level / rate,
            retry_after=0.0 if allowed else (level + cost - self.capacity) / rate,
            delay=delay,
        )


class FixedWindow(_Base):
    """At most ``limit`` units per aligned window ``[k*period, (k+1)*period)``."""

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        window = math.floor(now / self.period)
        stored_window, count = self._state.get(key, (window, 0))
        if stored_window != window:
            count = 0
        allowed = count + cost <= self.limit
        if allowed:
            count += cost
        self._state[key] = (window, count)
        until_next = (window + 1) * self.period - now
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=self.limit - count,
            reset_after=until_next,
            retry_after=0.0 if allowed else until_next,
        )


class SlidingWindowLog(_Base):
    """Exact: at most ``limit`` units in any window ``(now - period, now]``, from a log of admitted requests."""

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        log: deque[tuple[float, int]] = self._state.setdefault(key, deque())
        while log and log[0][0] <= now - self.period:
            log.popleft()
        used = sum(c for _, c in log)
        allowed = used + cost <= self.limit
        retry_after = 0.0
        if allowed:
            log.append((now, cost))
            used += cost
        else:
            to_free, freed = used + cost - self.limit, 0
            for t, c in log:
                freed += c
                if freed >= to_free:
                    retry_after = t + self.period - now
                    break
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=self.limit - used,
            reset_after=(log[-1][0] + self.period - now) if log else 0.0,
            retry_after=retry_after,
        )


class SlidingWindowCounter(_Base):
    """Approximate sliding window: the previous fixed window's count, weighted by its overlap, plus the current one."""

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        window = math.floor(now / self.period)
        stored_window, prev, curr = self._state.get(key, (window, 0, 0))
        if window == stored_window + 1:
            prev, curr = curr, 0
        elif window != stored_window:
            prev, curr = 0, 0
        start = window * self.period
        weight = (self.period - (now - start)) / self.period
        estimate = prev * weight + curr
        allowed = estimate + cost <= self.limit
        if allowed:
            curr += cost
            estimate += cost
        self._state[key] = (window, prev, curr)
        retry_after = 0.0
        if not allowed:
            if curr + cost <= self.limit and prev > 0:
                ready = start + self.period * (1 - (self.limit - curr - cost) / prev)
            else:
                ready = start + self.period + self.period * max(0.0, 1 - (self.limit - cost) / curr)
            retry_after = max(0.0, ready - now)
        if curr > 0:
            reset_after = start + 2 * self.period - now
        elif prev > 0:
            reset_after = start + self.period - now
        else:
            reset_after = 0.0
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, math.floor(self.limit - estimate)),
            reset_after=reset_after,
            retry_after=retry_after,
        )


class GCRA(_Base):
    """Generic cell rate algorithm: one stored time (the theoretical arrival time, TAT) per key.

    Same admissions as a token bucket of capacity ``burst`` refilled at ``limit/period``.
    """

    uses_burst = True

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        interval = self.period / self.limit
        # Time is counted in emission intervals, so each request adds exactly ``cost`` to the
        # backlog (TAT - now) and a burst is compared with ``burst`` exactly. In seconds, sums of
        # ``period/limit`` round: bursts at one instant got burst-1 through, and an idle key could
        # refuse a request of cost == burst. Snapping to 1e-9 interval drops leftover rounding noise.
        now_u = now / interval
        tat = self._state.get(key, now_u)
        backlog = max(0.0, math.floor((tat - now_u) * 1e9 + 0.5) / 1e9)
        new_backlog = backlog + cost
        allowed = new_backlog <= self.capacity
        if allowed:
            backlog = new_backlog
            self._state[key] = now_u + backlog
        return Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=max(0, math.floor(self.capacity - backlog)),
            reset_after=backlog * interval,
            retry_after=0.0 if allowed else (new_backlog - self.capacity) * interval,
        )


ALGORITHMS: dict[str, type[_Base]] = {
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
    "fixed_window": FixedWindow,
    "sliding_window_log": SlidingWindowLog,
    "sliding_window_counter": SlidingWindowCounter,
    "gcra": GCRA,
}
