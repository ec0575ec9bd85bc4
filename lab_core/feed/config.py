"""The feed's tunables in one dataclass that refuses bad values on construction, naming the field."""

from __future__ import annotations

import math
from dataclasses import dataclass


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"FeedConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class FeedConfig:
    """Celebrity threshold, timeline cap, post size, activity window, page sizes and fan-out worker settings."""

    celebrity_threshold: int = 1000
    timeline_length: int = 800
    max_post_chars: int = 280
    active_window: float = 14 * 86400.0
    default_page_size: int = 20
    max_page_size: int = 100
    fanout_batch: int = 100
    claim_idle_ms: int = 5000

    def __post_init__(self) -> None:
        for name in (
            "celebrity_threshold",
            "timeline_length",
            "max_post_chars",
            "default_page_size",
            "max_page_size",
            "fanout_batch",
            "claim_idle_ms",
        ):
            _positive_int(name, getattr(self, name))
        w = self.active_window
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"FeedConfig.active_window must be a positive number of seconds, got {w!r}")
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"FeedConfig.default_page_size ({self.default_page_size}) must not exceed "
                f"max_page_size ({self.max_page_size})"
            )
