"""Graders for Lab 01's notebook, so that its test cells stay one line long.

* :func:`compare_with_reference` replays generated request sequences (hypothesis) against the
  student's class and the reference under :class:`~lab_core.sim.ManualClock` and stops at the
  first differing decision, with a readable counterexample.
* :func:`compare_redis_with_reference`, :func:`check_redis_atomic`,
  :func:`check_redis_clock_skew` and :func:`check_redis_ttl` check a Redis (Lua) limiter: same
  decisions as the reference, exactly ``limit`` admitted under a thread stampede, one time base
  for every API server (Redis ``TIME``), and keys that expire.

Why the generated numbers are what they are: limits 1..20, periods in {1, 2, 4, 8} s, bursts
1..20 and times on a 1/16 s grid make every rate, refill, weight and token count a dyadic
rational, which floating point represents exactly whatever order a formula is written in. So
``allowed`` and ``remaining`` must match the reference *exactly*; only the seconds reported in
``retry_after`` / ``reset_after`` (a division by ``limit``) get a 1e-9 tolerance.

Clocks step backwards in the token bucket's scenarios (an NTP correction, or a Redis failover to a
replica whose clock is behind): the refill must never go negative, so a backward step leaves the
tokens as they were. The windows' references have no defined answer for it, so their scenarios
only move forward.

Every check raises ``AssertionError`` with an explanation, except that a ``NotImplementedError``
from a blank exercise is let through unchanged.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from lab_core import grading_kit  # before hypothesis: sets its cache folder

# isort: split

from hypothesis import Verbosity, given, settings
from hypothesis import strategies as st

from lab_core.ratelimit import memory
from lab_core.ratelimit.protocol import Decision
from lab_core.sim.clock import Clock, ManualClock
from lab_core.store import redis_client

__all__ = [
    "Scenario",
    "check_redis_atomic",
    "check_redis_clock_skew",
    "check_redis_ttl",
    "client_clock_skew",
    "compare_redis_with_reference",
    "compare_with_reference",
    "scenarios",
]

PERIODS = (1, 2, 4, 8)
KEYS = ("alice", "bob", "carol")
TICKS_PER_SECOND = 16  # times are multiples of 1/16 s: exact in binary floating point
TOLERANCE = 1e-9

Timing = Literal["exact", "honest"]
Factory = Callable[[int, float, Clock, "int | None"], Any]


@dataclass(frozen=True)
class Scenario:
    """One generated test case: a limiter's parameters and a sequence of requests.

    ``requests`` holds ``(gap, key, cost)``: the request comes ``gap`` seconds after the
    previous one (after ``start`` for the first).
    """

    limit: int
    period: float
    burst: int | None
    start: float
    requests: tuple[tuple[float, str, int], ...]

    @property
    def capacity(self) -> int:
        """The most units a key can spend at once."""
        return self.burst or self.limit

    def times(self) -> list[float]:
        """The clock reading at each request."""
        out, t = [], self.start
        for gap, _, _ in self.requests:
            t += gap
            out.append(t)
        return out

    def header(self) -> str:
        """One line with the limiter's parameters."""
        burst = "" if self.burst is None else f", burst={self.burst}"
        return f"limiter({self.limit}, {self.period:g}{burst}), clock starting at {self.start:g} s"


class SteppingClock(ManualClock):
    """A grader's clock that may also step backwards (a negative ``advance``), as real clocks do."""

    def advance(self, seconds: float) -> float:
        """Move by ``seconds``, either way, and return the new time."""
        with self._lock:
            self._t += seconds
            return self._t


BACK = 4.0  # the largest backward step, in seconds; starts are shifted by twice it so time stays positive


