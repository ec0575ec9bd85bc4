"""Sliding window counter that tells a rejected client to come back when the next window starts.

Plausible, and right for a fixed window, but after the edge the current window's count becomes the
previous one with weight close to 1, so the retry is often rejected again: a dishonest
``Retry-After``. Decisions are right. Expected to fail: the reference comparison (hidden), whose
honesty check retries after ``retry_after`` seconds.
"""

# %% grade_id: sliding_window_counter
class SlidingWindowCounter:
    """Previous fixed window's count, weighted by its overlap with the sliding window, plus the current one."""

    uses_burst = False  # no burst parameter: the limit is the most one window admits

    def __init__(self, limit: int, period: float, *, clock: Clock, burst: int | None = None) -> None:
        if burst is not None:
            raise ValueError("burst does not apply to a sliding window counter")
        self.limit = limit
        self.period = float(period)
        self.clock = clock
        self.counts: dict[str, tuple[int, int, int]] = {}  # key -> (window number, prev, curr)

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Decide on one request of `cost` units for `key` at the clock's current time."""
        now = self.clock.now()
        window = math.floor(now / self.period)
        stored, prev, curr = self.counts.get(key, (window, 0, 0))
        if window == stored + 1:
            prev, curr = curr, 0  # roll: the current window becomes the previous one
        elif window != stored:
            prev, curr = 0, 0  # a whole window or more passed in silence
        start = window * self.period
        estimate = prev * (self.period - (now - start)) / self.period + curr
        allowed = estimate + cost <= self.limit
        if allowed:
            curr += cost
            estimate += cost
        self.counts[key] = (window, prev, curr)
        retry_after = 0.0
        if not allowed:
            if curr + cost <= self.limit and prev > 0:
                ready = start + self.period * (1 - (self.limit - curr - cost) / prev)
            else:
                ready = start + self.period + self.period * max(0.0, 1 - (self.limit - cost) / curr)
            retry_after = start + self.period - now  # the next window
        reset_after = start + (2 if curr else 1) * self.period - now if (curr or prev) else 0.0
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, math.floor(self.limit - estimate)),
            reset_after=reset_after,
            retry_after=retry_after,
        )
