"""A GPU cluster under a queue policy and a placement policy: who holds which GPU, stranding, JCT.

Lab 09's dashboard: ``dashboard(scheduler=my_scheduler, placer=my_placer)`` in a notebook, ``app()`` for
``syslab serve``. A recompute runs ``experiments.run_policy`` (one ``Simulation.run``, the failure an input)
for every queue policy, the chosen one with snapshots that the player steps through without simulating
again; the others' runs are cached, so changing only the scheduler reruns one simulation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.palettes import Category20

from lab_core.cluster import FGD, MIXES, PLACERS, SCHEDULERS, Cluster, Failure, Job, Workload, experiments, synthetic
from lab_core.cluster.calibrate import measured_migration_seconds
from lab_core.cluster.experiments import BACKFILL_DEPTH, COMPARE_COLUMNS, Frame, PolicyRun, cluster_at
from lab_core.cluster.fragmentation import stranded_gpus
from lab_core.cluster.placement import best_fit
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.schedulers import easy_backfill
from lab_core.cluster.simulator import SimResult
from lab_core.sim.progress import steps
from widgets import kit

YOURS = "yours"
PLACER_NAMES: tuple[str, ...] = (*PLACERS, "fgd")
FAILURES: dict[str, str] = {"none": "none", "one node": "node", "a whole rack": "rack"}
MARKS: dict[str, str] = {
    "stranded GPU (free, no queued job can use it)": kit.OVER,
    "node down": "#555555",
    "node reserved for the blocked head job": "#ff7f0e",
    "free GPU": "#dddddd",
}
# Category20 without the red and orange the marks use. More jobs run at once than any palette has
# colours, so colours repeat and each cell's label carries its job id.
JOB_COLORS: tuple[str, ...] = tuple(c for c in Category20[20] if c not in ("#ff7f0e", "#ffbb78", "#d62728", "#ff9896"))
RATIOS: dict[str, str] = {
    "utilisation": "GPU utilisation (% of live GPUs)",
    "fragmentation": "fragmentation (FGD, % of free GPUs)",
    "stranded": "stranded (% of free GPUs)",
}
RATIO_COLORS: dict[str, str] = dict(zip(RATIOS.values(), ("#1f77b4", "#9467bd", kit.OVER)))
#: The comparison table's columns and headers (units as in the plots); "fragmentation" may break where it is narrow.
#: The makespan, and the utilisation over it, are about the same for every scheduler: the headline gives them.
TITLES: dict[str, str] = {
    k: experiments.COMPARE_LABELS[k].replace("fragmentation", "frag\u00admentation")
    for k in (
        "scheduler",
        "done",
        "mean_jct_h",
        "p99_jct_h",
        "mean_wait_h",
        "arrival_utilisation_pct",
        "mean_stranded_pct",
        "mean_fragmentation_pct",
        "mean_queue",
        "restarts",
        "lost_gpu_hours",
        "seconds",
    )
}


@dataclass(frozen=True, eq=False)
class Run:
    """One recompute: the chosen scheduler's result and snapshots, the comparison and timings."""

    result: SimResult | None = None
    frames: tuple[Frame, ...] = ()
    shape: tuple[int, int, int, int] = (1, 1, 1, 1)
    scheduler: str = ""
    placer: str = ""
    failure: Failure | None = None
    compare: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPARE_COLUMNS))
    jct: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["scheduler", "jct_h", "share"]))
    seconds: float = 0.0
    main_seconds: float = 0.0
    compare_seconds: float = 0.0
    load: float = 0.0


