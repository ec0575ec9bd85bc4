"""Six rate-limiting algorithms (and yours) against the same simulated traffic, side by side.

Lab 01's dashboard: ``dashboard(limiter=MyLimiter)`` in a notebook, ``app()`` for ``syslab serve``.
Each session owns a :class:`RateLimitDashboard`; every setting change reruns
:func:`lab_core.ratelimit.experiments.compare` (milliseconds per algorithm at the defaults) and
redraws the plots and a summary table.
"""

from __future__ import annotations

from collections.abc import Callable

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.ratelimit import ALGORITHMS, TokenBucket
from lab_core.ratelimit import experiments as ex
from lab_core.ratelimit.experiments import Comparison
from widgets import kit

YOURS = "yours"
PATTERNS: dict[str, str] = {
    "mix of all below": "mix",
    "steady (Poisson)": "steady",
    "bursty": "bursty",
    "boundary attacker": "boundary",
    "many users behind one IP": "nat",
}
KEYS: dict[str, str] = {"IP address (rule scope ip)": "ip", "user (rule scope user)": "user"}
COLORS: dict[str, str] = {YOURS: "#000000", "offered": "#7f7f7f"}


class RateLimitDashboard(kit.LabDashboard):
    """Compare rate limiters on one traffic pattern: admitted rates, quota, rejects per client, the boundary burst."""

    lab = "ratelimit"
    plugins = {"limiter": kit.Plugin("rate limiter", "lab_core.ratelimit.protocol.RateLimiter", TokenBucket)}

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
    client = param.Selector(
        default=None, objects=[], allow_None=True, check_on_set=False, label="Client for the quota plot"
    )
    run = param.ClassSelector(class_=Comparison, default=Comparison(), precedence=-1, doc="the latest recompute")

    def __init__(self, **params: object) -> None:
        limiter = params.get("limiter")
        choices = [*ALGORITHMS, *([YOURS] if limiter is not None else [])]
        # "yours" is only a valid choice once this instance's objects include it.
        chosen = params.pop("algorithms", choices)
        super().__init__(**params)
        self.param.algorithms.objects = choices
        with param.discard_events(self):
            self.algorithms = list(chosen)
        self.colors = kit.colors_for(choices, COLORS)
        # DynamicMaps update the drawn figures' data in place, several times faster than redrawing them.
        panes = [
            pn.pane.HoloViews(
                hv.DynamicMap(view), sizing_mode="stretch_width", min_width=420, styles={"flex": "1 1 45%"}
            )
            for view in (self.quota_plot, self.rejects_plot, self.peak_plot)
        ]
        # Two plots a row on a wide screen, one on a narrow one.
        self._plots = pn.FlexBox(*panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self.recompute()

    def _factory(self, name: str) -> Callable[..., object]:
        return self.yours["limiter"] if name == YOURS else ALGORITHMS[name]

    @param.depends(
        "algorithms",
        "limit",
        "period",
        "burst",
        "key_by",
        "pattern",
        "rate",
        "cv",
        "nat_users",
        "duration",
        "seed",
        watch=True,
    )
    def recompute(self) -> None:
        """Rerun the comparison for every chosen algorithm with the current settings and publish it as ``run``."""
        token = self.begin()
        clients = ex.traffic(
            self.pattern,
            rate=self.rate,
            duration=self.duration,
            limit=self.limit,
            period=self.period,
            cv=self.cv,
            nat_users=self.nat_users,
            seed=self.seed,
        )
        with kit.loading(self._plots):
            run = ex.compare(
                {name: self._factory(name) for name in self.algorithms},
                clients,
                limit=self.limit,
                period=float(self.period),
                burst=self.burst,
                scope=self.key_by,
                duration=self.duration,
                describe=kit.describe,
                progress=kit.reporter(self._progress),
            )
        if not self.is_latest(token):
            return
        names = [c.name for c in clients]
        self.param.client.objects = names
        self.param.update(
            run=run, errors=run.errors, client=self.client if self.client in names else ex.FOCUS[self.pattern]
        )

    # ---- data behind the plots (tidy frames, also what the tests look at) ------------------

    def rates(self) -> pd.DataFrame:
        """Requests per second in 1 s windows, all clients together: t, algorithm, offered, admitted."""
        return ex.rates(self.run.results)

    def remaining(self) -> pd.DataFrame:
        """The quota left after each of the chosen client's requests: t, algorithm, remaining, allowed."""
        return ex.remaining(self.run.results, self.client)

    def rejects(self) -> pd.DataFrame:
        """Rejects per client and algorithm (users behind the shared IP pooled)."""
        return ex.rejects(self.run.results)

    def summary(self) -> pd.DataFrame:
        """The latest run's summary table."""
        return self.run.summary.copy()

    # ---- views -----------------------------------------------------------------------------

    @param.depends("run")
    def rate_plot(self) -> hv.Layout:
        """(a) admitted rate against the offered rate: one small plot per algorithm, so none hides another."""
        rates = self.rates()
        ylabel = "req/s (1 s bins)"
        first = rates["algorithm"].iloc[0] if len(rates) else None
        offered = rates[rates["algorithm"] == first].assign(algorithm="offered")
        cells = []
        for name, part in rates.groupby("algorithm", sort=False):
            admitted = kit.timeseries_plot(
                part,
                "admitted",
                by="algorithm",
                title=name,
                ylabel=ylabel,
                colors=self.colors,
                legend=False,
                line_width=1.5,
            )
            cells.append(
                (
                    kit.timeseries_plot(
                        offered,
                        "offered",
                        by="algorithm",
                        title=name,
                        ylabel=ylabel,
                        colors=self.colors,
                        legend=False,
                        line_dash="dashed",
                        line_width=1.5,
                    )
                    * admitted
                ).opts(height=200, responsive=True)
            )
        if not cells:
            return hv.Layout([hv.Curve([], "time (s)", ylabel).opts(title="no results", height=200, responsive=True)])
        # Shared axes: one algorithm admitting more than another is seen at a glance.
        return hv.Layout(cells).cols(3).opts(shared_axes=True, title="Offered (dashed) vs admitted rate, all clients")

    @param.depends("run", "client")
    def quota_plot(self) -> hv.Element:
        """(b) remaining quota of one client over time, per algorithm."""
        key = "IP" if self.run.scope == "ip" else "user"
        return kit.timeseries_plot(
            self.remaining(),
            "remaining",
            by="algorithm",
            step=True,
            colors=self.colors,
            legend=False,
            title=f"Quota left for {self.client}, after each request",
            ylabel=f"quota left for its {key} (requests)",
        )

    @param.depends("run")
    def rejects_plot(self) -> hv.Element:
        """(c) share of each client's requests rejected, per algorithm."""
        return kit.bar_plot(
            self.rejects(),
            "client",
            "reject_pct",
            by="algorithm",
            colors=self.colors,
            legend=False,
            title="Rejected requests per client",
            xlabel="client",
            ylabel="rejected (% of the client's requests)",
            hover=["rejected", "offered"],
        )

    @param.depends("run")
    def peak_plot(self) -> hv.Element:
        """(d) the boundary burst: most admitted in any period-long interval, against the limit."""
        run, summary = self.run, self.summary()
        bars = kit.bar_plot(
            summary,
            "algorithm",
            "peak_in_period",
            colors=self.colors,
            legend=False,
            title=f"Most admitted in any {run.period:g} s, one key",
            xlabel="algorithm",
            ylabel=f"admitted in {run.period:g} s (requests)",
            hover=["bound", "peak_vs_bound"],
        )
        # Label the line above the lowest bar, where it has room.
        lowest = summary.loc[summary["peak_in_period"].idxmin(), "algorithm"] if len(summary) else ""
        return bars * kit.target_line(run.limit, f"limit {run.limit}", at=lowest)

    @param.depends("run")
    def headline(self) -> pn.viewable.Viewable:
        """The worst boundary burst in words, and a badge per algorithm: within its own guarantee or not."""
        summary = self.summary()
        if summary.empty:
            return pn.pane.Markdown("No algorithm produced results; see the errors above.")
        run = self.run
        worst = summary.loc[summary["peak_in_period"].idxmax()]
        text = (
            f"**Boundary burst:** `{worst['algorithm']}` let **{worst['peak_in_period']}** requests from one "
            f"key through in a {run.period:g} s interval, **{worst['peak_in_period'] / run.limit:.3g}×** the "
            f"limit of {run.limit}. Each badge holds an algorithm to its own guarantee: the limit (sliding "
            f"log), burst + limit (buckets, GCRA), twice the limit (windows that cap aligned windows). "
            f"Recomputed in {run.seconds * 1000:.0f} ms."
        )
        badges = [
            kit.sla_badge(row.algorithm, row.peak_in_period, row.bound, unit=f"per {run.period:g} s")
            for row in summary.itertuples()
        ]
        return pn.Column(
            pn.pane.Markdown(text, sizing_mode="stretch_width"), pn.FlexBox(*badges), sizing_mode="stretch_width"
        )

    @param.depends("run")
    def legend(self) -> pn.pane.HTML:
        """The colour of each algorithm, shared by all plots."""
        return kit.color_key(self.colors, [*self.run.results, "offered"])

    @param.depends("limit", "period", "burst")
    def refill(self) -> pn.pane.Markdown:
        """The refill rate the bucket algorithms derive from limit and period (read-only)."""
        return pn.pane.Markdown(
            f"Refill / drain rate: **{self.limit / self.period:.3g} tokens/s** (limit ÷ period). "
            f"Burst is the bucket size of token bucket, leaky bucket and GCRA; the windows ignore it.",
            margin=(0, 10),
        )

    def summary_table(self) -> pn.widgets.Tabulator:
        """The numbers behind the plots, one row per algorithm."""
        titles = {
            "admitted": "admitted (requests)",
            "rejected": "rejected (requests)",
            "reject_pct": "rejected (%)",
            "peak_in_period": "most in one period (requests)",
            "bound": "guarantee (requests)",
            "peak_vs_bound": "most ÷ guarantee",
        }
        return pn.widgets.Tabulator(
            pn.bind(lambda _: self.summary(), self.param.run),
            disabled=True,
            show_index=False,
            titles=titles,
            sizing_mode="stretch_width",
            layout="fit_data_fill",
        )

    def controls(self) -> pn.Column:
        """The sidebar: limiter settings, traffic settings, plot choice."""
        return pn.Column(
            kit.controls(
                self,
                ["algorithms", "limit", "period", "burst"],
                title="Limiter",
                widgets={"algorithms": pn.widgets.CheckBoxGroup},
            ),
            self.refill,
            kit.controls(self, ["key_by"]),
            kit.controls(
                self,
                ["pattern", "rate", "cv", "nat_users", "duration", "seed"],
                title="Traffic",
                widgets={"seed": pn.widgets.IntInput},
            ),
            kit.controls(self, ["client"], title="Plot"),
            self._progress,
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Headline, errors, the plots and the summary table."""
        rates = pn.pane.HoloViews(self.rate_plot, sizing_mode="stretch_width")
        return pn.Column(
            self.error_view,
            self.headline,
            self.legend,
            rates,
            self._plots,
            self.summary_table(),
            sizing_mode="stretch_width",
        )


Dashboard = RateLimitDashboard


def dashboard(limiter: Callable[..., object] | None = None, **params: object) -> RateLimitDashboard:
    """The dashboard for a notebook; ``limiter``, shown as "yours", takes ``(limit, period, *, clock, burst=None)``."""
    return RateLimitDashboard(limiter=limiter, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
    return RateLimitDashboard.page()
