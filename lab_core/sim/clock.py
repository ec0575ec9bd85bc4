"""Clocks: one protocol for wall time, simulated time and hand-driven time.

Algorithms never call ``time.time()``; they take a ``Clock`` so the same code runs live,
inside a simpy simulation and under a test that moves time by hand.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

import simpy


@runtime_checkable
class Clock(Protocol):
    """Source of the current time in seconds (float, monotonic within one clock)."""

    def now(self) -> float:
        """Current time in seconds."""
        ...


class RealClock:
    """Wall-clock time (``time.time``), so several processes share one time base."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to; thread-safe, for tests and notebooks."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time last set."""
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t: float) -> None:
        """Jump to time ``t``; going backwards is refused because real clocks used here never do."""
        with self._lock:
            if t < self._t:
                raise ValueError(f"ManualClock.set: cannot go back from {self._t} to {t}")
            self._t = float(t)

    def sleep(self, seconds: float) -> None:
        """Advance instead of blocking, so code written for ``RealClock`` runs instantly."""
        self.advance(max(0.0, seconds))


class SimClock:
    """The simulated time of a simpy environment, offset by ``start``."""

    def __init__(self, env: simpy.Environment, start: float = 0.0) -> None:
        self.env = env
        self.start = float(start)

    def now(self) -> float:
        """``start + env.now``."""
        return self.start + float(self.env.now)
