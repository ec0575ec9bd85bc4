"""A GPU cluster under a queue policy and a placement policy: who holds which GPU, stranding, JCT.

Lab 09's dashboard: ``dashboard(scheduler=my_scheduler, placer=my_placer)`` in a notebook, ``app()`` for
``syslab serve``. A recompute runs ``experiments.run_policy`` (one ``Simulation.run``, the failure an input)
for every queue policy, the chosen one with snapshots that the player steps through without simulating
again; the others' runs are cached, so changing only the scheduler reruns one simulation.
"""

from __future__ import annotations

import time

import holoviews as hv
import pandas as pd
import panel as pn
import param
from bokeh.palettes import Category20

from lab_core.cluster import MIXES, PLACERS, SCHEDULERS, Cluster, Failure, Job, experiments
from lab_core.cluster.calibrate import measured_migration_seconds
from lab_core.cluster.experiments import BACKFILL_DEPTH, RATIO_LABELS, Frame, PolicyRun
from lab_core.cluster.experiments import TABLE_TITLES as TITLES
from lab_core.cluster.experiments import Recompute as Run
from lab_core.cluster.placement import best_fit
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.schedulers import easy_backfill
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
RATIO_COLORS: dict[str, str] = dict(zip(RATIO_LABELS.values(), ("#1f77b4", "#9467bd", kit.OVER)))
#: What a GPU cell's hover shows.
CELL_INFO = ["name", "job", "free_pct", "state"]
#: The sidebar's groups of settings (the workload's as ``experiments.workload`` names them); each recomputes.
GROUPS: dict[str, list[str]] = {
    "Policies": ["scheduler", "placer"],
    "Cluster": ["racks", "nodes_per_rack", "gpus_per_node", "nvlink_domain"],
    "Workload": ["mix", "rate", "burstiness", "n_jobs", "priorities", "seed"],
    "Failure injection": ["failure", "fail_index", "fail_at", "repair_after"],
}


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
        self._cache = experiments.RunCache()
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

    def _workload(self) -> dict[str, object]:
        """The settings the jobs come from, by ``experiments.workload``'s names."""
        return {name: getattr(self, name) for name in GROUPS["Workload"]}

    def jobs(self) -> list[Job]:
        """The synthetic workload of the current settings (no job wider than the cluster)."""
        return experiments.workload(self.shape, **self._workload())

    def _scheduler_for(self, name: str) -> Scheduler:
        return self.yours["scheduler"] if name == YOURS else SCHEDULERS[name]()

    def _failure(self) -> Failure | None:
        return experiments.failure_from(self.failure, int(self.fail_index), self.fail_at, self.repair_after)

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
        key = (shape, *self._workload().values(), failure, self.placer, tuple(names))
        cache = self._cache.reusable(key, self.scheduler)
        todo = sorted((n for n in names if n not in cache), key=lambda n: n != self.scheduler)
        placer = self.yours["placer"] if self.placer == YOURS else experiments.placer(self.placer, jobs)
        with kit.loading(self._plots, self._heat):
            for name in steps(todo, kit.reporter(self._progress)):
                t0 = time.perf_counter()
                failed: dict[str, str] = {}
                inputs = (shape, jobs, self._scheduler_for(name), placer, [failure] if failure else [])
                run = self.attempt(failed, name, experiments.run_policy, *inputs, frames=name == self.scheduler)
                cache[name] = (run, failed.get(name) or (run.result.stopped if run else None))
                timing["main_seconds" if name == self.scheduler else "compare_seconds"] += time.perf_counter() - t0
        self._cache = experiments.RunCache(key, cache)
        errors.update({n: cache[n][1] for n in names if cache[n][1]})
        return {n: cache[n][0] for n in names if cache[n][0] is not None}, load

    @param.depends(*(name for names in GROUPS.values() for name in names), watch=True)
    def recompute(self) -> None:
        """Simulate the chosen scheduler with snapshots, and every other one unless cached; publish ``run``."""
        token = self.begin()
        started = time.perf_counter()
        errors: dict[str, str] = {}
        timing = {"main_seconds": 0.0, "compare_seconds": 0.0}
        runs, load = self.attempt(errors, "settings", self._simulate, errors, timing) or ({}, 0.0)
        if not self.is_latest(token):
            return
        timing["seconds"] = time.perf_counter() - started
        run = experiments.recompute_of(runs, self.scheduler, self.placer, self.shape, self._failure(), load, **timing)
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
        return self.run.frame(self.frame)

    def samples(self) -> pd.DataFrame:
        """The chosen run's metric samples (``SimResult.samples``) with time in hours as ``t_h``."""
        return self.run.samples()

    def comparison(self) -> pd.DataFrame:
        """One row per scheduler (same jobs, placer and failure): ``experiments.comparison``'s columns."""
        return self.run.compare.copy()

    def gpu_map(self, index: int | None = None) -> pd.DataFrame:
        """``experiments.gpu_map`` of snapshot ``index`` (default: the slider's): one row per GPU slot."""
        return experiments.gpu_map(self.run.shape, self.run.frame(self.frame if index is None else index))

    # ---- views -----------------------------------------------------------------------------

    @param.depends("run", "frame")
    def heatmap_plot(self) -> hv.Overlay:
        """The GPU map at the slider's time: a cell per GPU coloured and labelled by job; stranded, down, reserved marked."""
        m = experiments.map_layers(self.run.shape, self.current(), self.gpu_map(), len(JOB_COLORS))
        busy = m.busy.assign(color=[JOB_COLORS[i] for i in m.busy["palette"]])
        jobs = hv.Rectangles(busy, ["x0", "y0", "x1", "y1"], [*CELL_INFO, "color"]).opts(
            color="color", line_color="white", tools=["hover"]
        )
        # Category20 comes in (dark, light) pairs: white ids on the dark ones, dark ids on the light.
        labels = hv.Overlay(
            [
                hv.Labels(busy[busy["dark"] == on], ["x", "y"], "label").opts(text_font_size="8pt", text_color=ink)
                for on, ink in ((True, "#ffffff"), (False, "#222222"))
            ]
        )
        free = hv.Rectangles(m.cells[m.cells["job"] < 0], ["x0", "y0", "x1", "y1"], CELL_INFO).opts(
            color="white", line_color=MARKS["free GPU"], line_width=1, tools=["hover"]
        )
        crosses = hv.Points(m.stranded, ["x", "y"], CELL_INFO).opts(
            marker="x", size=14, color=kit.OVER, line_width=3, tools=["hover"]
        )
        down = hv.Rectangles(m.down).opts(color=MARKS["node down"], alpha=0.55, line_width=0)
        reserved = hv.Rectangles(m.reserved).opts(
            fill_alpha=0.0, line_color=MARKS["node reserved for the blocked head job"], line_width=3, line_dash="dashed"
        )
        racks_lines = hv.Overlay(
            [hv.HLine(y).opts(color="#333333", line_width=2) for y in m.rack_lines] or [hv.HLine(-0.5).opts(alpha=0)]
        )
        domain_lines = hv.Overlay(
            [hv.VLine(x).opts(color="#999999", line_dash="dotted") for x in m.domain_lines]
            or [hv.VLine(-0.5).opts(alpha=0)]
        )
        n, gpn = len(m.names), self.run.shape[2]
        return (free * jobs * labels * crosses * down * reserved * racks_lines * domain_lines).opts(
            hv.opts.Overlay(
                title=m.title,
                xlabel="GPU slot (NVLink domains split by dotted lines)",
                ylabel="node (rack r, node n)",
                responsive=True,
                height=max(260, 34 * n + 90),
                xlim=(-0.5, gpn - 0.5),
                ylim=(n - 0.5, -0.5),
                xticks=list(range(gpn)),
                yticks=list(enumerate(m.names)),
                show_grid=False,
                toolbar="right",
                framewise=True,
                show_legend=False,
            )
        )

    def _over_time(self, plot: hv.Element, title: str, **overlay: object) -> hv.Overlay:
        """``plot`` with the failure's span and the slider's time as a line."""
        f, down = self.current(), self.run.failure_hours()
        span = hv.VSpan(*down).opts(color="#555555", alpha=0.15) if down else hv.VSpan(0, 0).opts(alpha=0.0)
        now = hv.VLine(f.t / 3600.0 if f is not None else 0.0).opts(color="#000000", line_width=1.5)
        return (plot * span * now).opts(
            hv.opts.Overlay(title=title, show_legend=False, framewise=True, **overlay),
            hv.opts.Curve(framewise=True),
        )

    @param.depends("run", "frame")
    def ratios_plot(self) -> hv.Overlay:
        """Utilisation, FGD fragmentation and stranded GPUs (percent) over time; the slider's time as a line."""
        plot = kit.timeseries_plot(
            experiments.ratio_series(self.samples()),
            "pct",
            x="t_h",
            by="metric",
            title="Utilisation and fragmentation",
            xlabel="simulated time (h)",
            ylabel="share of GPUs (%)",
            colors=RATIO_COLORS,
            legend=False,
        )
        return self._over_time(plot, "Utilisation, fragmentation, stranding", ylim=(0, 105))

    @param.depends("run", "frame")
    def queue_plot(self) -> hv.Overlay:
        """Queue length over time (jobs waiting), the slider's time as a line."""
        plot = kit.timeseries_plot(
            experiments.queue_series(self.samples()),
            "queue",
            x="t_h",
            title="Queue length",
            xlabel="simulated time (h)",
            ylabel="queue (jobs)",
            step=True,
            legend=False,
        )
        return self._over_time(plot, f"Queue length ({self.run.scheduler or '—'}, {self.run.placer or '—'})")

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
        return pn.pane.Markdown(experiments.headline(self.run, self.frame), sizing_mode="stretch_width")

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
            *(kit.controls(self, names, title=t, widgets={"seed": pn.widgets.IntInput}) for t, names in GROUPS.items()),
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
