"""Lab 01 figures: Redis decision throughput vs the `limits` library, sliding-counter error, middleware latency.

``syslab bench ratelimit [--quick]`` runs ``run(quick)``. Three parts, each with a baseline measured
in the same run:

1. **Decisions per second** of our six Redis/Lua algorithms (server time, one client, one thread)
   on a throwaway ``redis-server``, against the `limits` library on the same server, measured in
   alternating rounds (ours, limits, limits, ours, ...) and reported as medians. Our fixed window,
   sliding window log and sliding window counter meet limits' ``FixedWindowRateLimiter``,
   ``MovingWindowRateLimiter`` and ``SlidingWindowCounterRateLimiter``; limits has no token bucket,
   leaky bucket or GCRA, so those are measured against limits' fixed window, the cheapest decision
   the library offers (one ``INCRBY``): their figure asks what the richer algorithm costs over it.
   Where limits has the same algorithm there is a second baseline, *with header data*: limits'
   ``hit`` plus ``get_window_stats`` (a second round trip), which is what a middleware that sends
   ``X-RateLimit-Remaining``/``-Reset`` needs; our one script returns both. The issue's target,
   ratio >= 1.0, applies to both; the others are reported without a target.
   Two workloads: one hot key (limit 100/min, so after the first 100 nearly every decision is a
   rejection) and many keys visited in turn (each sees only a few hits: nearly all admissions).
2. **Approximation error** of the sliding window counter against the exact sliding window log, in
   memory on a ManualClock, on bursty gamma (cv 3) traffic. *Users*: many keys whose mean rates are
   0.1x to 1x the limit, so only their bursts meet it. Two ways of counting, both as % of all
   requests: *independent runs* (Cloudflare's method: both limiters see the same offered stream, each
   keeps its own state, and their decisions on each request are compared; after the first
   disagreement the states differ, so errors can compound or cancel), and *same history* (at each
   request, would an exact log holding exactly the requests the counter admitted so far decide the
   same? this isolates the estimate's own error). *Floods*: keys at 1x to 4x the limit, where which
   member of a flood gets in is arbitrary for any limiter, so we compare how much gets in: total
   admitted beyond the exact log, and the most admitted in any sliding window. The baseline is the
   fixed window under the same comparison. Cloudflare reports 0.003% wrong decisions on real traffic,
   where nearly every source is far below its limit; this trace is much harder.
3. **Added latency of the middleware**: the demo API bare (``build_api``) and wrapped
   (``create_app``), both on an in-memory SQLite catalogue, called in-process through a direct ASGI
   harness, requests interleaved across the apps; counters on the real Redis server and on fakeredis.
   The rule set is the default one with its limits raised so nothing is rejected: each
   ``GET /api/items`` checks three rules (per-user token bucket, per-IP sliding counter, global fixed
   window), all in one EVALSHA (the engine batches a request's rules into one script). Added
   latency = percentile(with) - percentile(bare).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections import deque

import numpy as np

from lab_core.bench import (
    Figure,
    asgi_call,
    asgi_get,
    interleaved,
    machine_note,
    median,
    redis_server,
    without_redis_url,
)
from lab_core.ratelimit import (
    REDIS_ALGORITHMS,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    create_app,
    default_rules,
)
from lab_core.ratelimit.demo import Catalogue, build_api
from lab_core.sim import ManualClock, arrivals, percentiles, rng, sliding_max_count
from lab_core.store import redis_client

LIMIT, PERIOD = 100, 60.0  # throughput: 100 per minute, the same item for both libraries
SEED = 7


# ----------------------------------------------------------------------------- 1. decisions per second


def _throughput(url: str, quick: bool) -> list[Figure]:
    import limits
    from limits.storage import storage_from_string
    from limits.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    machine_note("limits", limits.__version__)
    rounds, duration = (4, 0.04) if quick else (15, 0.1)  # many short alternating rounds share out drift
    n_keys = 1_000 if quick else 10_000
    storage = storage_from_string(url)
    item = limits.parse(f"{LIMIT}/minute")
    assert item.amount == LIMIT and item.get_expiry() == PERIOD
    fixed = FixedWindowRateLimiter(storage)
    equivalents = {
        "fixed_window": ("FixedWindowRateLimiter", fixed),
        "sliding_window_log": ("MovingWindowRateLimiter", MovingWindowRateLimiter(storage)),
        "sliding_window_counter": ("SlidingWindowCounterRateLimiter", SlidingWindowCounterRateLimiter(storage)),
    }
    client = redis_client(url)  # the project's client, as the rules engine uses it (decode_responses=True)
    many = [f"user{i}" for i in range(n_keys)]
    workloads = [("1 hot key", ["hot"]), (f"{n_keys // 1000}k keys", many)]
    figures = []
    for algorithm, cls in REDIS_ALGORITHMS.items():
        ours = cls(LIMIT, PERIOD, client=client, prefix="bench")
        equivalent = algorithm in equivalents
        their_name, theirs = equivalents.get(algorithm, ("FixedWindowRateLimiter", fixed))
        for label, keys in workloads:
            ours_keys, their_keys = itertools.cycle(keys), itertools.cycle(keys)
            tag = f"vs-{algorithm}"  # limits' keys for each comparison kept apart

            def ours_decide(ours=ours, it=ours_keys) -> object:
                return ours.acquire(next(it))

            def their_decide(theirs=theirs, it=their_keys, tag=tag) -> object:
                return theirs.hit(item, tag, next(it))

            # A middleware also needs remaining/reset for its headers: our Decision carries them,
            # limits needs a second call (get_window_stats), i.e. a second round trip.
            def their_decide_with_headers(theirs=theirs, it=their_keys, tag=tag) -> object:
                key = next(it)
                return theirs.hit(item, tag, key), theirs.get_window_stats(item, tag, key)

            contenders = {"ours": ours_decide, "limits": their_decide}
            if equivalent:
                contenders["limits+stats"] = their_decide_with_headers
            ops = interleaved(contenders, rounds=rounds, duration=duration)
            suffix = "" if equivalent else " (limits has none: vs its fixed window)"
            figures.append(
                Figure(
                    name=f"{algorithm} decisions/s, {label}{suffix}",
                    value=median(ops["ours"]),
                    unit="decisions/s",
                    baseline=f"limits {their_name}",
                    baseline_value=median(ops["limits"]),
                    target=">= 1.0" if equivalent else None,  # the issue sets >= 1.0 against an equivalent only
                )
            )
            if equivalent:
                figures.append(
                    Figure(
                        name=f"{algorithm} decisions/s with header data, {label}",
                        value=median(ops["ours"]),
                        unit="decisions/s",
                        baseline=f"limits {their_name} hit + get_window_stats",
                        baseline_value=median(ops["limits+stats"]),
                        target=">= 1.0",
                    )
                )
    client.close()
    return figures


# ----------------------------------------------------------------------------- 2. approximation error

ERR_LIMIT, ERR_PERIOD = 60, 60.0  # 60 per minute: the per-request comparison's limit


def _trace(n_keys: int, duration: float, lo: float, hi: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Merged gamma (cv 3) arrivals of ``n_keys`` keys: (times, key index).

    Each key's mean rate is ``m * limit/period`` with ``m`` log-uniform in ``[lo, hi]``.
    """
    g = rng(seed)
    multipliers = np.exp(g.uniform(math.log(lo), math.log(hi), size=n_keys))
    streams = [
        arrivals.gamma(ERR_LIMIT / ERR_PERIOD * m, duration, cv=3.0, seed=seed + 1 + i)
        for i, m in enumerate(multipliers)
    ]
    times = np.concatenate(streams)
    keys = np.repeat(np.arange(n_keys), [len(s) for s in streams])
    order = np.argsort(times, kind="stable")
    return times[order], keys[order]


