"""Lab 07's dashboard: TTFT and TPOT against the SLA, KV-cache use, queues, goodput and fleet size vs
load from the fleet simulator, and the real engine serving requests live.

``dashboard(block_manager=MyBlocks, scheduler=MyScheduler)`` in a notebook, ``app()`` for ``syslab
serve``. Everything computed comes from ``lab_core.serving.experiments``; this module holds the
parameters and the plots; the live-engine tab is ``widgets.serving_live``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.serving import experiments as ex
from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.fleet import MODELS, SLA, Workload
from lab_core.serving.scheduler import Scheduler, SchedulerBase
from widgets import kit
from widgets.serving_live import LiveEngineTab

TARGET = SLA()  # TTFT 200 ms, TPOT 1/30 s
TIER_COLORS: dict[str, str] = {"all": "#1f77b4", "paid": "#2ca02c", "free": "#ff7f0e"}
POOL_COLORS: dict[str, str] = {"total GPUs": "#1f77b4", "prefill GPUs": "#ff7f0e", "decode GPUs": "#9467bd"}
# Each part orders by the same priority (paid = 0 before free = 1) in its own way: named apart
# (lab_core.serving.protocol.QUEUE_ORDERS).
FLEET_ORDERS: dict[str, str] = {"fcfs (arrival order)": "fcfs", "paid-first, aged (free +2 s)": "priority"}


@dataclass(frozen=True, eq=False)
class Sweep:
    """A table computed behind a button (or the worked example), and the settings it was computed for."""

    table: pd.DataFrame
    setting: str = ""
    seconds: float = 0.0
    example: bool = False


def log_ticks(lo: float, hi: float) -> list[float]:
    """At most six round values (1, 2, 3, 5 times a power of ten) in [lo, hi] for a log axis."""
    ticks = [m * 10.0**k for k in range(-3, 7) for m in (1, 2, 3, 5) if lo <= m * 10.0**k <= hi]
    while len(ticks) > 6:
        ticks = ticks[::2]
    return ticks


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
    decode_gpus = param.Integer(2, bounds=(1, 16), label="Decode GPUs")
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
        for name, cls, base in (
            ("block_manager", block_manager, BlockAllocator),
            ("scheduler", scheduler, SchedulerBase),
        ):
            if cls is not None and not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(
                    f"{name} must be a subclass of {base.__name__} (the class, not an instance), got {cls!r}"
                )
        live = {name: params.pop(name) for name in list(params) if name.startswith("live_")}
        example = ex.worked_example()
        params.setdefault("sweep", Sweep(example["sweep"], example["setting"], example=True))
        params.setdefault("plan", Sweep(example["plan"], example["setting"], example=True))
        super().__init__(block_manager=block_manager, scheduler=scheduler, **params)
        self.live_tab = LiveEngineTab(self, **live)
        self._plan_progress = kit.progress_bar()

        self._sweep_button = pn.widgets.Button(
            label="Sweep goodput vs load (8 simulations)", button_type="primary", sizing_mode="stretch_width"
        )
        self._sweep_button.on_click(lambda _e: self.run_sweep())
        self._plan_button = pn.widgets.Button(
            label="Plan fleet size vs load (capacity planner)", button_type="primary", sizing_mode="stretch_width"
        )
        self._plan_button.on_click(lambda _e: self.run_plan())

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
        self._sweep_plot, self._plan_plot = pane(self.goodput_plot), pane(self.fleet_plot)
        self.recompute()

    # ---- the fleet -----------------------------------------------------------------------------

    def workload(self) -> Workload:
        """The traffic: open loop at ``rate`` with burstiness, or ``concurrency`` closed-loop users."""
        return Workload(
            rate=float(self.rate),
            duration=float(self.duration),
            cv=float(self.burstiness),
            concurrency=int(self.concurrency) or None,
            seed=int(self.seed),
        )

    def _fleet(self) -> ex.FleetRun:
        cfg, note = ex.sized_fleet(
            self.model,
            self.gpu,
            self.prefill_gpus,
            self.decode_gpus,
            token_budget=int(self.token_budget),
            block_size=int(self.block_size),
            chunked_prefill=bool(self.chunked_prefill),
            policy=self.policy,
        )
        return ex.run_fleet(cfg, self.workload(), TARGET, note)

    @param.depends(
        "rate",
        "concurrency",
        "burstiness",
        "duration",
        "seed",
        "model",
        "gpu",
        "prefill_gpus",
        "decode_gpus",
        "token_budget",
        "block_size",
        "chunked_prefill",
        "policy",
        watch=True,
    )
    def recompute(self) -> None:
        """Simulate the fleet under the current settings; publish ``run`` (None and an error if refused)."""
        token, errors = self.begin(), {}
        run = self.attempt(errors, "fleet simulation", self._fleet)
        if self.is_latest(token):
            self.errors = {**{k: v for k, v in self.errors.items() if k != "fleet simulation"}, **errors}
            self.run = run

    def summary(self) -> dict[str, float]:
        """The current run's numbers (empty on error)."""
        return self.run.summary if self.run is not None else {}

    def offered_rate(self) -> float:
        """Requests per second the current run received."""
        return self.run.offered_rate if self.run is not None else float(self.rate)

    def setting(self) -> str:
        """The current settings in words, for the sweeps' captions."""
        if self.run is None:
            return "invalid settings"
        cfg, order = self.run.config, {v: k.split(" (")[0] for k, v in FLEET_ORDERS.items()}
        pools = (
            f"{cfg.prefill_gpus} prefill + {cfg.decode_gpus} decode"
            if cfg.prefill_gpus
            else f"{cfg.decode_gpus} colocated"
        )
        return (
            f"{self.model} on {pools} {self.gpu}s (tp {cfg.tp}), budget {cfg.token_budget}, block "
            f"{cfg.block_size}, chunked prefill {'on' if cfg.chunked_prefill else 'off'}, {order[cfg.policy]}, "
            f"cv {self.burstiness:g}, {self.offered_rate():g} req/s"
        )

    def _sweep(self, what: str, compute: Any, multiples: tuple[float, ...]) -> None:
        if self.run is None:
            return
        run, started = self.run, time.perf_counter()
        button = self._sweep_button if what == "sweep" else self._plan_button
        button.disabled = True
        try:
            errors: dict[str, str] = {}
            table = self.attempt(
                errors,
                what,
                compute,
                run.config,
                run.workload,
                ex.load_rates(run.offered_rate, multiples),
                TARGET,
                progress=kit.reporter(self._progress if what == "sweep" else self._plan_progress),
            )
        finally:
            button.disabled = False
        self.errors = {**{k: v for k, v in self.errors.items() if k != what}, **errors}
        if table is not None:
            setattr(self, what, Sweep(table, self.setting(), time.perf_counter() - started))

    def run_sweep(self) -> None:
        """Simulate the current fleet at multiples of the current load; publish ``sweep``."""
        self._sweep("sweep", ex.goodput_sweep, ex.SWEEP)

    def run_plan(self) -> None:
        """The smallest fleet meeting the SLA for 95% of requests at multiples of the load; publish ``plan``."""
        self._sweep("plan", ex.fleet_plan, ex.PLAN)

    # ---- views: the fleet ------------------------------------------------------------------------

    @param.depends("run")
    def headline(self) -> pn.pane.Markdown:
        """The fleet, the traffic and its numbers in one sentence, and the recompute time."""
        if self.run is None:
            return pn.pane.Markdown("No results; see the error above.", margin=(0, 10))
        s, cfg, wl, run = self.summary(), self.run.config, self.run.workload, self.run
        traffic = (
            f"{wl.concurrency} closed-loop users ({run.offered_rate:.1f} req/s)"
            if wl.concurrency
            else f"{wl.rate:g} req/s (burstiness {wl.cv:g})"
        )
        pools = (
            f"{cfg.prefill_gpus} prefill + {cfg.decode_gpus} decode GPUs"
            if cfg.disaggregated
            else f"{cfg.decode_gpus} colocated GPUs"
        )
        text = (
            f"**{cfg.model.name}** on {pools} ({self.gpu}, tp {cfg.tp}), {traffic} for {wl.duration:g} s: "
            f"{s['requests']:.0f} requests, {s['finished']:.0f} finished, {s['preemptions']:.0f} preemptions, "
            f"peak KV use {run.kv_peak_pct:.1f}% (busiest GPU instance). Recomputed in **{run.seconds * 1e3:.0f} ms**."
        )
        return pn.pane.Markdown(
            text + (f"  \n{run.note}" if run.note else ""), sizing_mode="stretch_width", margin=(0, 10)
        )

    @param.depends("run")
    def badges(self) -> pn.FlexBox:
        """TTFT and TPOT p50/p99 and goodput against their targets; throughput and tokens/s per GPU."""
        s = self.summary()
        if not s:
            return pn.FlexBox()
        ms = {k: 1e3 * s[k] for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99")}
        items = [
            kit.sla_badge(k.replace("_", " ").upper().replace(" P", " p"), v, 1e3 * getattr(TARGET, k[:4]), unit="ms")
            for k, v in ms.items()
        ]
        items.append(
            kit.sla_badge(
                "goodput", 100 * s["goodput_fraction"], 100 * ex.GOODPUT_TARGET, unit="%", higher_is_better=True
            )
        )
        items.append(
            pn.pane.HTML(
                f'<span class="serving-stat" style="padding:0.2em 0.6em;white-space:nowrap">throughput '
                f"<b>{s['throughput']:,.0f} tok/s</b> · <b>{s['tokens_per_s_per_gpu']:,.0f} tok/s per GPU</b></span>",
                margin=(4, 6),
            )
        )
        return pn.FlexBox(*items, flex_wrap="wrap", sizing_mode="stretch_width")

    def _latency_plot(self, metric: str, target: float, title: str, xlabel: str) -> hv.Overlay:
        t = target * 1e3
        frame = ex.latency_ecdf(self.run.result, metric) if self.run is not None else pd.DataFrame()
        if frame.empty:
            frame = pd.DataFrame({"x": [t], "share": [0.0], "tier": ["all"]})
        curves = kit.timeseries_plot(
            frame,
            "share",
            x="x",
            by="tier",
            step=True,
            colors=TIER_COLORS,
            title=title,
            xlabel=xlabel,
            ylabel="share of requests within x",
        )
        lo, hi = min(float(frame["x"].min()), t) * 0.8, max(float(frame["x"].max()), t) * 1.25
        # The label goes on the side of the line with room for it, so the plot's edge never cuts it.
        right = math.log(t / lo) / math.log(hi / lo) > 0.6
        label = hv.Text(
            t, 0.5, f"SLA {t:.0f} ms " if right else f" SLA {t:.0f} ms", halign="right" if right else "left"
        ).opts(text_color=kit.OVER, text_font_size="10pt", text_font_style="bold")
        limit = hv.VLine(t).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        ticks = [(v, f"{v:g}") for v in log_ticks(lo, hi)]
        return (curves * limit * label).opts(
            hv.opts.Overlay(
                title=title,
                logx=True,
                xlim=(lo, hi),
                ylim=(0, 1.02),
                xticks=ticks or None,
                legend_position="bottom_right",
                framewise=True,
            )
        )

    @param.depends("run")
    def ttft_plot(self) -> hv.Overlay:
        """ECDF of time to first token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot(
            "ttft", TARGET.ttft, "Time to first token (TTFT)", "TTFT, arrival → first token (ms, log)"
        )

    @param.depends("run")
    def tpot_plot(self) -> hv.Overlay:
        """ECDF of time per output token (ms, log), all requests and per tier, with the SLA line."""
        return self._latency_plot(
            "tpot", TARGET.tpot, "Time per output token (TPOT)", "TPOT, mean gap between later tokens (ms, log)"
        )

    def _timeseries(self) -> tuple[pd.DataFrame, hv.VSpan]:
        r = self.run
        if r is None or r.result.timeseries.empty:
            zero = pd.DataFrame({"t": [0.0], "queue_depth": [0], "running": [0], "kv_utilization": [0.0]})
            return zero, hv.VSpan(0, 0).opts(alpha=0.0)
        ts, end = r.result.timeseries, float(r.result.timeseries["t"].max())
        span = hv.VSpan(r.workload.duration, end).opts(color="#555555", alpha=0.1 if end > r.workload.duration else 0)
        return ts, span

    @param.depends("run")
    def kv_plot(self) -> hv.Overlay:
        """KV-cache use of the pool holding KV over time, with the busiest instance's peak (the headline's)."""
        ts, span = self._timeseries()
        ts = ts.assign(kv_pct=100 * ts["kv_utilization"])
        pool = "decode" if self.run is not None and self.run.config.disaggregated else "all"
        peak = self.run.kv_peak_pct if self.run is not None else 0.0
        plot = kit.timeseries_plot(
            ts,
            "kv_pct",
            title="KV-cache use",
            ylabel=f"KV blocks in use, {pool} GPUs (%)",
            xlabel="simulated time (s; shaded: no new arrivals)",
            legend=False,
        )
        line = hv.HLine(peak).opts(color="#555555", line_dash="dotted", line_width=1.5)
        return (plot * span * line).opts(
            hv.opts.Overlay(
                title=f"KV-cache use (dotted: peak {peak:.1f}%)",
                ylim=(0, min(max(5.0, peak * 1.15), 105)),
                show_legend=False,
                framewise=True,
            )
        )

    @param.depends("run")
    def queue_plot(self) -> hv.Overlay:
        """Requests waiting for admission and requests running, over time."""
        ts, span = self._timeseries()
        names = {"queue_depth": "waiting (queue depth)", "running": "running (in a batch)"}
        long = ts.melt(id_vars="t", value_vars=list(names), var_name="what", value_name="requests")
        plot = kit.timeseries_plot(
            long.assign(what=long["what"].map(names)),
            "requests",
            by="what",
            step=True,
            colors=dict(zip(names.values(), (kit.OVER, "#1f77b4"))),
            title="Queue depth",
            ylabel="requests",
            xlabel="simulated time (s; shaded: no new arrivals)",
        )
        # Headroom above the highest line keeps the legend off the data.
        return (plot * span).opts(
            hv.opts.Overlay(
                title="Queue depth and running batch over time",
                ylim=(0, max(1.0, float(long["requests"].max())) * 1.45),
                legend_position="top_right",
                framewise=True,
            )
        )

    def _caption(self, sweep: Sweep) -> str:
        if sweep.example:
            return " (worked example at the default settings; press the button for yours)"
        return " (settings changed since: press again)" if sweep.setting != self.setting() else ""

    @param.depends("sweep", "run")
    def goodput_plot(self) -> hv.Overlay:
        """Goodput (% of requests within the SLA) against the arrival rate, the current load marked."""
        frame, x = self.sweep.table, ("rate", "arrival rate (req/s)")
        vdims = [
            ("goodput_pct", "goodput (% within SLA)"),
            ("ttft_p99_ms", "TTFT p99 (ms)"),
            ("tpot_p99_ms", "TPOT p99 (ms)"),
            ("tokens_per_s_per_gpu", "tokens/s per GPU"),
        ]
        curve = hv.Curve(frame, x, vdims).opts(color="#1f77b4", line_width=2)
        points = hv.Scatter(frame, x, vdims).opts(color="#1f77b4", size=8, tools=["hover"])
        now = hv.VLine(self.offered_rate()).opts(color="#000000", line_width=1.5, line_dash="dotted")
        target = hv.HLine(100 * ex.GOODPUT_TARGET).opts(color=kit.OVER, line_dash="dashed", line_width=2)
        return (curve * points * now * target).opts(
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
        names = {"total_gpus": "total GPUs", "prefill_gpus": "prefill GPUs", "decode_gpus": "decode GPUs"}
        long = self.plan.table.rename(columns=names).melt(
            id_vars="rate", value_vars=list(POOL_COLORS), var_name="pool", value_name="gpus"
        )
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
        now = hv.VLine(self.offered_rate()).opts(color="#000000", line_width=1.5, line_dash="dotted")
        return (lines * points * now).opts(
            hv.opts.Overlay(
                title="Smallest fleet for the SLA" + (" (worked example)" if self.plan.example else ""),
                xlabel="arrival rate (req/s; dotted: current load)",
                ylabel="GPUs",
                legend_position="top_left",
                framewise=True,
            )
        )

    @param.depends("sweep", "run")
    def sweep_note(self) -> pn.pane.Markdown:
        """What the goodput sweep was computed for."""
        s = self.sweep
        return pn.pane.Markdown(
            f"For {s.setting}; {len(s.table)} rates in {s.seconds:.1f} s{self._caption(s)}.",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )

    @param.depends("plan", "run")
    def plan_note(self) -> pn.pane.Markdown:
        """What the plan was computed for, and the rates no fleet of at most 64 GPUs serves."""
        p, missing = self.plan, int(self.plan.table["total_gpus"].isna().sum())
        more = f" {missing} rate(s) need more than {ex.PLAN_MAX_GPUS} GPUs (not drawn)." if missing else ""
        return pn.pane.Markdown(
            f"For {p.setting}; {len(p.table)} rates in {p.seconds:.1f} s{self._caption(p)}.{more}",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )

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
            pn.pane.Markdown(
                f"SLA: TTFT ≤ {TARGET.ttft * 1e3:.0f} ms, TPOT ≤ {TARGET.tpot * 1e3:.1f} ms (30 tokens/s); "
                "goodput counts requests meeting both. Block size and chunking also apply to the live "
                "engine. Priority is the tier (paid before free); *paid-first, aged* lets a free request "
                "rank like a paid one arriving 2 s later, so it is never starved.",
                margin=(0, 10),
            ),
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """The fleet tab (numbers, distributions, time series, sweeps) and the live-engine tab."""

        def sweep(button: pn.widgets.Button, bar: Any, note: Any, plot: Any) -> pn.Column:
            return pn.Column(
                button,
                bar,
                note,
                plot.clone(styles={}),
                sizing_mode="stretch_width",
                min_width=420,
                styles={"flex": "1 1 45%"},
            )

        sweeps = pn.FlexBox(
            sweep(self._sweep_button, self._progress, self.sweep_note, self._sweep_plot),
            sweep(self._plan_button, self._plan_progress, self.plan_note, self._plan_plot),
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
