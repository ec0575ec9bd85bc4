"""Lab 07's dashboard: TTFT and TPOT against the SLA, KV-cache use, queues, goodput and fleet size vs
load from the fleet simulator, and the real engine serving requests live.

``dashboard(block_manager=MyBlocks, scheduler=MyScheduler)`` in a notebook, ``app()`` for ``syslab
serve``. Everything computed comes from ``lab_core.serving.experiments``; this module holds the
parameters and the plots; the live-engine tab is ``widgets.serving_live``.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn
import param

from lab_core.serving import experiments as ex
from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.experiments import FLEET_ORDERS, Sweep
from lab_core.serving.fleet import MODELS, SLA
from lab_core.serving.scheduler import Scheduler, SchedulerBase
from widgets import kit
from widgets.serving_live import LiveEngineTab

TARGET = SLA()  # TTFT 200 ms, TPOT 1/30 s
TIER_COLORS: dict[str, str] = {"all": "#1f77b4", "paid": "#2ca02c", "free": "#ff7f0e"}
POOL_COLORS: dict[str, str] = {"total GPUs": "#1f77b4", "prefill GPUs": "#ff7f0e", "decode GPUs": "#9467bd"}
QUEUE_COLORS: dict[str, str] = dict(zip(ex.QUEUE_SERIES.values(), (kit.OVER, "#1f77b4")))
LATENCY_TITLES: dict[str, tuple[str, str]] = {
    "ttft": ("Time to first token (TTFT)", "TTFT, arrival → first token (ms, log)"),
    "tpot": ("Time per output token (TPOT)", "TPOT, mean gap between later tokens (ms, log)"),
}
SWEEP_BUTTONS = {"sweep": "Sweep goodput vs load (8 simulations)", "plan": "Plan fleet size vs load (capacity planner)"}
# The settings of the simulated fleet: any change simulates it again.
FLEET_KNOBS = (
    "rate concurrency burstiness duration seed model gpu prefill_gpus decode_gpus token_budget block_size "
    "chunked_prefill policy"
).split()


class ServingDashboard(kit.LabDashboard):
    """A fleet of LLM engines simulated against the SLA, and the real engine serving requests live."""

    lab = "serving"
    plugins = {
        "block_manager": kit.Plugin("block manager", "BlockManagerSeam (a BlockAllocator subclass)", BlockManager),
        "scheduler": kit.Plugin("scheduler", "SchedulerSeam (a SchedulerBase subclass)", Scheduler),
    }

    rate = param.Number(40.0, bounds=(1.0, 200.0), step=1.0, label="Arrival rate (req/s)")
    concurrency = param.Integer(0, bounds=(0, 256), step=8, label="Closed-loop users (0 = open loop at the rate)")
    burstiness = param.Number(1.0, bounds=(0.2, 5.0), step=0.1, label="Burstiness (gap CV; 1 = Poisson)")
    duration = param.Number(20.0, bounds=(5.0, 30.0), step=5.0, label="Simulated traffic (s)")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    model = param.Selector(default="8B", objects=list(MODELS), label="Model")
    gpu = param.Selector(default="H100", objects=list(ex.GPU_NAMES), label="GPU type")
    prefill_gpus = param.Integer(0, bounds=(0, 16), label="Prefill GPUs (0 = colocated)")
    decode_gpus = param.Integer(3, bounds=(1, 16), label="Decode GPUs")
    token_budget = param.Integer(8192, bounds=(256, 16384), step=256, label="Token budget per step (simulated)")
    block_size = param.Selector(default=16, objects=[8, 16, 32, 64], label="KV block size (tokens)")
    chunked_prefill = param.Boolean(True, label="Chunked prefill")
    policy = param.Selector(default="fcfs", objects=FLEET_ORDERS, label="Queue order (simulated fleet)")
    run = param.Parameter(None, precedence=-1, doc="the latest FleetRun (None when the settings were refused)")
    sweep = param.ClassSelector(class_=Sweep, precedence=-1, doc="the latest goodput-vs-load sweep")
    plan = param.ClassSelector(class_=Sweep, precedence=-1, doc="the latest fleet-size-vs-load plan")

    def __init__(
        self,
        block_manager: type[BlockAllocator] | None = None,
        scheduler: type[SchedulerBase] | None = None,
        **params: Any,
    ) -> None:
        ex.check_plugins(block_manager, scheduler)
        live = {name: params.pop(name) for name in list(params) if name.startswith("live_")}
        params = {**ex.worked_sweeps(), **params}
        super().__init__(block_manager=block_manager, scheduler=scheduler, **params)
        self.live_tab = LiveEngineTab(self, **live)
        self._bars = {"sweep": self._progress, "plan": kit.progress_bar()}
        self._buttons = {
            kind: pn.widgets.Button(label=label, button_type="primary", sizing_mode="stretch_width")
            for kind, label in SWEEP_BUTTONS.items()
        }
        self._buttons["sweep"].on_click(lambda _e: self.run_sweep())
        self._buttons["plan"].on_click(lambda _e: self.run_plan())

        def pane(view: Any) -> pn.pane.HoloViews:
            # DynamicMaps update the drawn figures' data in place, several times faster than redrawing them.
            return pn.pane.HoloViews(
                hv.DynamicMap(view), sizing_mode="stretch_width", min_width=420, styles={"flex": "1 1 45%"}
            )

        self._plots = pn.FlexBox(
            *map(pane, (self.ttft_plot, self.tpot_plot, self.kv_plot, self.queue_plot)),
            flex_wrap="wrap",
            sizing_mode="stretch_width",
        )
        self._sweep_plots = {"sweep": pane(self.goodput_plot), "plan": pane(self.fleet_plot)}
        self.recompute()

    # ---- the fleet -----------------------------------------------------------------------------

    @param.depends(*FLEET_KNOBS, watch=True)
    def recompute(self) -> None:
        """Simulate the fleet under the current settings; publish ``run`` (None and an error if refused)."""
        token, errors, knobs = self.begin(), {}, {name: getattr(self, name) for name in FLEET_KNOBS}
        run = self.attempt(errors, "fleet simulation", ex.fleet_run, **knobs, sla=TARGET)
        if self.is_latest(token):
            self.errors = {**{k: v for k, v in self.errors.items() if k != "fleet simulation"}, **errors}
            self.run = run

    def summary(self) -> dict[str, float]:
        """The current run's numbers (empty on error)."""
        return self.run.summary if self.run is not None else {}

    def setting(self) -> str:
        """The current settings in words, for the sweeps' captions."""
        return ex.fleet_setting(self.run, self.model, self.gpu) if self.run is not None else "invalid settings"

    def _sweep(self, kind: str) -> None:
        if self.run is None:
            return
        button, errors, progress = self._buttons[kind], {}, kit.reporter(self._bars[kind])
        button.disabled = True
        try:
            sweep = self.attempt(
                errors, kind, ex.timed_sweep, self.run, kind, self.setting(), TARGET, progress=progress
            )
        finally:
            button.disabled = False
        self.errors = {**{k: v for k, v in self.errors.items() if k != kind}, **errors}
        if sweep is not None:
            setattr(self, kind, sweep)

    def run_sweep(self) -> None:
        """Simulate the current fleet at multiples of the current load; publish ``sweep``."""
        self._sweep("sweep")

    def run_plan(self) -> None:
        """The smallest fleet meeting the SLA for 95% of requests at multiples of the load; publish ``plan``."""
        self._sweep("plan")

    # ---- views: the fleet ------------------------------------------------------------------------

    @param.depends("run")
    def headline(self) -> pn.pane.Markdown:
        """The fleet, the traffic and its numbers in one sentence, and the recompute time."""
        text = ex.fleet_headline(self.run, self.gpu) if self.run is not None else "No results; see the error above."
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("run")
    def badges(self) -> pn.FlexBox:
        """TTFT and TPOT p50/p99 and goodput against their targets; throughput and tokens/s per GPU."""
        s = self.summary()
        if not s:
            return pn.FlexBox()
        badges = [
            kit.sla_badge(b.label, b.value, b.target, unit=b.unit, higher_is_better=b.higher_is_better)
            for b in ex.sla_badges(s, TARGET)
        ]
        stat = (
            f'<span class="serving-stat" style="padding:0.2em 0.6em;white-space:nowrap">throughput '
            f"<b>{s['throughput']:,.0f} tok/s</b> · <b>{s['tokens_per_s_per_gpu']:,.0f} tok/s per GPU</b></span>"
        )
        return pn.FlexBox(*badges, pn.pane.HTML(stat, margin=(4, 6)), flex_wrap="wrap", sizing_mode="stretch_width")

    def _latency_plot(self, metric: str) -> hv.Overlay:
        title, xlabel = LATENCY_TITLES[metric]
        v = ex.latency_view(self.run.result if self.run is not None else None, metric, getattr(TARGET, metric))
        curves = kit.timeseries_plot(
            v.frame,
            "share",
            x="x",
            by="tier",
            step=True,
            colors=TIER_COLORS,
            title=title,
            xlabel=xlabel,
            ylabel="share of requests within x",
        )
        label = hv.Text(v.target_ms, 0.5, v.label, halign=v.halign).opts(
            text_color=kit.OVER, text_font_size="10pt", text_font_style="bold"
        )
        limit = hv.VLine(v.target_ms).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        return (curves * limit * label).opts(
            hv.opts.Overlay(
                title=title,
                logx=True,
                xlim=(v.lo, v.hi),
                ylim=(0, 1.02),
                xticks=[(x, f"{x:g}") for x in v.ticks] or None,
                legend_position="bottom_right",
                framewise=True,
            )
        )

    @param.depends("run")
    def ttft_plot(self) -> hv.Overlay:
        """ECDF of time to first token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot("ttft")

    @param.depends("run")
    def tpot_plot(self) -> hv.Overlay:
        """ECDF of time per output token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot("tpot")

    @staticmethod
    def _drain(series: ex.FleetSeries) -> hv.VSpan:
        return hv.VSpan(*series.drain).opts(color="#555555", alpha=0.1 if series.shaded else 0)

    @param.depends("run")
    def kv_plot(self) -> hv.Overlay:
        """KV-cache use of the pool holding KV over time, with the busiest instance's peak (the headline's)."""
        series = ex.fleet_series(self.run)
        plot = kit.timeseries_plot(
            series.frame,
            "kv_pct",
            title="KV-cache use",
            ylabel=f"KV blocks in use, {series.pool} GPUs (%)",
            xlabel="simulated time (s; shaded: no new arrivals)",
            legend=False,
        )
        line = hv.HLine(series.kv_peak).opts(color="#555555", line_dash="dotted", line_width=1.5)
        return (plot * self._drain(series) * line).opts(
            hv.opts.Overlay(
                title=f"KV-cache use (dotted: peak {series.kv_peak:.1f}%)",
                ylim=(0, series.kv_top),
                show_legend=False,
                framewise=True,
            )
        )

    @param.depends("run")
    def queue_plot(self) -> hv.Overlay:
        """Requests waiting for admission and requests running, over time."""
        series = ex.fleet_series(self.run)
        plot = kit.timeseries_plot(
            series.queue,
            "requests",
            by="what",
            step=True,
            colors=QUEUE_COLORS,
            title="Queue depth",
            ylabel="requests",
            xlabel="simulated time (s; shaded: no new arrivals)",
        )
        # Headroom above the highest line keeps the legend off the data.
        return (plot * self._drain(series)).opts(
            hv.opts.Overlay(
                title="Queue depth and running batch over time",
                ylim=(0, series.queue_top),
                legend_position="top_right",
                framewise=True,
            )
        )

    def _now(self) -> hv.VLine:
        rate = self.run.offered_rate if self.run is not None else float(self.rate)
        return hv.VLine(rate).opts(color="#000000", line_width=1.5, line_dash="dotted")

    @param.depends("sweep", "run")
    def goodput_plot(self) -> hv.Overlay:
        """Goodput (% of requests within the SLA) against the arrival rate, the current load marked."""
        frame, (x, *vdims) = self.sweep.table, ex.SWEEP_LABELS.items()
        curve = hv.Curve(frame, x, vdims).opts(color="#1f77b4", line_width=2)
        points = hv.Scatter(frame, x, vdims).opts(color="#1f77b4", size=8, tools=["hover"])
        target = hv.HLine(100 * ex.GOODPUT_TARGET).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        return (curve * points * self._now() * target).opts(
            hv.opts.Overlay(
                title="Goodput vs load" + (" (worked example)" if self.sweep.example else ""),
                xlabel="arrival rate (req/s; dotted: current load)",
                ylabel="goodput (% of requests within SLA)",
                ylim=(0, 105),
                responsive=True,
                height=kit.PLOT_HEIGHT,
                show_grid=True,
                framewise=True,
            )
        )

    @param.depends("plan", "run")
    def fleet_plot(self) -> hv.Overlay:
        """The planner's smallest fleet per arrival rate: total, prefill and decode GPUs."""
        long = ex.plan_pools(self.plan.table)
        lines = kit.timeseries_plot(
            long,
            "gpus",
            x="rate",
            by="pool",
            colors=POOL_COLORS,
            title="Fleet size vs load",
            xlabel="arrival rate (req/s)",
            ylabel="GPUs",
        )
        points = hv.Overlay(
            [
                hv.Scatter(part, ("rate", "arrival rate (req/s)"), ("gpus", "GPUs")).opts(
                    color=POOL_COLORS[pool], size=7, tools=["hover"]
                )
                for pool, part in long.groupby("pool", sort=False)
            ]
        )
        return (lines * points * self._now()).opts(
            hv.opts.Overlay(
                title="Smallest fleet for the SLA" + (" (worked example)" if self.plan.example else ""),
                xlabel="arrival rate (req/s; dotted: current load)",
                ylabel="GPUs",
                legend_position="top_left",
                framewise=True,
            )
        )

    def _note(self, kind: str) -> pn.pane.Markdown:
        text = ex.sweep_note(getattr(self, kind), self.setting())
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("sweep", "run")
    def sweep_note(self) -> pn.pane.Markdown:
        """What the goodput sweep was computed for."""
        return self._note("sweep")

    @param.depends("plan", "run")
    def plan_note(self) -> pn.pane.Markdown:
        """What the plan was computed for, and the rates no fleet of at most 64 GPUs serves."""
        return self._note("plan")

    # ---- layout ----------------------------------------------------------------------------------

    def controls(self) -> pn.Column:
        """The sidebar: traffic, model and fleet, engine settings."""
        return pn.Column(
            kit.controls(
                self,
                ["rate", "concurrency", "burstiness", "duration", "seed"],
                title="Traffic",
                widgets={"seed": pn.widgets.IntInput},
            ),
            kit.controls(self, ["model", "gpu", "prefill_gpus", "decode_gpus"], title="Model and fleet"),
            kit.controls(self, ["token_budget", "block_size", "chunked_prefill", "policy"], title="Engine"),
            pn.pane.Markdown(ex.sla_note(TARGET), margin=(0, 10)),
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """The fleet tab (numbers, distributions, time series, sweeps) and the live-engine tab."""

        notes = {"sweep": self.sweep_note, "plan": self.plan_note}
        sweeps = pn.FlexBox(
            *(
                pn.Column(
                    self._buttons[kind],
                    self._bars[kind],
                    notes[kind],
                    self._sweep_plots[kind].clone(styles={}),
                    sizing_mode="stretch_width",
                    min_width=420,
                    styles={"flex": "1 1 45%"},
                )
                for kind in ("sweep", "plan")
            ),
            flex_wrap="wrap",
            sizing_mode="stretch_width",
        )
        fleet = pn.Column(
            self.headline,
            self.badges,
            self._plots,
            pn.pane.Markdown("#### Load sweeps (several simulations each)", margin=(0, 10)),
            sweeps,
            sizing_mode="stretch_width",
        )
        tabs = pn.Tabs(
            ("Fleet simulation", fleet),
            ("Live engine (real, CPU)", self.live_tab),
            sizing_mode="stretch_width",
            dynamic=False,
        )
        return pn.Column(self.error_view, tabs, sizing_mode="stretch_width")

    def close(self) -> None:
        """Stop the live engine (the session ended)."""
        self.live_tab.close()


Dashboard = ServingDashboard


def dashboard(
    block_manager: type[BlockAllocator] | None = None, scheduler: type[SchedulerBase] | None = None, **params: Any
) -> ServingDashboard:
    """The dashboard for a notebook: a ``block_manager`` (a ``BlockAllocator`` subclass) or ``scheduler`` (a
    ``SchedulerBase`` subclass) runs the live engine as "yours"; ``params`` set any control."""
    return ServingDashboard(block_manager=block_manager, scheduler=scheduler, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
    return ServingDashboard.page()
