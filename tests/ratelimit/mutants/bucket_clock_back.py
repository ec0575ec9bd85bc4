"""Token bucket that trusts the clock to move forward: the refill is ``(now - last) * rate``, without
``max(0, ...)``. When the clock steps back (an NTP correction) the bucket loses tokens it had, and
a well-behaved client is rejected. Decisions are right while time only moves forward.
Expected to fail: the hidden reference comparison (its scenarios step the clock back).
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
        tokens = min(float(self.capacity), tokens + (now - last) * self.rate)
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