@dataclasses.dataclass
class _Tally:
    requests: int
    wrong: dict[tuple[str, str, str], int]  # (limiter, "indep"|"same", "allowed"|"rejected") -> count
    admitted: dict[str, list[list[float]]]  # limiter -> key -> admitted times ("log" included)

    def pct(self, limiter: str, how: str, kind: str) -> float:
        return 100.0 * self.wrong[(limiter, how, kind)] / self.requests

    def total(self, limiter: str) -> int:
        return sum(len(ts) for ts in self.admitted[limiter])

    def worst(self, limiter: str) -> float:
        """Most admitted in any ``ERR_PERIOD`` window, over all keys, as a multiple of the limit."""
        return max(sliding_max_count(np.asarray(ts), ERR_PERIOD) for ts in self.admitted[limiter]) / ERR_LIMIT


def _replay(times: np.ndarray, key_idx: np.ndarray, n_keys: int) -> _Tally:
    """Offer one stream to an exact log, a sliding counter and a fixed window (each with its own state).

    Per request and per approximate limiter, two comparisons: *indep*, its decision against the
    exact log's on the same request (Cloudflare's method); *same*, its decision against what an
    exact log holding exactly the requests this limiter admitted so far would decide.
    """
    limit, period = ERR_LIMIT, ERR_PERIOD
    names = [f"k{i}" for i in range(n_keys)]
    clock = ManualClock()
    exact = SlidingWindowLog(limit, period, clock=clock)
    approx = {
        "counter": SlidingWindowCounter(limit, period, clock=clock),
        "fixed": FixedWindow(limit, period, clock=clock),
    }
    history = {a: [deque() for _ in range(n_keys)] for a in approx}
    admitted: dict[str, list[list[float]]] = {a: [[] for _ in range(n_keys)] for a in ("log", *approx)}
    wrong = {(a, how, kind): 0 for a in approx for how in ("indep", "same") for kind in ("allowed", "rejected")}
    for t, k in zip(times.tolist(), key_idx.tolist()):
        clock.set(t)
        key = names[k]
        log_allowed = exact.acquire(key).allowed
        if log_allowed:
            admitted["log"][k].append(t)
        for a, limiter in approx.items():
            past = history[a][k]
            while past and past[0] <= t - period:  # the log's window is (t - period, t]
                past.popleft()
            exact_allowed = len(past) + 1 <= limit
            allowed = limiter.acquire(key).allowed
            if allowed:
                past.append(t)
                admitted[a][k].append(t)
            if allowed != log_allowed:
                wrong[(a, "indep", "allowed" if allowed else "rejected")] += 1
            if allowed != exact_allowed:
                wrong[(a, "same", "allowed" if allowed else "rejected")] += 1
    return _Tally(len(times), wrong, admitted)


