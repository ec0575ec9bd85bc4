"""The seam every rate-limiting algorithm (reference or student) plugs into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Decision:
    """What a limiter says about one request.

    ``remaining`` is the whole number of units left after this request; ``reset_after`` the
    seconds until the key is back to its full quota; ``retry_after`` the seconds until a request
    of the same cost could pass (0 when allowed); ``delay`` the seconds a shaping limiter (leaky
    bucket as a queue) holds an admitted request before releasing it.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float = 0.0
    delay: float = 0.0


@runtime_checkable
class RateLimiter(Protocol):
    """``acquire`` asks for ``cost`` units on ``key`` and records them if allowed.

    Implementations take ``(limit, period, *, clock, burst=None)`` in their constructor:
    ``limit`` units per ``period`` seconds, ``burst`` the largest amount admitted at once where
    the algorithm has such a notion (buckets, GCRA).
    """

    limit: int
    period: float

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Decide on one request of ``cost`` units for ``key``."""
        ...
