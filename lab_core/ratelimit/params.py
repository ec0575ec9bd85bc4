"""Validation shared by every algorithm's constructor, with messages that name the field."""

from __future__ import annotations

import math


def check_limits(limit: int, period: float, burst: int | None) -> None:
    """Raise ValueError naming the bad field when limit, period or burst is not usable."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not math.isfinite(period) or period <= 0:
        raise ValueError(f"period must be a positive number of seconds, got {period!r}")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"burst must be a positive integer or None, got {burst!r}")


def check_cost(cost: int, capacity: int) -> None:
    """Raise ValueError when ``cost`` is not a whole number of units in 1..capacity."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be a positive integer, got {cost!r}")
    if cost > capacity:
        raise ValueError(f"cost {cost} exceeds the limiter's capacity {capacity}: it could never pass")