@st.composite
def scenarios(draw: st.DrawFn, with_burst: bool = False, max_requests: int = 40, backwards: bool = False) -> Scenario:
    """Hypothesis strategy for :class:`Scenario` (bursts only where the algorithm has one; steps
    back in time only when ``backwards``)."""
    limit = draw(st.integers(1, 20))
    period = float(draw(st.sampled_from(PERIODS)))
    burst = draw(st.one_of(st.none(), st.integers(1, 20))) if with_burst else None
    capacity = burst or limit
    # Start on or off a window edge, near zero or at a large epoch-like time.
    start = draw(st.integers(0, 8 * TICKS_PER_SECOND)) / TICKS_PER_SECOND + draw(st.sampled_from([0.0, 2.0**20]))
    steps = [
        st.just(0),  # simultaneous requests
        st.integers(1, TICKS_PER_SECOND),  # within a second
        st.integers(TICKS_PER_SECOND, 20 * TICKS_PER_SECOND),  # across windows, up to 20 s
    ]
    if backwards:
        start += 2 * BACK
        steps.append(st.integers(-int(BACK) * TICKS_PER_SECOND, -1))  # the clock steps back
    gap = st.one_of(*steps).map(lambda ticks: ticks / TICKS_PER_SECOND)
    request = st.tuples(gap, st.sampled_from(KEYS), st.integers(1, min(3, capacity)))
    requests = draw(st.lists(request, min_size=1, max_size=max_requests))
    return Scenario(limit, period, burst, start, tuple(requests))


def _fmt(d: Any) -> str:
    if d is None:
        return "-"
    try:
        verdict = "allowed " if d.allowed else "REJECTED"
        return (
            f"{verdict} remaining={d.remaining} limit={d.limit} "
            f"retry_after={float(d.retry_after):.6g} reset_after={float(d.reset_after):.6g}"
        )
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        return repr(d)


def _table(scenario: Scenario, wanted: list[Any], got: list[Any], name: str, note: str) -> str:
    lines = [
        f"{name} disagrees with the reference. {note}",
        f"  {scenario.header()}; requests in order:",
        f"  {'#':>3} {'t (s)':>10} {'key':<6} {'cost':>4}  reference  |  yours",
    ]
    times = scenario.times()
    for i, (w, g) in enumerate(zip(wanted, got)):
        _, key, cost = scenario.requests[i]
        mark = "   <-- first difference" if i == len(got) - 1 else ""
        lines.append(f"  {i:>3} {times[i]:>10.4f} {key:<6} {cost:>4}  {_fmt(w)}  |  {_fmt(g)}{mark}")
    return "\n".join(lines)


def _difference(got: Any, want: Decision, timing: Timing) -> str | None:
    """What is wrong with ``got`` (None when it is acceptable)."""
    for attr in ("allowed", "remaining", "limit", "retry_after", "reset_after"):
        if not hasattr(got, attr):
            return f"acquire() must return a Decision; got {got!r} (no attribute {attr!r})"
    if bool(got.allowed) != want.allowed:
        return f"allowed should be {want.allowed}"
    if got.remaining != want.remaining:
        return f"remaining should be {want.remaining}, got {got.remaining!r}"
    if got.limit != want.limit:
        return f"limit should be {want.limit} (the capacity), got {got.limit!r}"
    retry, reset = float(got.retry_after), float(got.reset_after)
    if want.allowed and retry != 0:
        return f"retry_after should be 0 for an allowed request, got {retry!r}"
    if timing == "exact":
        if abs(retry - want.retry_after) > TOLERANCE:
            return f"retry_after should be {want.retry_after!r} s, got {retry!r}"
        if abs(reset - want.reset_after) > TOLERANCE:
            return f"reset_after should be {want.reset_after!r} s, got {reset!r}"
    return None


def _call(limiter: Any, key: str, cost: int, where: str) -> Any:
    try:
        return limiter.acquire(key, cost)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        raise AssertionError(f"acquire({key!r}, {cost}) raised {exc!r} {where}") from exc


def _build(make: Factory, limit: int, period: float, clock: Clock, burst: int | None) -> Any:
    try:
        return make(limit, period, clock, burst)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a student's constructor raises is the failure reported
        raise AssertionError(
            f"constructing the limiter with limit={limit}, period={period:g}, burst={burst} raised {exc!r}"
        ) from exc


def _replay(scenario: Scenario, make: Factory, upto: int) -> tuple[Any, ManualClock]:
    """A fresh limiter that has seen requests ``0..upto`` of ``scenario``."""
    clock = SteppingClock(scenario.start)
    limiter = _build(make, scenario.limit, scenario.period, clock, scenario.burst)
    for gap, key, cost in scenario.requests[: upto + 1]:
        clock.advance(gap)
        _call(limiter, key, cost, "while replaying")
    return limiter, clock


