"""Six rate-limiting algorithms (and yours) against the same simulated traffic, side by side.

Lab 01's dashboard: ``dashboard(limiter=MyLimiter)`` in a notebook, ``app()`` for ``syslab serve``.
Each session owns a :class:`RateLimitDashboard`; every setting change reruns the simulation
(milliseconds per algorithm at the defaults) and redraws four plots and a summary table.
"""
from __future__ import annotations

import inspect
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from lab_core.ratelimit import (
    ALGORITHMS,
    Client,
    Decision,
    SimResult,
    behind_one_ip,
    boundary_attacker,
    bursty,
    simulate,
    steady,
)
from lab_core.sim import Clock, sliding_max_count
from widgets import kit

YOURS = "yours"
PATTERNS: dict[str, str] = {
    "mix of all below": "mix",
    "steady (Poisson)": "steady",
    "bursty": "bursty",
    "boundary attacker": "boundary",
    "many users behind one IP": "nat",
}
KEYS: dict[str, str] = {"IP address": "ip", "user": "user"}
# The client whose quota the remaining-quota plot follows until the user picks another.
NAT_PREFIX = "office-"
FOCUS: dict[str, str] = {
    "mix": "bursty", "steady": "steady", "bursty": "bursty", "boundary": "attacker", "nat": f"{NAT_PREFIX}0",
}
# Roughly 8 s of simulation on one core; past that the dashboard says so instead of stalling the server.
MAX_DECISIONS = 500_000
COLORS: dict[str, str] = {YOURS: "#000000", "offered": "#7f7f7f"}


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
    if pattern not in PATTERNS.values():
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS.values())}, got {pattern!r}")
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