class ClusterDashboard(kit.LabDashboard):
    """A GPU cluster simulated under a queue and a placement policy: the GPU map over time, stranding, JCT."""

    lab = "cluster"
    plugins = {
        "scheduler": kit.Plugin("queue policy", "lab_core.cluster.protocol.Scheduler", easy_backfill),
        "placer": kit.Plugin("placement policy", "lab_core.cluster.protocol.Placer", best_fit),
    }

    scheduler = param.Selector(default="easy_backfill", objects=list(SCHEDULERS), label="Scheduler (queue policy)")
    placer = param.Selector(default="best_fit", objects=list(PLACER_NAMES), label="Placer (which GPUs)")
    racks = param.Integer(2, bounds=(1, 4), label="Racks")
    nodes_per_rack = param.Integer(4, bounds=(1, 8), label="Nodes per rack")
    gpus_per_node = param.Selector(default=8, objects=[1, 2, 4, 8], label="GPUs per node")
    nvlink_domain = param.Selector(default=4, objects=[1, 2, 4, 8], label="NVLink domain (GPUs)")
    mix = param.Selector(default="heavy8", objects=list(MIXES), label="Workload mix")
    rate = param.Number(24.0, bounds=(1.0, 120.0), step=1.0, label="Arrival rate (jobs/hour)")
    burstiness = param.Number(1.0, bounds=(0.2, 5.0), step=0.1, label="Burstiness (gap CV; 1 = Poisson)")
    n_jobs = param.Integer(200, bounds=(20, 300), step=10, label="Jobs")
    priorities = param.Integer(2, bounds=(1, 4), label="Priority levels")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    failure = param.Selector(default="none", objects=FAILURES, label="Failure")
    fail_index = param.Integer(0, bounds=(0, 7), label="Failed node / rack (index)")
    fail_at = param.Number(2.0, bounds=(0.0, 24.0), step=0.25, label="Fails at (h)")
    repair_after = param.Number(1.0, bounds=(0.25, 12.0), step=0.25, label="Repaired after (h)")
    frame = param.Integer(0, bounds=(0, 1), label="Snapshot")
    run = param.ClassSelector(class_=Run, default=Run(), precedence=-1, doc="the latest recompute")

    def __init__(self, **params: object) -> None:
        # A name picks a built-in policy (``dashboard(scheduler="fifo")``); a callable is the student's, "yours".
        named = {k: params.pop(k) for k in ("scheduler", "placer") if isinstance(params.get(k), str)}
        super().__init__(**params)
        # "yours" is a valid choice only once this instance's objects include it.
        self.param.scheduler.objects = [*SCHEDULERS, *([YOURS] if "scheduler" in self.yours else [])]
        self.param.placer.objects = [*PLACER_NAMES, *([YOURS] if "placer" in self.yours else [])]
        with param.discard_events(self):
            self.scheduler = named.get("scheduler", YOURS if "scheduler" in self.yours else "easy_backfill")
            self.placer = named.get("placer", YOURS if "placer" in self.yours else "best_fit")
            self._index_bounds()
        self.colors = kit.colors_for([*SCHEDULERS, YOURS])
        self._cache_key: tuple | None = None
        self._cache: dict[str, tuple[PolicyRun | None, str | None]] = {}
        self._heat = pn.pane.HoloViews(hv.DynamicMap(self.heatmap_plot), sizing_mode="stretch_width")
        half = {"sizing_mode": "stretch_width", "min_width": 420, "styles": {"flex": "1 1 45%"}}
        # One legend over the ratios plot: inside it, it would hide the busiest hours.
        ratios = pn.Column(
            kit.color_key(RATIO_COLORS),
            pn.pane.HoloViews(hv.DynamicMap(self.ratios_plot), sizing_mode="stretch_width"),
            **half,
        )
        self._plots = pn.FlexBox(
            ratios,
            *(pn.pane.HoloViews(hv.DynamicMap(v), **half) for v in (self.queue_plot, self.jct_plot)),
            flex_wrap="wrap",
            sizing_mode="stretch_width",
        )
        self._player = pn.widgets.Player.from_param(
            self.param.frame,
            loop_policy="once",
            interval=250,
            show_value=False,
            sizing_mode="stretch_width",
            name="Play through the run",
        )
        self._step = pn.widgets.Button(label="Step ▶ (next snapshot)", color="primary")
        self._step.on_click(lambda _e: self.step())
        self.recompute()

    # ---- computing -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return int(self.racks), int(self.nodes_per_rack), int(self.gpus_per_node), int(self.nvlink_domain)

    def jobs(self) -> list[Job]:
        """The synthetic workload of the current settings (no job wider than the cluster)."""
        racks, npr, gpn, _ = self.shape
        return synthetic(
            int(self.n_jobs),
            rate=float(self.rate) / 3600.0,
            mix=self.mix,
            burstiness=float(self.burstiness),
            priorities=int(self.priorities),
            seed=int(self.seed),
            max_gpus=racks * npr * gpn,
        )

    def _scheduler_for(self, name: str) -> Scheduler:
        return self.yours["scheduler"] if name == YOURS else SCHEDULERS[name]()

    def _placer_for(self, name: str, jobs: Sequence[Job]) -> Placer:
        return (
            self.yours["placer"] if name == YOURS else FGD(Workload.from_jobs(jobs)) if name == "fgd" else PLACERS[name]
        )

    def _failure(self) -> Failure | None:
        if self.failure == "none":
            return None
        where = {self.failure: int(self.fail_index)}  # "node" or "rack", as Failure names them
        return Failure(self.fail_at * 3600.0, repair_after=self.repair_after * 3600.0, **where)

    @param.depends("racks", "nodes_per_rack", "failure", watch=True)
    def _index_bounds(self) -> None:
        """The failed node or rack index stays within the cluster."""
        top = max((self.racks if self.failure == "rack" else self.racks * self.nodes_per_rack) - 1, 0)
        self.param.fail_index.bounds = (0, top)
        if self.fail_index > top:
            self.fail_index = top  # triggers its own recompute; the one for this change follows

    def _simulate(self, errors: dict[str, str], timing: dict[str, float]) -> tuple[dict[str, PolicyRun], float]:
        """Every scheduler's run (cached ones reused, the chosen one always rerun with snapshots) and the load."""
        shape = self.shape
        Cluster.build(*shape)  # says which setting is wrong (e.g. an NVLink domain that does not divide the node)
        failure = self._failure()
        jobs = self.jobs()
        load = experiments.check_load(jobs, shape[0] * shape[1] * shape[2])
        names = [*SCHEDULERS, *([YOURS] if "scheduler" in self.yours else [])]
        key = (
            shape,
            self.mix,
            float(self.rate),
            float(self.burstiness),
            int(self.n_jobs),
            int(self.priorities),
            int(self.seed),
            failure,
            self.placer,
            tuple(names),
        )
        cache = dict(self._cache) if key == self._cache_key else {}
        cache.pop(self.scheduler, None)  # a cached comparison run has no snapshots
        todo = sorted((n for n in names if n not in cache), key=lambda n: n != self.scheduler)
        placer = self._placer_for(self.placer, jobs)
        with kit.loading(self._plots, self._heat):
            for name in steps(todo, kit.reporter(self._progress)):
                t0 = time.perf_counter()
                failed: dict[str, str] = {}
                run = self.attempt(
                    failed,
                    name,
                    experiments.run_policy,
                    shape,
                    jobs,
                    self._scheduler_for(name),
                    placer,
                    [failure] if failure else [],
                    frames=name == self.scheduler,
                )
                cache[name] = (run, failed.get(name) or (run.result.stopped if run else None))
                timing["main" if name == self.scheduler else "others"] += time.perf_counter() - t0
        self._cache_key, self._cache = key, cache
        errors.update({n: cache[n][1] for n in names if cache[n][1]})
        return {n: cache[n][0] for n in names if cache[n][0] is not None}, load

    @param.depends(
        "scheduler",
        "placer",
        "racks",
        "nodes_per_rack",
        "gpus_per_node",
        "nvlink_domain",
        "mix",
        "rate",
        "burstiness",
        "n_jobs",
        "priorities",
        "seed",
        "failure",
        "fail_index",
        "fail_at",
        "repair_after",
        watch=True,
    )
    def recompute(self) -> None:
        """Simulate the chosen scheduler with snapshots, and every other one unless cached; publish ``run``."""
        token = self.begin()
        started = time.perf_counter()
        errors: dict[str, str] = {}
        timing = {"main": 0.0, "others": 0.0}
        runs, load = self.attempt(errors, "settings", self._simulate, errors, timing) or ({}, 0.0)
        if not self.is_latest(token):
            return
        results = {name: r.result for name, r in runs.items()}
        chosen = runs.get(self.scheduler)
        run = Run(
            chosen.result if chosen else None,
            chosen.frames if chosen else (),
            self.shape,
            self.scheduler,
            self.placer,
            self._failure(),
            experiments.comparison(results),
            experiments.jct_distribution(results),
            time.perf_counter() - started,
            timing["main"],
            timing["others"],
            load,
        )
        last = max(len(run.frames) - 1, 1)
        frame = experiments.busiest_frame(run.frames) if run.frames else 0
        with param.parameterized.batch_call_watchers(self):
            self.param.frame.bounds = (0, last)
            self.param.update(run=run, frame=min(frame, last), errors=errors)

    def step(self) -> None:
        """Move to the next snapshot (stays on the last)."""
        self.frame = min(self.frame + 1, self.param.frame.bounds[1])

    # ---- data behind the plots (tidy frames, also what the tests look at) ------------------

    def current(self) -> Frame | None:
        """The snapshot the slider points at."""
        frames = self.run.frames
        return frames[min(self.frame, len(frames) - 1)] if frames else None

    def samples(self) -> pd.DataFrame:
        """The chosen run's metric samples (``SimResult.samples``) with time in hours as ``t_h``."""
        r = self.run.result
        s = (
            r.samples
            if r is not None
            else pd.DataFrame(columns=["t", "utilisation", "fragmentation", "stranded", "queue"])
        )
        return s.assign(t_h=s["t"] / 3600.0)

    def comparison(self) -> pd.DataFrame:
        """One row per scheduler (same jobs, placer and failure): ``experiments.comparison``'s columns."""
        return self.run.compare.copy()

    def gpu_map(self, index: int | None = None) -> pd.DataFrame:
        """``experiments.gpu_map`` of snapshot ``index`` (default: the slider's): one row per GPU slot."""
        frames = self.run.frames
        if not frames:
            return pd.DataFrame(columns=["node", "name", "rack", "gpu", "job", "free_pct", "state", "reserved"])
        return experiments.gpu_map(self.run.shape, frames[min(self.frame if index is None else index, len(frames) - 1)])

    # ---- views -----------------------------------------------------------------------------

    @param.depends("run", "frame")
    def heatmap_plot(self) -> hv.Overlay:
        """The GPU map at the slider's time: a cell per GPU coloured and labelled by job; stranded, down, reserved marked."""
        cells = self.gpu_map()
        racks, npr, gpn, dom = self.run.shape
        n = racks * npr
        f = self.current()
        cells = cells.assign(
            x0=cells["gpu"] - 0.45, x1=cells["gpu"] + 0.45, y0=cells["node"] - 0.42, y1=cells["node"] + 0.42
        )
        busy = cells[cells["job"] >= 0].copy()
        busy["color"] = [JOB_COLORS[j % len(JOB_COLORS)] for j in busy["job"]]
        # Category20 comes in (dark, light) pairs: white ids on the dark ones, dark ids on the light.
        dark = (busy["job"] % len(JOB_COLORS) % 2 == 0).to_numpy()
        vdims = ["name", "job", "free_pct", "state"]
        jobs = hv.Rectangles(busy, ["x0", "y0", "x1", "y1"], [*vdims, "color"]).opts(
            color="color", line_color="white", tools=["hover"]
        )
        ids = busy.assign(x=busy["gpu"], y=busy["node"], label=busy["job"].astype(str))
        labels = hv.Overlay(
            [
                hv.Labels(ids[on], ["x", "y"], "label").opts(text_font_size="8pt", text_color=ink)
                for on, ink in ((dark, "#ffffff"), (~dark, "#222222"))
            ]
        )
        free = hv.Rectangles(cells[cells["job"] < 0], ["x0", "y0", "x1", "y1"], vdims).opts(
            color="white", line_color=MARKS["free GPU"], line_width=1, tools=["hover"]
        )
        strand = cells[cells["state"] == "stranded"]
        crosses = hv.Points(strand.assign(x=strand["gpu"], y=strand["node"]), ["x", "y"], vdims).opts(
            marker="x", size=14, color=kit.OVER, line_width=3, tools=["hover"]
        )
        down_rows, held = (np.flatnonzero(~f.alive), np.flatnonzero(f.reserved)) if f else ((), ())
        down = hv.Rectangles([(-0.5, r - 0.5, gpn - 0.5, r + 0.5) for r in down_rows]).opts(
            color=MARKS["node down"], alpha=0.55, line_width=0
        )
        reserved = hv.Rectangles([(-0.5, r - 0.48, gpn - 0.5, r + 0.48) for r in held]).opts(
            fill_alpha=0.0, line_color=MARKS["node reserved for the blocked head job"], line_width=3, line_dash="dashed"
        )
        racks_lines = hv.Overlay(
            [hv.HLine(r * npr - 0.5).opts(color="#333333", line_width=2) for r in range(1, racks)]
            or [hv.HLine(-0.5).opts(alpha=0)]
        )
        domain_lines = hv.Overlay(
            [hv.VLine(d - 0.5).opts(color="#999999", line_dash="dotted") for d in range(dom, gpn, dom)]
            or [hv.VLine(-0.5).opts(alpha=0)]
        )
        queued = f.queue if f is not None else ()
        title = (
            f"GPU map at t = {f.t / 3600:.2f} h · {f.running} running, {len(queued)} queued "
            f"({sum(j.gpus for j in queued):g} GPUs) · label = job id (colours repeat)"
            if f
            else "GPU map (no run)"
        )
        names = [f"r{r}n{i}" for r in range(racks) for i in range(npr)]
        return (free * jobs * labels * crosses * down * reserved * racks_lines * domain_lines).opts(
            hv.opts.Overlay(
                title=title,
                xlabel="GPU slot (NVLink domains split by dotted lines)",
                ylabel="node (rack r, node n)",
                responsive=True,
                height=max(260, 34 * n + 90),
                xlim=(-0.5, gpn - 0.5),
                ylim=(n - 0.5, -0.5),
                xticks=list(range(gpn)),
                yticks=list(enumerate(names)),
                show_grid=False,
                toolbar="right",
                framewise=True,
                show_legend=False,
            )
        )

    def _now_line(self) -> hv.VLine:
        f = self.current()
        return hv.VLine(f.t / 3600.0 if f is not None else 0.0).opts(color="#000000", line_width=1.5)

    def _failure_span(self) -> hv.VSpan:
        fail = self.run.failure
        if fail is None:
            return hv.VSpan(0, 0).opts(alpha=0.0)
        return hv.VSpan(fail.at / 3600.0, (fail.at + fail.repair_after) / 3600.0).opts(color="#555555", alpha=0.15)

    @param.depends("run", "frame")
    def ratios_plot(self) -> hv.Overlay:
        """Utilisation, FGD fragmentation and stranded GPUs (percent) over time; the slider's time as a line."""
        s = self.samples()
        long = s.melt(id_vars="t_h", value_vars=list(RATIOS), var_name="metric", value_name="pct")
        long["metric"] = long["metric"].map(RATIOS)
        long["pct"] = long["pct"].astype(float) * 100.0
        if long.empty:
            long = pd.DataFrame({"t_h": [0.0], "pct": [0.0], "metric": [RATIOS["utilisation"]]})
        plot = kit.timeseries_plot(
            long,
            "pct",
            x="t_h",
            by="metric",
            title="Utilisation and fragmentation",
            xlabel="simulated time (h)",
            ylabel="share of GPUs (%)",
            colors=RATIO_COLORS,
            legend=False,
        )
        return (plot * self._failure_span() * self._now_line()).opts(
            hv.opts.Overlay(
                title="Utilisation, fragmentation, stranding", show_legend=False, ylim=(0, 105), framewise=True
            ),
            hv.opts.Curve(framewise=True),
        )

    @param.depends("run", "frame")
    def queue_plot(self) -> hv.Overlay:
        """Queue length over time (jobs waiting), the slider's time as a line."""
        s = self.samples()
        if s.empty:
            s = pd.DataFrame({"t_h": [0.0], "queue": [0]})
        plot = kit.timeseries_plot(
            s,
            "queue",
            x="t_h",
            title="Queue length",
            xlabel="simulated time (h)",
            ylabel="queue (jobs)",
            step=True,
            legend=False,
        )
        return (plot * self._failure_span() * self._now_line()).opts(
            hv.opts.Overlay(
                title=f"Queue length ({self.run.scheduler or '—'}, {self.run.placer or '—'})",
                show_legend=False,
                framewise=True,
            ),
            hv.opts.Curve(framewise=True),
        )

    @param.depends("run")
    def jct_plot(self) -> hv.NdOverlay:
        """Distribution (CDF) of job completion times per scheduler, the chosen placer for all."""
        jct = self.run.jct
        if jct.empty:
            jct = pd.DataFrame({"scheduler": [self.scheduler], "jct_h": [0.01], "share": [0.0]})
        return kit.timeseries_plot(
            jct,
            "share",
            x="jct_h",
            by="scheduler",
            step=True,
            colors=self.colors,
            title=f"JCT distribution per scheduler (placer {self.run.placer or self.placer})",
            xlabel="job completion time, submit → end (h, log)",
            ylabel="share of jobs done within",
        ).opts(logx=True, legend_position="right")

    @param.depends("run", "frame")
    def headline(self) -> pn.viewable.Viewable:
        """One sentence with the chosen run's numbers, the snapshot and the timings."""
        run = self.run
        row = run.compare[run.compare["scheduler"] == run.scheduler]
        f = self.current()
        if row.empty or f is None:
            return pn.pane.Markdown(f"No results; see the error above. Recomputed in {run.seconds * 1000:.0f} ms.")
        r, c, (racks, npr, gpn, _) = row.iloc[0], cluster_at(run.shape, f), run.shape
        arriving_h = float(run.result.jobs["submit"].max()) / 3600.0
        text = (
            f"**{run.scheduler}** + **{run.placer}** on {racks}×{npr} nodes × {gpn} GPUs "
            f"(offered load {run.load:.2f}): mean JCT **{r['mean_jct_h']:.2f} h**, p99 **{r['p99_jct_h']:.2f} h**, "
            f"mean wait {r['mean_wait_h']:.2f} h, GPU utilisation **{r['arrival_utilisation_pct']:.0f} % while "
            f"jobs arrive** (first {arriving_h:.1f} h; {r['makespan_utilisation_pct']:.0f} % over the whole "
            f"{r['makespan_h']:.1f} h run), {int(r['done'])} jobs done. At **t = {f.t / 3600:.2f} h** (snapshot "
            f"{self.frame} of {len(run.frames) - 1}): {c.free_gpus():g} GPUs free, "
            f"**{stranded_gpus(c, f.queue):g} stranded**, {int((~f.alive).sum())} nodes down, "
            f"{int(f.reserved.sum())} reserved. Recomputed in {run.seconds * 1000:.0f} ms ({run.scheduler}: "
            f"{run.main_seconds * 1000:.0f} ms, other schedulers: {run.compare_seconds * 1000:.0f} ms, 0 = cached)."
        )
        return pn.pane.Markdown(text, sizing_mode="stretch_width")

    def comparison_table(self) -> pn.widgets.Tabulator:
        """The summary numbers of every scheduler, same jobs, placer and failure, with units in the headers."""
        rows = pn.bind(lambda run: run.compare[list(TITLES)].round(2), self.param.run)
        return pn.widgets.Tabulator(
            rows,
            disabled=True,
            show_index=False,
            titles=TITLES,
            sizing_mode="stretch_width",
            layout="fit_columns",
            widths={"scheduler": 170},
            configuration={"columnDefaults": {"headerWordWrap": True}},
        )

    def controls(self) -> pn.Column:
        """The sidebar: policies, cluster, workload, failure, and the progress of a recompute."""
        return pn.Column(
            kit.controls(self, ["scheduler", "placer"], title="Policies"),
            kit.controls(self, ["racks", "nodes_per_rack", "gpus_per_node", "nvlink_domain"], title="Cluster"),
            kit.controls(
                self,
                ["mix", "rate", "burstiness", "n_jobs", "priorities", "seed"],
                title="Workload",
                widgets={"seed": pn.widgets.IntInput},
            ),
            kit.controls(self, ["failure", "fail_index", "fail_at", "repair_after"], title="Failure injection"),
            pn.pane.Markdown(
                f"Failures are noticed at once; the lost nodes' jobs restart from their last "
                f"checkpoint (every 30 min). A migration (defrag) costs "
                f"{measured_migration_seconds():.0f} s: a 7B-parameter job on 8 GPUs, from a checkpoint "
                f"written and read on this machine. Backfill looks at {BACKFILL_DEPTH} queued jobs.",
                margin=(0, 10),
            ),
            self._progress,
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Errors, headline, the player, the GPU map and its key, the time series, the JCT CDF, the comparison."""
        player = pn.Row(self._player, self._step, sizing_mode="stretch_width")
        return pn.Column(
            self.error_view,
            self.headline,
            player,
            self._heat,
            kit.color_key(MARKS),
            self._plots,
            pn.pane.Markdown("#### Every scheduler with this placer"),
            self.comparison_table(),
            sizing_mode="stretch_width",
        )


Dashboard = ClusterDashboard


def dashboard(
    scheduler: Scheduler | str | None = None, placer: Placer | str | None = None, **params: object
) -> ClusterDashboard:
    """The dashboard for a notebook; a ``scheduler`` (``View -> None``) or ``placer``
    (``(cluster, job, exclude=None) -> Placement | None``) callable appears as "yours" and is chosen;
    a name (``scheduler="fifo"``) picks a built-in one."""
    return ClusterDashboard(scheduler=scheduler, placer=placer, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
    return Dashboard.page()