def _run(scenario: Scenario, make: Factory, reference_cls: type, timing: Timing, name: str) -> None:
    clock, ref_clock = SteppingClock(scenario.start), SteppingClock(scenario.start)
    kwargs = {"burst": scenario.burst} if scenario.burst else {}
    reference = reference_cls(scenario.limit, scenario.period, clock=ref_clock, **kwargs)
    student = _build(make, scenario.limit, scenario.period, clock, scenario.burst)
    wanted: list[Decision] = []
    got: list[Any] = []
    for i, (gap, key, cost) in enumerate(scenario.requests):
        clock.advance(gap)
        ref_clock.advance(gap)
        want = reference.acquire(key, cost)
        mine = _call(
            student, key, cost, f"on request #{i} of:\n  {scenario.header()}, requests {scenario.requests[: i + 1]}"
        )
        wanted.append(want)
        got.append(mine)
        problem = _difference(mine, want, timing)
        if problem is None and timing == "honest" and not mine.allowed:
            problem = _dishonest_retry(scenario, make, i, float(mine.retry_after))
        if problem is not None:
            raise AssertionError(_table(scenario, wanted, got, name, f"On request #{i}: {problem}."))


def _dishonest_retry(scenario: Scenario, make: Factory, i: int, retry: float) -> str | None:
    """None if waiting ``retry`` seconds (and sending nothing else) lets request ``i`` through."""
    if not (retry > 0 and math.isfinite(retry)):
        return f"a rejected request needs retry_after > 0, got {retry!r}"
    if retry > 2 * scenario.period + TOLERANCE:
        return f"retry_after={retry!r} s is longer than two periods ({2 * scenario.period:g} s): the window has surely moved on by then"
    limiter, clock = _replay(scenario, make, i)
    clock.advance(retry + TOLERANCE)
    _, key, cost = scenario.requests[i]
    again = _call(limiter, key, cost, "when retrying after retry_after")
    if not again.allowed:
        return (
            f"retry_after={retry!r} s is not honest: the same request, retried {retry!r} s later with no "
            f"other traffic, is rejected again ({_fmt(again)})"
        )
    return None


def _hypothesis_settings(max_examples: int) -> settings:
    # The shared grading settings, quiet: the counterexample table says more than hypothesis' log.
    return settings(grading_kit.hypothesis_settings(max_examples), verbosity=Verbosity.quiet)


def compare_with_reference(
    student_cls: Callable[..., Any],
    reference_cls: type,
    *,
    max_examples: int = 200,
    burst: bool | None = None,
    timing: Timing = "exact",
    make: Factory | None = None,
    backwards: bool | None = None,
) -> None:
    """Assert that ``student_cls`` decides exactly like ``reference_cls`` on generated sequences.

    ``burst=None`` draws bursts when the reference algorithm has one (``uses_burst``).
    ``timing="exact"`` also compares ``retry_after`` and ``reset_after`` (within 1e-9 s);
    ``timing="honest"`` only requires that a rejected request's ``retry_after`` is positive, at
    most two periods, and enough: the same request retried that much later passes.
    ``make(limit, period, clock, burst)`` builds the student's limiter (default: the
    constructor ``student_cls(limit, period, clock=clock[, burst=burst])``). ``backwards``: let the
    clock step back (default: for the token bucket, whose refill has a defined guard).
    """
    with_burst = bool(getattr(reference_cls, "uses_burst", False)) if burst is None else burst
    back = reference_cls is memory.TokenBucket if backwards is None else backwards
    name = getattr(student_cls, "__name__", repr(student_cls))
    if make is None:

        def make(limit: int, period: float, clock: Clock, b: int | None) -> Any:
            return student_cls(limit, period, clock=clock, **({"burst": b} if b else {}))

    # A blank exercise fails here, plainly, before hypothesis starts generating.
    smoke = Scenario(5, 1.0, None, 0.0, (((0.0, "smoke", 1),)))
    _run(smoke, make, reference_cls, timing, name)

    @_hypothesis_settings(max_examples)
    @given(scenarios(with_burst=with_burst, backwards=back))
    def same_decisions(scenario: Scenario) -> None:
        _run(scenario, make, reference_cls, timing, name)

    grading_kit.run_property(same_decisions)


# --------------------------------------------------------------------------- Redis checks