class _PerIP:
    """Counts each request under its client's IP address, as an edge proxy that sees no user would."""

    def __init__(self, inner: object, ip_of: dict[str, str]) -> None:
        self.inner = inner
        self.ip_of = ip_of

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Ask the wrapped limiter about the IP behind ``key``."""
        return self.inner.acquire(self.ip_of[key], cost)  # type: ignore[attr-defined]


SUMMARY_COLUMNS = ["algorithm", "admitted", "rejected", "reject_pct", "peak_in_period", "peak_vs_limit"]


def summarize(results: dict[str, SimResult], limit: int, period: float, key_by: str) -> pd.DataFrame:
    """Per algorithm: admitted, rejected, reject %, and the most one key got through in any ``period``-long interval."""
    rows = []
    for name, r in results.items():
        ev = r.events
        # Per limiter key: several keys together may rightly pass more than one key's limit.
        admitted = ev[ev["allowed"]]
        peak = max((sliding_max_count(part["t"].to_numpy(), period) for _, part in admitted.groupby(key_by)),
                   default=0)
        rejected = int((~ev["allowed"]).sum())
        rows.append([name, len(admitted), rejected, round(100.0 * rejected / max(1, len(ev)), 1),
                     peak, round(peak / limit, 2)])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


@dataclass(frozen=True, eq=False)
class Run:
    """One recompute: per-algorithm results or errors, the settings they were computed with, their summary."""

    results: dict[str, SimResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    limit: int = 1
    period: float = 1.0
    key_by: str = "ip"
    seconds: float = 0.0
    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))


class RateLimitDashboard(pn.viewable.Viewer):
    """Compare rate limiters on one traffic pattern: admitted rates, quota, rejects per client, the boundary burst."""

    algorithms = param.ListSelector(default=list(ALGORITHMS), objects=list(ALGORITHMS), label="Algorithms")
    limit = param.Integer(20, bounds=(1, 1000), label="Limit (requests per period)")
    period = param.Number(10.0, bounds=(1.0, 300.0), step=0.5, label="Period / window (s)")
    burst = param.Integer(20, bounds=(1, 1000), label="Burst (bucket capacity)")
    key_by = param.Selector(default="ip", objects=KEYS, label="Count requests per")
    pattern = param.Selector(default="mix", objects=PATTERNS, label="Traffic pattern")
    rate = param.Number(1.5, bounds=(0.1, 100.0), step=0.1, label="Offered rate per client (req/s)")
    cv = param.Number(3.0, bounds=(0.0, 10.0), step=0.1, label="Burstiness cv (bursty traffic; 1 = Poisson)")
    nat_users = param.Integer(5, bounds=(2, 50), label="Users behind the shared IP")
    duration = param.Number(120.0, bounds=(10.0, 600.0), step=10.0, label="Duration (s)")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    client = param.Selector(default=None, objects=[], allow_None=True, check_on_set=False,
                            label="Client for the quota plot")
    run = param.ClassSelector(class_=Run, default=Run(), precedence=-1, doc="the latest recompute")

    def __init__(self, limiter: Callable[..., object] | None = None, **params: object) -> None:
        self._limiter = limiter
        choices = [*ALGORITHMS, *([YOURS] if limiter is not None else [])]
        # "yours" is only a valid choice once this instance's objects include it.
        chosen = params.pop("algorithms", choices)
        super().__init__(**params)
        self.param.algorithms.objects = choices
        with param.discard_events(self):
            self.algorithms = list(chosen)
        self.colors = kit.colors_for(choices, COLORS)
        self._progress = kit.progress_bar()
        # Slider drags can start overlapping recomputes on a threaded server; only the newest one publishes.
        self._runs = itertools.count()
        self._latest = -1
        # DynamicMaps update the drawn figures' data in place, several times faster than redrawing them.
        panes = [pn.pane.HoloViews(hv.DynamicMap(view), sizing_mode="stretch_width", min_width=420,
                                   styles={"flex": "1 1 45%"})
                 for view in (self.rate_plot, self.quota_plot, self.rejects_plot, self.peak_plot)]
        # Two plots a row on a wide screen, one on a narrow one.
        self._plots = pn.FlexBox(*panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self.recompute()

    # ---- computing -------------------------------------------------------------------------

    def _target(self, name: str, clients: Sequence[Client]) -> Callable[[Clock], object]:
        factory = self._limiter if name == YOURS else ALGORITHMS[name]
        kwargs = {"burst": self.burst} if takes_burst(factory) else {}
        limit, period, key_by = self.limit, float(self.period), self.key_by
        ip_of = {c.key: c.ip for c in clients}

        def make(clock: Clock) -> object:
            limiter = factory(limit, period, clock=clock, **kwargs)
            return _PerIP(limiter, ip_of) if key_by == "ip" else limiter

        return make

    @param.depends("algorithms", "limit", "period", "burst", "key_by", "pattern", "rate", "cv",
                   "nat_users", "duration", "seed", watch=True)
    def recompute(self) -> None:
        """Rerun the simulation for every chosen algorithm with the current settings and publish it as ``run``."""
        generation = self._latest = next(self._runs)
        started = time.perf_counter()
        clients = traffic(self.pattern, rate=self.rate, duration=self.duration, limit=self.limit,
                          period=self.period, cv=self.cv, nat_users=self.nat_users, seed=self.seed)
        results: dict[str, SimResult] = {}
        errors: dict[str, str] = {}
        decisions = sum(len(c.arrivals) for c in clients) * len(self.algorithms)
        if decisions > MAX_DECISIONS:
            errors["traffic"] = (f"{decisions:,} limiter decisions is more than this dashboard simulates "
                                 f"({MAX_DECISIONS:,}); lower the rate, duration, users or algorithms.")
        else:
            with kit.loading(self._plots):
                for name in kit.track(list(self.algorithms), self._progress):
                    try:
                        results[name] = simulate(self._target(name, clients), clients, self.duration)
                    except Exception as exc:  # the student's code may raise anything; show it, keep the rest
                        errors[name] = kit.describe(exc)
        if generation != self._latest:
            return
        names = [c.name for c in clients]
        self.param.client.objects = names
        summary = summarize(results, self.limit, float(self.period), self.key_by)
        seconds = time.perf_counter() - started
        run = Run(results, errors, self.limit, float(self.period), self.key_by, seconds, summary)
        self.param.update(run=run, client=self.client if self.client in names else FOCUS[self.pattern])

    # ---- data behind the plots (tidy frames, also what the tests look at) ------------------

    def rates(self) -> pd.DataFrame:
        """Requests per second in 1 s windows ``[t - 1, t)``, all clients together: t, algorithm, offered, admitted."""
        frames = []
        for name, r in self.run.results.items():
            # The same windows as SimResult.per_second, without its per-client split this plot sums away.
            edges = np.arange(0.0, math.ceil(r.duration) + 1.0)
            offered, _ = np.histogram(r.events["t"], edges)
            admitted, _ = np.histogram(r.events.loc[r.events["allowed"], "t"], edges)
            frames.append(pd.DataFrame({"t": edges[1:], "algorithm": name, "offered": offered, "admitted": admitted}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["t", "algorithm", "offered", "admitted"])

    def remaining(self) -> pd.DataFrame:
        """The quota left after each of the chosen client's requests: t, algorithm, remaining, allowed."""
        frames = [
            r.events.loc[r.events["client"] == self.client, ["t", "remaining", "allowed"]].assign(algorithm=name)
            for name, r in self.run.results.items()
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["t", "remaining", "allowed", "algorithm"])

    def rejects(self) -> pd.DataFrame:
        """Rejects per client and algorithm (users behind the shared IP pooled): client, algorithm, offered,
        rejected, reject_pct."""
        frames = []
        for name, r in self.run.results.items():
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

    def summary(self) -> pd.DataFrame:
        """The latest run's :func:`summarize` table."""
        return self.run.summary.copy()

    # ---- views -----------------------------------------------------------------------------

    @param.depends("run")
    def rate_plot(self) -> hv.Element:
        """(a) admitted rate per algorithm against the offered rate."""
        rates = self.rates()
        title, ylabel = "Offered vs admitted rate, all clients", "requests/s (1 s windows)"
        admitted = kit.timeseries_plot(rates, "admitted", by="algorithm", title=title, ylabel=ylabel,
                                       colors=self.colors, legend=False, line_width=1.5, alpha=0.8)
        # Every algorithm saw the same offered traffic: draw it once.
        first = rates["algorithm"].iloc[0] if len(rates) else None
        offered = rates[rates["algorithm"] == first].assign(algorithm="offered")
        return kit.timeseries_plot(offered, "offered", by="algorithm", title=title, ylabel=ylabel,
                                   colors=self.colors, legend=False, line_dash="dashed", line_width=2) * admitted

    @param.depends("run", "client")
    def quota_plot(self) -> hv.Element:
        """(b) remaining quota of one client over time, per algorithm."""
        key = "IP" if self.run.key_by == "ip" else "user"
        return kit.timeseries_plot(
            self.remaining(), "remaining", by="algorithm", step=True, colors=self.colors, legend=False,
            title=f"Quota left for {self.client}, after each request",
            ylabel=f"quota left for its {key} (requests)",
        )

    @param.depends("run")
    def rejects_plot(self) -> hv.Element:
        """(c) share of each client's requests rejected, per algorithm."""
        return kit.bar_plot(
            self.rejects(), "client", "reject_pct", by="algorithm", colors=self.colors, legend=False,
            title="Rejected requests per client", xlabel="client",
            ylabel="rejected (% of the client's requests)", hover=["rejected", "offered"],
        )

    @param.depends("run")
    def peak_plot(self) -> hv.Element:
        """(d) the boundary burst: most admitted in any period-long interval vs the limit."""
        run, summary = self.run, self.summary()
        bars = kit.bar_plot(
            summary, "algorithm", "peak_in_period", colors=self.colors, legend=False,
            title=f"Most admitted in any {run.period:g} s, one key",
            xlabel="algorithm", ylabel=f"admitted in {run.period:g} s (requests)", hover=["peak_vs_limit"],
        )
        # Label the line above the lowest bar, where it has room.
        lowest = summary.loc[summary["peak_in_period"].idxmin(), "algorithm"] if len(summary) else ""
        return bars * kit.target_line(run.limit, f"limit {run.limit}", at=lowest)

    @param.depends("run")
    def headline(self) -> pn.viewable.Viewable:
        """Badges per algorithm for the boundary burst, and the worst one in words."""
        summary = self.summary()
        if summary.empty:
            return pn.pane.Markdown("No algorithm produced results; see the errors above.")
        worst = summary.loc[summary["peak_in_period"].idxmax()]
        text = (f"**Boundary burst:** `{worst['algorithm']}` let **{worst['peak_in_period']}** requests from one "
                f"key through in a {self.run.period:g} s interval, **{worst['peak_vs_limit']:g}×** the limit of "
                f"{self.run.limit}. Recomputed in {self.run.seconds * 1000:.0f} ms.")
        badges = [kit.sla_badge(row.algorithm, row.peak_in_period, self.run.limit, unit=f"per {self.run.period:g} s")
                  for row in summary.itertuples()]
        return pn.Column(pn.pane.Markdown(text, sizing_mode="stretch_width"),
                         pn.FlexBox(*badges), sizing_mode="stretch_width")

    @param.depends("run")
    def legend(self) -> pn.pane.HTML:
        """The colour of each algorithm, shared by all four plots."""
        return kit.color_key(self.colors, [*self.run.results, "offered"])

    @param.depends("run")
    def error_view(self) -> pn.viewable.Viewable:
        """What went wrong, per algorithm (your class's exceptions land here instead of crashing the page)."""
        errors = self.run.errors
        lines = "\n".join(f"- **{name}**: `{text}`" for name, text in errors.items())
        return pn.pane.Alert(f"Could not simulate:\n\n{lines}", alert_type="danger",
                             visible=bool(errors), sizing_mode="stretch_width")

    @param.depends("limit", "period", "burst")
    def refill(self) -> pn.pane.Markdown:
        """The refill rate the bucket algorithms derive from limit and period (read-only)."""
        return pn.pane.Markdown(
            f"Refill / drain rate: **{self.limit / self.period:.3g} tokens/s** (limit ÷ period). "
            f"Burst is the bucket size of token bucket, leaky bucket and GCRA; the windows ignore it.",
            margin=(0, 10))

    def summary_table(self) -> pn.widgets.Tabulator:
        """The numbers behind the plots, one row per algorithm."""
        titles = {"reject_pct": "rejected %", "peak_in_period": "most in one period", "peak_vs_limit": "× limit"}
        return pn.widgets.Tabulator(pn.bind(lambda _: self.summary(), self.param.run), disabled=True,
                                    show_index=False, titles=titles, sizing_mode="stretch_width", layout="fit_columns")

    def controls(self) -> pn.Column:
        """The sidebar: limiter settings, traffic settings, plot choice."""
        return pn.Column(
            kit.controls(self, ["algorithms", "limit", "period", "burst"], title="Limiter",
                         widgets={"algorithms": pn.widgets.CheckBoxGroup}),
            self.refill,
            kit.controls(self, ["key_by"]),
            kit.controls(self, ["pattern", "rate", "cv", "nat_users", "duration", "seed"], title="Traffic",
                         widgets={"seed": pn.widgets.IntInput}),
            kit.controls(self, ["client"], title="Plot"),
            self._progress,
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Headline, errors, the four plots and the summary table."""
        return pn.Column(self.error_view, self.headline, self.legend, self._plots, self.summary_table(),
                         sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(limiter: Callable[..., object] | None = None, **params: object) -> RateLimitDashboard:
    """The dashboard for a notebook; ``limiter``, shown as "yours", takes ``(limit, period, *, clock, burst=None)``."""
    return RateLimitDashboard(limiter=limiter, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = RateLimitDashboard()
    return pn.template.FastListTemplate(
        title="Lab 01 · Rate limiter",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
