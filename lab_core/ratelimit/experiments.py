"""What Lab 01's dashboard, notebook and benchmark run: several algorithms against one traffic
pattern, each behind a one-rule :class:`RulesEngine` whose scope (``ip`` or ``user``) keys requests
as the real gateway would, and the tidy tables the plots draw."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab_core.ratelimit.memory import ALGORITHMS
from lab_core.ratelimit.rules import Rule, RulesEngine
from lab_core.ratelimit.simulate import (
    Client,
    SimResult,
    behind_one_ip,
    boundary_attacker,
    bursty,
    simulate,
    steady,
)
from lab_core.sim import Clock, Progress, sliding_max_count, steps

PATTERNS: tuple[str, ...] = ("mix", "steady", "bursty", "boundary", "nat")
SCOPES: tuple[str, ...] = ("ip", "user")
NAT_PREFIX = "office-"
# The client whose quota a plot follows first, per pattern.
FOCUS: dict[str, str] = {
    "mix": "bursty",
    "steady": "steady",
    "bursty": "bursty",
    "boundary": "attacker",
    "nat": f"{NAT_PREFIX}0",
}
# Roughly 8 s of simulation on one core: past that a served dashboard would stall for everyone.
MAX_DECISIONS = 400_000
SUMMARY_COLUMNS = ["algorithm", "admitted", "rejected", "reject_pct", "peak_in_period", "bound", "peak_vs_bound"]


def traffic(
    pattern: str,
    *,
    rate: float,
    duration: float,
    limit: int,
    period: float,
    cv: float = 3.0,
    nat_users: int = 5,
    seed: int = 1,
) -> list[Client]:
    """The clients of a pattern: each sends ``rate`` req/s, but the attacker aims at the window edges."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    make = {
        "steady": lambda: [steady("steady", rate, duration, seed=seed)],
        "bursty": lambda: [bursty("bursty", rate, duration, cv=cv, seed=seed + 1)],
        "boundary": lambda: [boundary_attacker("attacker", limit, period, duration)],
        "nat": lambda: behind_one_ip(NAT_PREFIX, nat_users, rate, duration, seed=seed + 2),
    }
    if pattern == "mix":
        return [client for part in ("steady", "bursty", "boundary", "nat") for client in make[part]()]
    return make[pattern]()


def takes_burst(factory: Callable[..., object]) -> bool:
    """Whether to pass ``burst``: the class's ``uses_burst`` flag if it has one, else its signature."""
    flag = getattr(factory, "uses_burst", None)
    if flag is not None:
        return bool(flag)
    try:
        return "burst" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def design_bound(factory: Callable[..., object], limit: int, burst: int) -> int:
    """The most one key can pass in any period-long interval by the algorithm's own guarantee:
    ``burst + limit`` with a burst (a full bucket, then one period of refill); ``limit`` for the
    exact sliding log; ``2 * limit`` for any other window, which caps each aligned window at
    ``limit`` while an interval may span two (the fixed window's edge burst)."""
    if takes_burst(factory):
        return burst + limit
    return limit if factory is ALGORITHMS["sliding_window_log"] else 2 * limit