class _Namespaced:
    """Puts every key of one generated example under a fresh prefix, so examples never share state."""

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.space = uuid.uuid4().hex[:12]

    def acquire(self, key: str, cost: int = 1) -> Any:
        return self.limiter.acquire(f"{self.space}-{key}", cost)


def compare_redis_with_reference(
    student_cls: Callable[..., Any],
    reference_cls: type = memory.TokenBucket,
    *,
    max_examples: int = 60,
    burst: bool | None = None,
    timing: Timing = "exact",
) -> None:
    """:func:`compare_with_reference` for a Redis limiter, with an injected clock, on a fresh Redis."""
    client = redis_client(fresh=True)

    def make(limit: int, period: float, clock: Clock, b: int | None) -> Any:
        kwargs = {"burst": b} if b else {}
        return _Namespaced(student_cls(limit, period, clock=clock, client=client, **kwargs))

    compare_with_reference(student_cls, reference_cls, max_examples=max_examples, burst=burst, timing=timing, make=make)


def _stampede(limiter: Any, key: str, threads: int, per_thread: int) -> tuple[list[list[Any]], list[BaseException]]:
    """``threads`` threads, released together by a barrier, each sending ``per_thread`` requests for
    ``key``: every thread's decisions, and whatever they raised."""
    barrier = threading.Barrier(threads)
    results: list[list[Any]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(per_thread):
                results[i].append(limiter.acquire(key))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    return results, errors


def check_redis_atomic(
    student_cls: Callable[..., Any],
    *,
    threads: int = 100,
    per_thread: int = 1,
    limit: int = 50,
    period: float = 3600.0,
    rounds: int = 5,
) -> None:
    """``threads`` threads, released together, hammer one key through one Redis: exactly ``limit`` pass.

    The limiter uses Redis server time (``clock=None``). The interpreter switches threads every
    microsecond during the check, so a read in Python followed by a write (two round trips)
    interleaves with other threads' and admits too much, as it would across API servers.
    """
    client = redis_client(fresh=True)
    # fakeredis creates a server's database lazily, unlocked, when a connection opens: threads that
    # open the first connections of a fresh server together can each get a database of their own.
    # One command from this thread creates it first, so every connection shares it, as on a real Redis.
    client.ping()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_no in range(rounds):
            limiter = student_cls(limit, period, client=client)
            results, errors = _stampede(limiter, f"stampede-{uuid.uuid4().hex[:12]}", threads, per_thread)
            if errors:
                if isinstance(errors[0], NotImplementedError):
                    raise errors[0]
                raise AssertionError(f"a thread's acquire() raised {errors[0]!r}") from errors[0]
            admitted = sum(bool(d.allowed) for r in results for d in r)
            if admitted < limit:
                raise AssertionError(
                    f"round {round_no + 1}: {threads} threads sent {threads * per_thread} requests at once to one new key "
                    f"of a limiter allowing {limit} per {period:g} s (capacity {limit}); only {admitted} were admitted, "
                    f"expected exactly {limit}: a fresh bucket starts full."
                )
            if admitted > limit:
                raise AssertionError(
                    f"round {round_no + 1}: {threads} threads sent {threads * per_thread} requests at once to one key "
                    f"of a limiter allowing {limit} per {period:g} s, all through one Redis; {admitted} were admitted, "
                    f"expected exactly {limit}. The read, the decision and the write must happen in one atomic "
                    "step inside Redis (one Lua script): a read in Python and a write in a second round trip let "
                    "other requests slip in between."
                )
    finally:
        sys.setswitchinterval(old)


@contextmanager
def client_clock_skew(seconds: float) -> Iterator[None]:
    """Within the block, this process's clock (``time.time``, ``time_ns``, ``monotonic``) runs ``seconds`` ahead.

    The in-process fake Redis server keeps the true time, as a real Redis on another machine
    would: only the "API server" is skewed.
    """
    real = {name: getattr(time, name) for name in ("time", "time_ns", "monotonic", "monotonic_ns")}
    server_view = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("__")})
    shimmed = [
        mod
        for name, mod in list(sys.modules.items())
        if name.split(".")[0] == "fakeredis" and getattr(mod, "time", None) is time
    ]
    for mod in shimmed:
        mod.time = server_view  # type: ignore[attr-defined]
    time.time = lambda: real["time"]() + seconds  # type: ignore[assignment]
    time.time_ns = lambda: real["time_ns"]() + int(seconds * 1e9)  # type: ignore[assignment]
    time.monotonic = lambda: real["monotonic"]() + seconds  # type: ignore[assignment]
    time.monotonic_ns = lambda: real["monotonic_ns"]() + int(seconds * 1e9)  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, fn in real.items():
            setattr(time, name, fn)
        for mod in shimmed:
            mod.time = time  # type: ignore[attr-defined]


