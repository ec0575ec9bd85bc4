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
        return token_bucket_outcome(allowed, tokens, cost, self.capacity, rate)

    def refund(self, key: str, units: int) -> None:
        """Give ``units`` back to ``key`` (a reservation that was not all spent), capped at the capacity.

        A key never seen is already full, so a refund to it changes nothing.
        """
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise ValueError(f"units must be a non-negative integer, got {units!r}")
        if units == 0:
            return
        now = self.clock.now()
        rate = self.limit / self.period
        with self._lock:
            state = self._state.get(key)
            if state is None:
                return
            tokens, last = state
            tokens = min(float(self.capacity), tokens + max(0.0, now - last) * rate + units)
            self._state[key] = (tokens, max(now, last))


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
        self._state[key] = (level + cost if allowed else level, now)
        return leaky_bucket_outcome(allowed, level, cost, self.capacity, rate)


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
        return fixed_window_outcome(allowed, count, self.limit, (window + 1) * self.period - now)


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
        allowed = sliding_counter_estimate(prev, curr, self.period, now) + cost <= self.limit
        self._state[key] = (window, prev, curr + cost if allowed else curr)
        return sliding_counter_outcome(allowed, prev, curr, cost, self.limit, self.period, now)


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
        allowed = backlog + cost <= self.capacity
        if allowed:
            self._state[key] = now_u + backlog + cost
        return gcra_outcome(allowed, backlog, cost, self.capacity, interval)


# Outcomes: each turns an algorithm's state at decision time into the Decision it reports. The
# Redis twins compute the same state inside Lua and call these same functions on the reply, so
# both backends report identical numbers by construction and Lua formats as little as possible.


def token_bucket_outcome(allowed: bool, tokens: float, cost: int, capacity: int, rate: float) -> Decision:
    """Decision of a token bucket holding ``tokens`` after the request (spent if allowed)."""
    return Decision(
        allowed=allowed,
        limit=capacity,
        remaining=math.floor(tokens),
        reset_after=(capacity - tokens) / rate,
        retry_after=0.0 if allowed else (cost - tokens) / rate,
    )


def leaky_bucket_outcome(allowed: bool, level: float, cost: int, capacity: int, rate: float) -> Decision:
    """Decision of a leaky bucket whose queue held ``level`` units (after draining) when the request came."""
    after = level + cost if allowed else level
    return Decision(
        allowed=allowed,
        limit=capacity,
        remaining=math.floor(capacity - after),
        reset_after=after / rate,
        retry_after=0.0 if allowed else (level + cost - capacity) / rate,
        delay=level / rate if allowed else 0.0,
    )


def fixed_window_outcome(allowed: bool, count: int, limit: int, until_next: float) -> Decision:
    """Decision of a fixed window that has counted ``count`` units (this request included if allowed)."""
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=limit - count,
        reset_after=until_next,
        retry_after=0.0 if allowed else until_next,
    )


def sliding_counter_estimate(prev: int, curr: int, period: float, now: float) -> float:
    """Units counted in ``(now - period, now]``, assuming the previous window's were spread evenly."""
    start = math.floor(now / period) * period
    return prev * ((period - (now - start)) / period) + curr


def sliding_counter_outcome(
    allowed: bool, prev: int, curr: int, cost: int, limit: int, period: float, now: float
) -> Decision:
    """Decision of a sliding window counter with ``prev``/``curr`` counted before this request."""
    start = math.floor(now / period) * period
    estimate = sliding_counter_estimate(prev, curr, period, now)
    retry_after = 0.0
    if allowed:
        curr += cost
        estimate += cost
    elif curr + cost <= limit and prev > 0:
        retry_after = max(0.0, start + period * (1 - (limit - curr - cost) / prev) - now)
    else:
        retry_after = max(0.0, start + period + period * max(0.0, 1 - (limit - cost) / curr) - now)
    if curr > 0:
        reset_after = start + 2 * period - now
    elif prev > 0:
        reset_after = start + period - now
    else:
        reset_after = 0.0
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, math.floor(limit - estimate)),
        reset_after=reset_after,
        retry_after=retry_after,
    )


def gcra_outcome(allowed: bool, backlog: float, cost: int, capacity: int, interval: float) -> Decision:
    """Decision of GCRA with ``backlog`` emission intervals queued (TAT - now) before the request."""
    after = backlog + cost if allowed else backlog
    return Decision(
        allowed=allowed,
        limit=capacity,
        remaining=max(0, math.floor(capacity - after)),
        reset_after=after * interval,
        retry_after=0.0 if allowed else (backlog + cost - capacity) * interval,
    )


ALGORITHMS: dict[str, type[_Base]] = {
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
    "fixed_window": FixedWindow,
    "sliding_window_log": SlidingWindowLog,
    "sliding_window_counter": SlidingWindowCounter,
    "gcra": GCRA,
}