def _approximation(quick: bool) -> list[Figure]:
    duration = 300.0 if quick else 900.0
    n_users, n_floods = (60, 10) if quick else (400, 50)
    # Users: bursty keys whose mean rate is 0.1x to 1x the limit; bursts push them over it now and
    # then, which is where an approximation can decide wrongly. Per-request agreement is only a
    # fair question here: against a flood (1x-4x the limit) any two limiters, exact ones included,
    # admit different members of the flood, so for floods we compare how much gets in instead.
    users = _replay(*_trace(n_users, duration, 0.1, 1.0, SEED), n_users)
    floods = _replay(*_trace(n_floods, duration, 1.0, 4.0, SEED + 10_000), n_floods)
    label = {"indep": "independent runs (Cloudflare)", "same": "same history"}
    where = f"{n_users} users at 0.1-1x, {users.requests:,} req"
    figures = [
        Figure(
            name=f"sliding counter wrongly {kind} vs exact log, {label[how]}; {where}",
            value=users.pct("counter", how, kind),
            unit="% of requests",
            baseline="fixed_window, same comparison",
            baseline_value=users.pct("fixed", how, kind),
        )
        for how in ("indep", "same")
        for kind in ("allowed", "rejected")
    ]
    flood = f"{n_floods} floods at 1-4x, {floods.requests:,} req"
    excess = {a: 100.0 * (floods.total(a) - floods.total("log")) / floods.total("log") for a in ("counter", "fixed")}
    figures += [
        Figure(
            name=f"sliding counter admitted beyond exact log; {flood}",
            value=excess["counter"],
            unit="% of log's",
            baseline="fixed_window, same trace",
            baseline_value=excess["fixed"],
        ),
        Figure(
            name=f"sliding counter most admitted in any {ERR_PERIOD:g} s; {flood}",
            value=floods.worst("counter"),
            unit="x limit",
            baseline="fixed_window, same trace",
            baseline_value=floods.worst("fixed"),
        ),
    ]
    return figures


# ----------------------------------------------------------------------------- 3. middleware latency


async def _latencies(apps: dict, n: int, warmup: int) -> dict[str, list[float]]:
    """Microseconds per request for each app; every iteration calls each app once, in rotating order."""
    out: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    clock = time.perf_counter_ns
    for i in range(warmup + n):
        scope_args = ("/api/items", {"X-User": f"user{i % 50}"})
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            scope = asgi_get(*scope_args)
            t0 = clock()
            status = await asgi_call(apps[name], scope)
            took = clock() - t0
            if status != 200:
                raise RuntimeError(
                    f"{name}: GET /api/items answered {status}; the benchmark measures admitted requests"
                )
            if i >= warmup:
                out[name].append(took / 1000.0)
    return out


def _middleware(url: str, quick: bool) -> list[Figure]:
    n, warmup = (300, 50) if quick else (3000, 200)
    rules = [dataclasses.replace(r, limit=10**9, burst=10**9 if r.burst else None) for r in default_rules()]
    with without_redis_url():
        apps = {
            "bare": build_api(Catalogue(), rules),
            "redis": create_app(rules, redis_url=url),
            "fakeredis": create_app(rules),
        }
    lat = asyncio.run(_latencies(apps, n, warmup))
    qs = {name: percentiles(v, (50, 99)) for name, v in lat.items()}
    figures = []
    for store, desc in (("redis", "real Redis"), ("fakeredis", "fakeredis")):
        for p in ("p50", "p99"):
            figures.append(
                Figure(
                    name=f"middleware added {p}, {desc} (3 rules, one script), {n:,} requests",
                    value=qs[store][p] - qs["bare"][p],
                    unit="us",
                    baseline=f"bare demo API {p}",
                    baseline_value=qs["bare"][p],
                )
            )
    return figures


# ----------------------------------------------------------------------------- entry point


def run(quick: bool) -> list[Figure]:
    """Every figure of the lab (quick: small sizes, well under 30 s)."""
    figures = _approximation(quick)  # pure Python first: no server needed
    with redis_server() as url:
        figures = _throughput(url, quick) + figures + _middleware(url, quick)
    return figures
