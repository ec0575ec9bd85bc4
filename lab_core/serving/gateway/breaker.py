"""Circuit breaker: stop sending work to a replica that keeps failing, try again later.

closed --(``failure_threshold`` failures in a row, or ``trip()`` on an unhealthy engine)--> open
open --(``open_seconds`` elapsed; the next ``allow()`` takes the one trial)--> half_open
half_open --(trial succeeds)--> closed;  --(trial fails)--> open again (timer restarts)

Time comes only from the injected clock.
"""

from __future__ import annotations

import threading

from lab_core.sim.clock import Clock, RealClock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """One breaker per replica (or pool). ``allow()`` before a call; then ``record_success()``,
    ``record_failure()`` or, for a call that ended without a verdict (client gone),
    ``record_cancel()``."""

    def __init__(self, *, failure_threshold: int = 5, open_seconds: float = 10.0, clock: Clock | None = None) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a positive integer, got {failure_threshold!r}")
        if isinstance(open_seconds, bool) or not isinstance(open_seconds, (int, float)) or not open_seconds > 0:
            raise ValueError(f"open_seconds must be a positive number, got {open_seconds!r}")
        self.failure_threshold = failure_threshold
        self.open_seconds = float(open_seconds)
        self.clock = clock or RealClock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # half-open: the single trial call is out
        self.opens = 0  # how many times it has opened, for metrics
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an open breaker whose time is up reads half_open)."""
        with self._lock:
            if self._state == OPEN and self.clock.now() >= self._opened_at + self.open_seconds:
                return HALF_OPEN
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while closed."""
        return self._failures

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it would allow now)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.open_seconds - self.clock.now())

    def available(self) -> bool:
        """Whether ``allow()`` would say yes now (changes nothing)."""
        with self._lock:
            return self._available(self.clock.now())

    def _available(self, now: float) -> bool:
        if self._state == CLOSED:
            return True
        if self._state == OPEN:
            return now >= self._opened_at + self.open_seconds
        return not self._trial

    def allow(self) -> bool:
        """May a call go through now? In half-open, only the first caller gets the trial."""
        with self._lock:
            now = self.clock.now()
            if not self._available(now):
                return False
            if self._state != CLOSED:
                self._state, self._trial = HALF_OPEN, True
            return True

    def record_success(self) -> None:
        """A call worked: reset the failure count; a half-open breaker closes."""
        with self._lock:
            self._failures = 0
            if self._state == HALF_OPEN:
                self._state, self._trial = CLOSED, False

    def record_failure(self) -> None:
        """A call failed: count it while closed (open at the threshold); a failed trial re-opens."""
        with self._lock:
            if self._state == HALF_OPEN:
                self._open()
            elif self._state == CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()

    def record_cancel(self) -> None:
        """A call ended with no verdict (the client left first): a half-open trial is handed back."""
        with self._lock:
            if self._state == HALF_OPEN:
                self._trial = False

    def trip(self) -> None:
        """Open now (the engine reports itself unhealthy); restarts the open timer."""
        with self._lock:
            self._open()

    def _open(self) -> None:
        if self._state != OPEN:
            self.opens += 1
        self._state, self._opened_at, self._trial, self._failures = OPEN, self.clock.now(), False, 0
