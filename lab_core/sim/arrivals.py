"""Arrival processes: sorted arrays of arrival times (seconds) for driving systems and simulations.

Every generator returns a sorted 1-D ``float64`` numpy array. Random ones take ``seed`` and draw
only through :func:`lab_core.sim.rng.rng`, so a seed gives the same stream on every machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable
from inspect import isgenerator
from typing import Any

import numpy as np
import pandas as pd
import simpy

from lab_core.sim.rng import rng

__all__ = [
    "poisson",
    "gamma",
    "on_off",
    "diurnal",
    "uniform",
    "burst",
    "trace",
    "merge",
    "drive",
]


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _positive(name: str, value: float) -> float:
    v = _finite(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _non_negative(name: str, value: float) -> float:
    v = _finite(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


def poisson(rate: float, duration: float, *, seed: int | None = None) -> np.ndarray:
    """Homogeneous Poisson arrivals at ``rate`` per second in ``[0, duration)``."""
    rate = _positive("rate", rate)
    duration = _positive("duration", duration)
    g = rng(seed)
    # Given the count, Poisson arrival times are i.i.d. uniform: one vectorised draw.
    n = g.poisson(rate * duration)
    return np.sort(g.uniform(0.0, duration, size=n))


def gamma(rate: float, duration: float, *, cv: float = 1.0, seed: int | None = None) -> np.ndarray:
    """Renewal arrivals with gamma gaps of mean ``1/rate`` and coefficient of variation ``cv``.

    ``cv=1`` is Poisson, ``cv>1`` bursty, ``cv<1`` regular, ``cv=0`` exactly periodic; the first
    arrival comes one gap after 0.
    """
    rate = _positive("rate", rate)
    duration = _positive("duration", duration)
    cv = _non_negative("cv", cv)
    if cv == 0:
        # Multiply integers instead of summing gaps so periodic times carry no rounding drift.
        n = math.ceil(rate * duration) + 1
        times = np.arange(1, n + 1, dtype=np.float64) / rate
        return times[times < duration]
    shape = 1.0 / cv**2
    scale = 1.0 / (rate * shape)
    g = rng(seed)
    expected = rate * duration
    chunk = int(expected + 6 * cv * math.sqrt(expected) + 16)
    parts: list[np.ndarray] = []
    last = 0.0
    while last < duration:
        times = last + np.cumsum(g.gamma(shape, scale, size=chunk))
        parts.append(times)
        last = float(times[-1])
    times = np.concatenate(parts)
    return times[times < duration]


def on_off(
    rate_on: float,
    on: float,
    off: float,
    duration: float,
    *,
    rate_off: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """Poisson at ``rate_on`` for ``on`` seconds, then ``rate_off`` for ``off`` seconds, repeating."""
    rate_on = _positive("rate_on", rate_on)
    on = _positive("on", on)
    off = _non_negative("off", off)
    duration = _positive("duration", duration)
    rate_off = _non_negative("rate_off", rate_off)
    period = on + off
    g = rng(seed)

    def phase(rate: float, length: float, offset: float) -> np.ndarray:
        # Generate on the concatenated "phase-only" time axis, then map back to real time,
        # so the cost is the number of arrivals, not the number of cycles.
        if rate == 0 or length == 0:
            return _empty()
        full, rem = divmod(duration, period)
        total = full * length + min(length, max(0.0, rem - offset))
        if total <= 0:
            return _empty()
        u = g.uniform(0.0, total, size=g.poisson(rate * total))
        cycle = np.floor(u / length)
        return cycle * period + offset + (u - cycle * length)

    times = np.concatenate([phase(rate_on, on, 0.0), phase(rate_off, off, on)])
    times.sort()
    return times[times < duration]


def diurnal(
    mean_rate: float,
    duration: float,
    *,
    period: float = 86400.0,
    peak_to_mean: float = 2.0,
    phase: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """Poisson with rate ``mean_rate*(1 + (peak_to_mean-1)*sin(2*pi*t/period + phase))``, by thinning."""
    mean_rate = _positive("mean_rate", mean_rate)
    duration = _positive("duration", duration)
    period = _positive("period", period)
    peak_to_mean = _finite("peak_to_mean", peak_to_mean)
    if peak_to_mean < 1:
        raise ValueError(f"peak_to_mean must be >= 1, got {peak_to_mean!r}")
    phase = _finite("phase", phase)
    amplitude = peak_to_mean - 1.0
    peak = mean_rate * peak_to_mean
    g = rng(seed)
    n = g.poisson(peak * duration)
    candidates = np.sort(g.uniform(0.0, duration, size=n))
    rate = mean_rate * (1.0 + amplitude * np.sin(2.0 * np.pi * candidates / period + phase))
    # Clipping only matters for peak_to_mean > 2, where the sine would go below zero.
    keep = g.uniform(0.0, peak, size=n) < np.clip(rate, 0.0, None)
    return candidates[keep]


def uniform(rate: float, duration: float, *, offset: float = 0.0) -> np.ndarray:
    """Evenly spaced arrivals ``offset, offset + 1/rate, ...`` below ``duration`` (no randomness)."""
    rate = _positive("rate", rate)
    duration = _positive("duration", duration)
    offset = _non_negative("offset", offset)
    n = max(0, math.ceil((duration - offset) * rate) + 1)
    times = offset + np.arange(n, dtype=np.float64) / rate
    return times[times < duration]


def burst(at: float, count: int, *, spread: float = 0.0) -> np.ndarray:
    """``count`` arrivals at ``at``, or evenly spaced over ``[at, at + spread)`` when ``spread > 0``."""
    at = _non_negative("at", at)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    spread = _non_negative("spread", spread)
    return at + np.arange(int(count), dtype=np.float64) * (spread / count if count else 0.0)


def trace(
    source: Iterable[float] | str | os.PathLike[str],
    *,
    column: str = "time",
    duration: float | None = None,
) -> np.ndarray:
    """Replay recorded arrival times from a sequence or a CSV file's ``column``, sorted, unshifted."""
    from_csv = isinstance(source, (str, os.PathLike))
    if from_csv:
        frame = pd.read_csv(source)
        if column not in frame.columns:
            raise ValueError(f"column {column!r} not in {os.fspath(source)!r}; columns are {list(frame.columns)}")
        raw = frame[column].to_numpy(dtype=object)
    else:
        raw = np.asarray(list(source), dtype=object)

    def where(i: int) -> str:
        return f"line {i + 2} of {os.fspath(source)!r}" if from_csv else f"index {i}"

    numeric = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(numeric)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"trace: non-numeric or non-finite time {raw[i]!r} at {where(i)}")
    if (numeric < 0).any():
        i = int(np.argmax(numeric < 0))
        raise ValueError(f"trace: negative time {float(numeric[i])!r} at {where(i)}")
    times = np.sort(numeric)
    if duration is not None:
        times = times[times < _positive("duration", duration)]
    return times


def merge(*streams: Iterable[float]) -> np.ndarray:
    """All arrivals of several streams in one sorted array."""
    if not streams:
        return _empty()
    return np.sort(np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in streams]))


def drive(env: simpy.Environment, times: Iterable[float], handler: Callable[[float], Any]) -> simpy.Process:
    """Start a simpy process that calls ``handler(t)`` at each arrival time ``t`` (env time).

    A handler that returns a generator is started as its own process, so one slow request
    never holds back the next arrival.
    """
    arrivals = np.sort(np.asarray(list(times), dtype=np.float64))
    if arrivals.size and not np.isfinite(arrivals).all():
        raise ValueError("drive: times must be finite")
    if arrivals.size and arrivals[0] < env.now:
        raise ValueError(f"drive: first time {arrivals[0]!r} is before env.now={env.now!r}")

    def run() -> Generator[simpy.Event, Any, None]:
        for t in arrivals.tolist():
            if t > env.now:
                yield env.timeout(t - env.now)
            result = handler(t)
            if isgenerator(result):
                env.process(result)

    return env.process(run())
