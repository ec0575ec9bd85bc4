"""Token bucket never capped at its capacity.

The refill adds ``(now - last) * rate`` without ``min(capacity, ...)``, so a key idle for an hour
banks an hour of tokens and can then burst far past ``burst``. Expected to fail: the visible test
(after a 60 s pause the bucket must hold at most 5) and the reference comparison.
"""

# %% grade_id: token_bucket
class TokenBucket:
    """Tokens refill at limit/period per second up to burst (default limit); a request spends cost tokens."""

    uses_burst = True  # tells the rules engine and the dashboard to pass `burst`

    def __init__(self, limit: int, period: float, *, clock: Clock, burst: int | None = None) -> None:
        self.limit = limit
        self.period = float(period)
        self.burst = burst
        self.clock = clock
        self.capacity = burst or limit
        self.rate = limit / self.period  # tokens per second
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, time of last refill)

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Decide on one request of `cost` units for `key` at the clock's current time."""
        now = self.clock.now()
        tokens, last = self.buckets.get(key, (float(self.capacity), now))
        tokens = tokens + max(0.0, now - last) * self.rate
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self.buckets[key] = (tokens, now)
        return Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=math.floor(tokens),
            reset_after=(self.capacity - tokens) / self.rate,
            retry_after=0.0 if allowed else (cost - tokens) / self.rate,
        )
