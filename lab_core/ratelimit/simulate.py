"""Traffic against a limiter in simulated time: who was let through, when, and how much.

Clients are arrival streams from ``lab_core.sim.arrivals``; a simpy environment replays them
against a limiter (or a whole rules engine) built on the simulation's clock, so an hour of
traffic takes milliseconds and every run with the same seed is identical.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from lab_core.ratelimit.protocol import RateLimiter
from lab_core.ratelimit.rules import RequestInfo, RulesEngine
from lab_core.sim import Clock, Recorder, SimClock, arrivals, drive, sliding_max_count


@dataclass(frozen=True)
class Client:
    """One source of requests: its arrival times and who it claims to be."""

    name: str
    arrivals: np.ndarray
    kind: str = "steady"
    user: str | None = None
    ip: str = ""
    endpoint: str = "/api/items"

    def __post_init__(self) -> None:
        if not self.ip:
            # A stable documentation-range address per client name (RFC 5737 TEST-NET-2).
            object.__setattr__(self, "ip", f"198.51.100.{zlib.crc32(self.name.encode()) % 254 + 1}")

    @property
    def key(self) -> str:
        """The key a bare limiter counts this client under (user, else name)."""
        return self.user or self.name


def steady(name: str, rate: float, duration: float, *, seed: int | None = None, **who: str) -> Client:
    """Poisson requests at ``rate`` per second."""
    return Client(name, arrivals.poisson(rate, duration, seed=seed), "steady", user=who.pop("user", name), **who)


def bursty(name: str, rate: float, duration: float, *, cv: float = 3.0, seed: int | None = None, **who: str) -> Client:
    """Gamma-renewal requests with mean ``rate`` and burstiness ``cv`` (1 = Poisson)."""
    return Client(name, arrivals.gamma(rate, duration, cv=cv, seed=seed), "bursty", user=who.pop("user", name), **who)


def boundary_attacker(
    name: str, limit: int, period: float, duration: float, *, spread: float = 0.02, **who: str
) -> Client:
    """``limit`` requests just before every window edge and ``limit`` just after: the fixed window's worst case."""
    edges = np.arange(period, duration, period)
    times = arrivals.merge(
        *[arrivals.burst(edge - spread, limit, spread=spread) for edge in edges],
        *[arrivals.burst(edge, limit, spread=spread) for edge in edges],
    )
    return Client(name, times[times < duration], "boundary", user=who.pop("user", name), **who)


def behind_one_ip(
    prefix: str, n: int, rate: float, duration: float, *, ip: str = "203.0.113.7", seed: int | None = None
) -> list[Client]:
    """``n`` distinct users sharing one address (an office NAT), each sending Poisson traffic at ``rate``."""
    base = 0 if seed is None else seed
    return [
        Client(
            f"{prefix}{i}", arrivals.poisson(rate, duration, seed=base + 1000 + i), "nat", user=f"{prefix}{i}", ip=ip
        )
        for i in range(n)
    ]


Target = RateLimiter | RulesEngine


@dataclass
class SimResult:
    """Every request of a run as a tidy table, plus the summaries the dashboard plots."""

    events: pd.DataFrame
    duration: float
    recorder: Recorder

    def per_second(self, window: float = 1.0) -> pd.DataFrame:
        """Offered and admitted requests per second in windows of ``window`` s: t, client, offered, admitted."""
        if len(self.recorder) == 0:  # nothing recorded: the recorder knows no labels to group by
            return pd.DataFrame(columns=["t", "client", "offered", "admitted"])
        rates = self.recorder.throughput(window, by=["client", "outcome"], start=0.0, end=self.duration)
        if rates.empty:
            return pd.DataFrame(columns=["t", "client", "offered", "admitted"])
        wide = rates.pivot_table(index=["t", "client"], columns="outcome", values="rate", fill_value=0.0)
        wide = wide.reindex(columns=["allowed", "rejected"], fill_value=0.0)
        out = pd.DataFrame({"offered": wide["allowed"] + wide["rejected"], "admitted": wide["allowed"]}).reset_index()
        return out[["t", "client", "offered", "admitted"]]

    def per_client(self) -> pd.DataFrame:
        """Totals per client: offered, admitted, rejected, reject_pct."""
        g = self.events.groupby(["client", "kind"], sort=False)["allowed"]
        out = pd.DataFrame({"offered": g.size(), "admitted": g.sum()}).reset_index()
        out["admitted"] = out["admitted"].astype(int)
        out["rejected"] = out["offered"] - out["admitted"]
        out["reject_pct"] = 100.0 * out["rejected"] / out["offered"].clip(lower=1)
        return out

    def max_admitted_in_window(self, window: float, client: str | None = None) -> int:
        """Most requests admitted in any ``window``-second interval (any start time, not only aligned ones)."""
        ev = self.events[self.events["allowed"].astype(bool)]  # an empty run's column is object-typed
        if client is not None:
            ev = ev[ev["client"] == client]
        return sliding_max_count(ev["t"].to_numpy(), window)


def simulate(
    make_target: Callable[[Clock], Target],
    clients: Sequence[Client],
    duration: float,
) -> SimResult:
    """Replay ``clients`` for ``duration`` simulated seconds against ``make_target(clock)``.

    A bare limiter counts each client under ``client.key``; a rules engine sees user, IP and
    endpoint, so per-IP and global rules act as in production.
    """
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    env = simpy.Environment()
    target = make_target(SimClock(env))
    recorder = Recorder()
    rows: list[tuple] = []

    def handler_for(client: Client) -> Callable[[float], None]:
        request = RequestInfo(ip=client.ip, endpoint=client.endpoint, user=client.user)

        def handle(t: float) -> None:
            if isinstance(target, RulesEngine):
                verdict = target.check(request)
                allowed = verdict.allowed
                remaining = verdict.deciding.decision.remaining if verdict.deciding else None
                rule = verdict.deciding.rule.name if verdict.deciding else None
            else:
                decision = target.acquire(client.key)
                allowed, remaining, rule = decision.allowed, decision.remaining, None
            outcome = "allowed" if allowed else "rejected"
            recorder.record(t, client=client.name, outcome=outcome)
            rows.append((t, client.name, client.kind, client.user, client.ip, allowed, remaining, rule))

        return handle

    for client in clients:
        drive(env, client.arrivals[client.arrivals < duration], handler_for(client))
    env.run(until=duration)
    events = pd.DataFrame(rows, columns=["t", "client", "kind", "user", "ip", "allowed", "remaining", "rule"])
    events = events.sort_values("t", kind="stable").reset_index(drop=True)
    return SimResult(events=events, duration=duration, recorder=recorder)