def check_redis_clock_skew(
    student_cls: Callable[..., Any],
    *,
    limit: int = 10,
    period: float = 60.0,
    skew: float = 600.0,
    requests: int = 30,
) -> None:
    """Two API servers whose clocks are ``skew`` seconds apart share one Redis: together they admit at most ``limit``.

    Both limiters use ``clock=None`` (Redis server time). A script fed the client's clock
    would see ten minutes pass every time the requests alternate between the two servers,
    and refill the bucket each time.
    """
    client = redis_client(fresh=True)
    server_a = student_cls(limit, period, client=client)
    server_b = student_cls(limit, period, client=client)
    key = f"skew-{uuid.uuid4().hex[:12]}"
    admitted = 0
    for i in range(requests):
        if i % 2 == 0:
            d = server_a.acquire(key)
        else:
            with client_clock_skew(skew):
                d = server_b.acquire(key)
        admitted += bool(d.allowed)
    if admitted > limit:
        raise AssertionError(
            f"two API servers with clocks {skew:g} s apart sent {requests} requests, alternating, to one key of a "
            f"limiter allowing {limit} per {period:g} s (a burst of {limit} at most) on one shared Redis; "
            f"{admitted} were admitted. With clock=None the script must read Redis server time "
            "(redis.call('TIME'), as the prelude does when ARGV[1] is ''), the one clock every API server shares."
        )


def check_redis_ttl(student_cls: Callable[..., Any], *, limit: int = 5, period: float = 10.0, burst: int = 20) -> None:
    """Every key the limiter writes has a TTL long enough to outlive the state it holds: after one
    request, and after a burst of ``burst`` (larger than ``limit``: a full bucket takes
    ``burst / rate`` seconds to refill, longer than one period)."""
    client = redis_client(fresh=True)
    kwargs = {"burst": burst} if getattr(student_cls, "uses_burst", False) else {}
    limiter = student_cls(limit, period, client=client, **kwargs)
    key = f"ttl-{uuid.uuid4().hex[:12]}"
    for requests in (1, burst - 1):
        started = time.monotonic()
        decision = None
        for _ in range(requests):
            decision = limiter.acquire(key)
        _check_ttls(
            client,
            limiter,
            key,
            decision,
            (time.monotonic() - started) * 1000,
            f"after {'one request' if requests == 1 else f'a burst of {burst} requests (burst={burst}, limit={limit})'}",
        )


def _check_ttls(client: Any, limiter: Any, key: str, decision: Any, elapsed_ms: float, when: str) -> None:
    written = sorted(client.scan_iter(match=f"*{key}*"))
    listed = set(limiter.keys_for(key))
    if not written:
        raise AssertionError(f"{when} for key {key!r} no Redis key containing {key!r} exists")
    stray = [k for k in written if k not in listed]
    if stray:
        raise AssertionError(f"keys_for({key!r}) returned {sorted(listed)} but the script also wrote {stray}")
    for k in written:
        ttl_ms = client.pttl(k)
        if ttl_ms == -1:
            raise AssertionError(
                f"{when}, key {k!r} has no TTL (PTTL = -1): idle keys would stay in Redis forever. "
                "Call expire(key, seconds, period) (PEXPIRE) after writing."
            )
        if ttl_ms + elapsed_ms + 50 < decision.reset_after * 1000:
            raise AssertionError(
                f"{when}, key {k!r} expires in {ttl_ms} ms, before its state is stale (reset_after = "
                f"{decision.reset_after:g} s): the key would vanish while it still limits and the bucket would "
                "come back full. Expire after the time to refill (capacity - tokens) / rate, not after one "
                "period; PEXPIRE takes milliseconds."
            )