def engine_factory(
    factory: Callable[..., object], *, scope: str, limit: int, period: float, burst: int
) -> Callable[[Clock], RulesEngine]:
    """A one-rule engine on the simulation's clock: ``factory`` keyed by the request's ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    # A student's class stands in for the built-in one of the rule, as in the real gateway.
    name = next((n for n, cls in ALGORITHMS.items() if cls is factory), "token_bucket")
    rule = Rule(
        name="limit",
        scope=scope,
        limit=limit,
        period=period,
        algorithm=name,  # type: ignore[arg-type]
        burst=burst if takes_burst(factory) else None,
    )
    overrides = {} if ALGORITHMS.get(name) is factory else {name: factory}

    def make(clock: Clock) -> RulesEngine:
        return RulesEngine([rule], clock=clock, algorithms=overrides)  # type: ignore[arg-type]

    return make


@dataclass(frozen=True, eq=False)
class Comparison:
    """One run of several algorithms on the same clients: results or error text per algorithm, the
    settings they ran with, and their :func:`summarize` table."""

    results: dict[str, SimResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    limit: int = 1
    period: float = 1.0
    scope: str = "ip"
    bounds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))


def compare(
    algorithms: Mapping[str, Callable[..., object]],
    clients: Sequence[Client],
    *,
    limit: int,
    period: float,
    burst: int,
    scope: str,
    duration: float,
    describe: Callable[[BaseException], str] = repr,
    progress: Progress | None = None,
) -> Comparison:
    """Simulate each algorithm (name -> class) on ``clients``; an algorithm that raises is reported
    under ``errors`` through ``describe`` and the others still run. Refuses (as an error under
    ``"traffic"``) work beyond :data:`MAX_DECISIONS`."""
    started = time.perf_counter()
    results: dict[str, SimResult] = {}
    errors: dict[str, str] = {}
    decisions = sum(len(c.arrivals) for c in clients) * len(algorithms)
    if decisions > MAX_DECISIONS:
        errors["traffic"] = (
            f"{decisions:,} limiter decisions is more than this dashboard simulates "
            f"({MAX_DECISIONS:,}); lower the rate, duration, users or algorithms."
        )
    else:
        for name in steps(list(algorithms), progress):
            make = engine_factory(algorithms[name], scope=scope, limit=limit, period=period, burst=burst)
            try:
                results[name] = simulate(make, clients, duration)
            except Exception as exc:  # noqa: BLE001 - a student's class may raise anything; report it, run the rest
                errors[name] = describe(exc)
    bounds = {name: design_bound(algorithms[name], limit, burst) for name in results}
    return Comparison(
        results,
        errors,
        limit,
        period,
        scope,
        bounds,
        time.perf_counter() - started,
        summarize(results, bounds, period, scope),
    )


def summarize(results: Mapping[str, SimResult], bounds: Mapping[str, int], period: float, scope: str) -> pd.DataFrame:
    """Per algorithm: admitted, rejected, reject %, the most one key got through in any ``period``-long
    interval, the algorithm's design bound for that, and their ratio."""
    rows = []
    for name, r in results.items():
        ev = r.events
        # Per limiter key: several keys together may rightly pass more than one key's limit.
        admitted = ev[ev["allowed"]]
        peak = max((sliding_max_count(part["t"].to_numpy(), period) for _, part in admitted.groupby(scope)), default=0)
        rejected = int((~ev["allowed"]).sum())
        rows.append(
            [
                name,
                len(admitted),
                rejected,
                round(100.0 * rejected / max(1, len(ev)), 1),
                peak,
                bounds[name],
                round(peak / bounds[name], 2),
            ]
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def rates(results: Mapping[str, SimResult]) -> pd.DataFrame:
    """Requests per second in 1 s windows ``[t - 1, t)``, all clients together: t, algorithm, offered, admitted."""
    frames = []
    for name, r in results.items():
        edges = np.arange(0.0, math.ceil(r.duration) + 1.0)
        offered, _ = np.histogram(r.events["t"], edges)
        admitted, _ = np.histogram(r.events.loc[r.events["allowed"], "t"], edges)
        frames.append(pd.DataFrame({"t": edges[1:], "algorithm": name, "offered": offered, "admitted": admitted}))
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["t", "algorithm", "offered", "admitted"])
    )


def remaining(results: Mapping[str, SimResult], client: str | None) -> pd.DataFrame:
    """The quota left after each of ``client``'s requests: t, algorithm, remaining, allowed."""
    frames = [
        r.events.loc[r.events["client"] == client, ["t", "remaining", "allowed"]].assign(algorithm=name)
        for name, r in results.items()
    ]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["t", "remaining", "allowed", "algorithm"])
    )


def rejects(results: Mapping[str, SimResult]) -> pd.DataFrame:
    """Rejects per client and algorithm, users behind the shared IP pooled: client, algorithm, offered,
    rejected, reject_pct."""
    frames = []
    for name, r in results.items():
        per = r.per_client()
        nat = per["kind"] == "nat"
        per.loc[nat, "client"] = f"{NAT_PREFIX.rstrip('-')} ×{int(nat.sum())} (one IP)"
        pooled = per.groupby("client", as_index=False, sort=False)[["offered", "rejected"]].sum()
        frames.append(pooled.assign(algorithm=name))
    if not frames:
        return pd.DataFrame(columns=["client", "algorithm", "offered", "rejected", "reject_pct"])
    out = pd.concat(frames, ignore_index=True)
    out["reject_pct"] = 100.0 * out["rejected"] / out["offered"].clip(lower=1)
    return out[["client", "algorithm", "offered", "rejected", "reject_pct"]]
