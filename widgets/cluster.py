"""A GPU cluster under a queue policy and a placement policy: who holds which GPU, stranding, JCT.

Lab 09's dashboard: ``dashboard(scheduler=my_scheduler, placer=my_placer)`` in a notebook, ``app()``
for ``syslab serve``. Each session owns a :class:`ClusterDashboard`. A recompute simulates the
chosen scheduler with snapshots of the cluster (``Cluster.owners()``, live and reserved nodes,
the queue) taken every ``horizon / FRAMES`` simulated seconds through ``Simulation.step``; the
time slider, the player and the step button move through those snapshots without simulating
again. The comparison (every scheduler with the chosen placer, same jobs, same failure) is
cached, so changing only the scheduler reruns one simulation.
"""
from __future__ import annotations

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

from lab_core.cluster import (
    FGD,
    FULL_GPU,
    MIXES,
    PLACERS,
    SCHEDULERS,
    Cluster,
    Job,
    SimConfig,
    SimResult,
    Simulation,
    Workload,
    stranded_gpus,
    stranded_mask,
    synthetic,
)
from widgets import kit

YOURS = "yours"
PLACER_NAMES: tuple[str, ...] = (*PLACERS, "fgd")
FAILURES: dict[str, str] = {"none": "none", "one node": "node", "a whole rack": "rack"}
FRAMES = 80  # snapshots over the arrival-and-run horizon; a run that queues longer gets more
SAMPLES = 120  # metric samples over the horizon (the simulator's default of 300 costs 40% of a run)
BACKFILL_DEPTH = 32  # queued jobs a backfill pass looks at (Slurm's bf_max_job_test); bounds the cost per pass
#: Offered load (GPU-hours asked per hour / GPUs) past which the queue only grows; refused, it would stall the page.
MAX_LOAD = 2.0
#: A run still not done after this many horizons is stopped (a scheduler that never starts anything).
STUCK_HORIZONS = 20.0
#: Wall-clock seconds one simulation may take before the dashboard gives up on it.
MAX_RUN_SECONDS = 10.0
MARKS: dict[str, str] = {
    "stranded GPU (free, no queued job can use it)": kit.OVER,
    "node down": "#555555",
    "node reserved for the blocked head job": "#ff7f0e",
    "free GPU": "#dddddd",
}
JOB_COLORS: tuple[str, ...] = (
    "#1f77b4", "#aec7e8", "#2ca02c", "#98df8a", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2",
    "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5", "#393b79", "#637939",
)
RATIOS: dict[str, str] = {"utilisation": "utilisation (of live GPUs)",
                          "fragmentation": "fragmentation ratio (FGD, of free GPUs)",
                          "stranded": "stranded ratio (of free GPUs)"}
RATIO_COLORS: dict[str, str] = dict(zip(RATIOS.values(), ("#1f77b4", "#9467bd", kit.OVER)))
COMPARE_COLUMNS = [
    "scheduler", "done", "mean_jct_h", "p50_jct_h", "p99_jct_h", "mean_wait_h", "makespan_h", "utilisation",
    "mean_stranded", "mean_fragmentation", "mean_queue", "restarts", "migrations", "lost_gpu_hours", "seconds",
]


@dataclass(frozen=True, eq=False)
class Frame:
    """The cluster at simulated time ``t``: job per GPU (-1 free), free share, live and reserved nodes, the queue."""

    t: float
    owners: np.ndarray
    free: np.ndarray
    cpu_free: np.ndarray
    mem_free: np.ndarray
    alive: np.ndarray
    reserved: np.ndarray
    queue: tuple[Job, ...]
    running: int


@dataclass(frozen=True)
class Failure:
    """Nodes (``kind`` "node") or a rack (``kind`` "rack") ``index`` dies at ``at`` s, back ``repair`` s later."""

    kind: str = "none"
    index: int = 0
    at: float = 0.0
    repair: float = 3600.0


@dataclass(frozen=True, eq=False)
class Run:
    """One recompute: the chosen scheduler's result and snapshots, the comparison, timings and errors."""

    result: SimResult | None = None
    frames: tuple[Frame, ...] = ()
    shape: tuple[int, int, int, int] = (1, 1, 1, 1)
    scheduler: str = ""
    placer: str = ""
    failure: Failure = Failure()
    compare: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPARE_COLUMNS))
    jct: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["scheduler", "jct_h"]))
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    main_seconds: float = 0.0
    compare_seconds: float = 0.0
    load: float = 0.0


def offered_load(jobs: Sequence[Job], gpus: int) -> float:
    """GPU-seconds asked for per second of arrivals, over the cluster's GPUs (>1: the queue grows)."""
    if not jobs:
        return 0.0
    span = max(max(j.submit for j in jobs) - min(j.submit for j in jobs), 1.0)
    return sum(j.gpus * j.duration for j in jobs) / span / gpus


def simulate(
    shape: tuple[int, int, int, int],
    jobs: Sequence[Job],
    scheduler: Callable[..., None],
    placer: Callable[..., object],
    failure: Failure,
    *,
    frames: bool = True,
    progress: Callable[[float], None] | None = None,
) -> tuple[SimResult, tuple[Frame, ...], str | None]:
    """Run ``jobs`` on a fresh cluster of ``shape`` (racks, nodes per rack, GPUs per node, NVLink domain).

    Returns the result, snapshots every ``horizon / FRAMES`` s (when ``frames``), and why the run was
    cut short (None when every job finished).
    """
    cluster = Cluster.build(*shape)
    horizon = max((j.submit + j.duration for j in jobs), default=1.0)
    sim = Simulation(cluster, [j.fresh() for j in jobs], scheduler, placer, SimConfig(backfill_depth=BACKFILL_DEPTH, sample_every=max(horizon / SAMPLES, 1.0)))
    if failure.kind != "none":
        def fail(_ev: object) -> None:
            if failure.kind == "node":
                sim.fail_nodes([failure.index], repair_after=failure.repair)
            else:
                sim.fail_rack(failure.index, repair_after=failure.repair)

        sim.env.timeout(failure.at).callbacks.append(fail)
    dt = horizon / FRAMES
    snaps: list[Frame] = []

    def snap() -> None:
        if frames:
            waiting = tuple(sim.queue[:BACKFILL_DEPTH])
            reserved = cluster.reserved.copy() if waiting else np.zeros(cluster.num_nodes, bool)
            snaps.append(Frame(sim.env.now, cluster.owners(), cluster.free.copy(), cluster.cpu_free.copy(),
                               cluster.mem_free.copy(), cluster.alive.copy(), reserved, waiting,
                               len(sim.running_view())))

    wall = time.perf_counter()
    stopped = None
    snap()
    while not sim.finished():
        if sim.env.now >= STUCK_HORIZONS * horizon:
            stopped = (f"stopped at t={sim.env.now / 3600:.1f} h with {len(sim.queue)} jobs still waiting and "
                       f"{len(sim.running_view())} running: does the scheduler start the jobs that fit?")
            break
        if time.perf_counter() - wall > MAX_RUN_SECONDS:
            stopped = f"stopped after {MAX_RUN_SECONDS:g} s of computing at t={sim.env.now / 3600:.1f} h"
            break
        sim.step(dt)
        snap()
        if progress is not None:
            progress(min(sim.env.now / horizon, 1.0))
    result = sim.result()
    result.summary["wall_seconds"] = time.perf_counter() - wall
    return result, tuple(snaps), stopped


def cluster_at(shape: tuple[int, int, int, int], frame: Frame) -> Cluster:
    """A cluster of ``shape`` with the free capacity, live and reserved nodes of ``frame`` (allocations not restored)."""
    c = Cluster.build(*shape)
    c.free[:] = frame.free
    c.cpu_free[:] = frame.cpu_free
    c.mem_free[:] = frame.mem_free
    c.alive[:] = frame.alive
    c.reserved[:] = frame.reserved
    return c


class ClusterDashboard(pn.viewable.Viewer):
    """A GPU cluster simulated under a queue and a placement policy: the GPU map over time, stranding, JCT."""

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

    def __init__(
        self,
        scheduler: Callable[..., None] | None = None,
        placer: Callable[..., object] | None = None,
        **params: object,
    ) -> None:
        # A name picks a built-in policy (``dashboard(scheduler="fifo")``); a callable is the student's, "yours".
        if isinstance(scheduler, str):
            params["scheduler"], scheduler = scheduler, None
        if isinstance(placer, str):
            params["placer"], placer = placer, None
        self._scheduler = scheduler
        self._placer = placer
        chosen_s = params.pop("scheduler", YOURS if scheduler is not None else "easy_backfill")
        chosen_p = params.pop("placer", YOURS if placer is not None else "best_fit")
        super().__init__(**params)
        # "yours" is a valid choice only once this instance's objects include it.
        self.param.scheduler.objects = [*SCHEDULERS, *([YOURS] if scheduler is not None else [])]
        self.param.placer.objects = [*PLACER_NAMES, *([YOURS] if placer is not None else [])]
        with param.discard_events(self):
            self.scheduler, self.placer = chosen_s, chosen_p
            self._index_bounds()
        self.colors = kit.colors_for([*SCHEDULERS, YOURS])
        self._progress = kit.progress_bar()
        self._runs = itertools.count()
        self._latest = -1
        self._cache_key: tuple | None = None
        self._cache: tuple[dict[str, SimResult], dict[str, str]] | None = None
        self._heat = pn.pane.HoloViews(hv.DynamicMap(self.heatmap_plot), sizing_mode="stretch_width")
        panes = [pn.pane.HoloViews(hv.DynamicMap(view), sizing_mode="stretch_width", min_width=420,
                                   styles={"flex": "1 1 45%"})
                 for view in (self.ratios_plot, self.queue_plot, self.jct_plot)]
        # One legend over the ratios plot: inside it, it would hide the busiest hours.
        panes[0] = pn.Column(kit.color_key(RATIO_COLORS), panes[0].clone(styles={}), sizing_mode="stretch_width",
                             min_width=420, styles={"flex": "1 1 45%"})
        self._plots = pn.FlexBox(*panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self._player = pn.widgets.Player.from_param(self.param.frame, loop_policy="once", interval=250,
                                                    show_value=False, sizing_mode="stretch_width",
                                                    name="Play through the run")
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
        return synthetic(int(self.n_jobs), rate=float(self.rate) / 3600.0, mix=self.mix,
                         burstiness=float(self.burstiness), priorities=int(self.priorities), seed=int(self.seed),
                         max_gpus=racks * npr * gpn)

    def _scheduler_for(self, name: str) -> Callable[..., None]:
        return self._scheduler if name == YOURS else SCHEDULERS[name]()

    def _placer_for(self, name: str, jobs: Sequence[Job]) -> Callable[..., object]:
        if name == YOURS:
            return self._placer
        return FGD(Workload.from_jobs(jobs)) if name == "fgd" else PLACERS[name]

    def _failure(self) -> Failure:
        return Failure(self.failure, int(self.fail_index), float(self.fail_at) * 3600.0, float(self.repair_after) * 3600.0)

    @param.depends("racks", "nodes_per_rack", "failure", watch=True)
    def _index_bounds(self) -> None:
        """The failed node or rack index stays within the cluster."""
        top = max((self.racks if self.failure == "rack" else self.racks * self.nodes_per_rack) - 1, 0)
        self.param.fail_index.bounds = (0, top)
        if self.fail_index > top:
            self.fail_index = top  # triggers its own recompute; the one for this change follows

    @param.depends("scheduler", "placer", "racks", "nodes_per_rack", "gpus_per_node", "nvlink_domain", "mix",
                   "rate", "burstiness", "n_jobs", "priorities", "seed", "failure", "fail_index", "fail_at",
                   "repair_after", watch=True)
    def recompute(self) -> None:
        """Simulate the chosen scheduler with snapshots, and every other one unless cached; publish ``run``."""
        generation = self._latest = next(self._runs)
        started = time.perf_counter()
        errors: dict[str, str] = {}
        result, frames, load = None, (), 0.0
        compare_seconds = main_seconds = 0.0
        results: dict[str, SimResult] = {}
        failure = self._failure()
        try:
            shape = self.shape
            Cluster.build(*shape)  # says which setting is wrong (e.g. an NVLink domain that does not divide the node)
            jobs = self.jobs()
            load = offered_load(jobs, shape[0] * shape[1] * shape[2])
            if load > MAX_LOAD:
                raise ValueError(f"the jobs ask for {load:.2f}× the cluster's GPUs (more than {MAX_LOAD:g}×): the "
                                 "queue would only grow; lower the arrival rate or enlarge the cluster.")
            names = [*SCHEDULERS, *([YOURS] if self._scheduler is not None else [])]
            key = (shape, self.mix, float(self.rate), float(self.burstiness), int(self.n_jobs), int(self.priorities),
                   int(self.seed), failure, self.placer, tuple(names))
            cached = self._cache if key == self._cache_key else None
            todo = [self.scheduler] + ([n for n in names if n != self.scheduler] if cached is None else [])
            # Every scheduler's result and error, the chosen one's replaced by this run (with snapshots).
            done, failed = ({}, {}) if cached is None else (dict(cached[0]), dict(cached[1]))
            placer = self._placer_for(self.placer, jobs)
            with kit.loading(self._plots, self._heat):
                for name in kit.track(todo, self._progress):
                    done.pop(name, None)
                    failed.pop(name, None)
                    main = name == self.scheduler
                    t0 = time.perf_counter()
                    try:
                        res, snaps, stopped = simulate(shape, jobs, self._scheduler_for(name), placer, failure,
                                                       frames=main)
                        done[name] = res
                        if stopped:
                            failed[name] = stopped
                        if main:
                            result, frames = res, snaps
                    except Exception as exc:  # the student's code may raise anything; show it, keep the page
                        failed[name] = kit.describe(exc)
                    if main:
                        main_seconds = time.perf_counter() - t0
                    else:
                        compare_seconds += time.perf_counter() - t0
            self._cache_key, self._cache = key, (done, failed)
            results = {n: done[n] for n in names if n in done}
            errors.update({n: failed[n] for n in names if n in failed})
        except Exception as exc:
            errors["settings"] = kit.describe(exc)
        if generation != self._latest:
            return
        compare, jct = self._tables(results)
        run = Run(result, frames, self.shape, self.scheduler, self.placer, failure, compare, jct, errors,
                  time.perf_counter() - started, main_seconds, compare_seconds, load)
        last = max(len(frames) - 1, 1)
        frame = self._default_frame(run) if frames else 0
        with param.parameterized.batch_call_watchers(self):
            self.param.frame.bounds = (0, last)
            self.param.update(run=run, frame=min(frame, last))

    @staticmethod
    def _tables(results: dict[str, SimResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows, parts = [], []
        for name, r in results.items():
            s = r.summary
            h = lambda k: s.get(k, math.nan) / 3600.0  # noqa: E731
            rows.append({
                "scheduler": name, "done": int(s.get("done", 0)), "mean_jct_h": h("mean_jct"),
                "p50_jct_h": h("p50_jct"), "p99_jct_h": h("p99_jct"), "mean_wait_h": h("mean_wait"),
                "makespan_h": h("makespan"), "utilisation": s.get("utilisation", math.nan),
                "mean_stranded": s.get("mean_stranded", math.nan),
                "mean_fragmentation": s.get("mean_fragmentation", math.nan), "mean_queue": s.get("mean_queue", math.nan),
                "restarts": int(s.get("restarts", 0)), "migrations": int(s.get("migrations", 0)),
                "lost_gpu_hours": s.get("lost_gpu_hours", 0.0), "seconds": s.get("wall_seconds", math.nan),
            })
            done = r.jobs[r.jobs["state"] == "done"] if len(r.jobs) else r.jobs
            jct = np.sort(done["jct"].to_numpy(dtype=float) / 3600.0) if len(done) else np.empty(0)
            parts.append(pd.DataFrame({"scheduler": name, "jct_h": jct,
                                       "share": np.arange(1, jct.size + 1) / max(jct.size, 1)}))
        compare = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
        jct = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["scheduler", "jct_h", "share"])
        return compare, jct

    @staticmethod
    def _default_frame(run: Run) -> int:
        """The snapshot with the most queued GPUs (the cluster under most pressure), else the middle one."""
        queued = [sum(j.gpus for j in f.queue) for f in run.frames]
        return int(np.argmax(queued)) if max(queued, default=0) > 0 else len(run.frames) // 2

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
        if r is None or not len(r.samples):
            return pd.DataFrame(columns=["t", "t_h", "utilisation", "fragmentation", "stranded", "queue"])
        return r.samples.assign(t_h=r.samples["t"] / 3600.0)

    def comparison(self) -> pd.DataFrame:
        """One row per scheduler (same jobs, placer and failure): JCT, waiting, utilisation, stranding ... (hours)."""
        return self.run.compare.copy()

    def gpu_map(self, index: int | None = None) -> pd.DataFrame:
        """One row per GPU slot of snapshot ``index`` (default: the slider's): node, gpu, job (-1 free), state.

        ``state`` is "busy", "free", "stranded", "down" (node dead) or "reserved" (free on a reserved node).
        """
        cols = ["node", "name", "rack", "gpu", "job", "free_pct", "state", "reserved"]
        frames = self.run.frames
        if not frames:
            return pd.DataFrame(columns=cols)
        f = frames[min(self.frame if index is None else index, len(frames) - 1)]
        c = cluster_at(self.run.shape, f)
        stranded = stranded_mask(c, f.queue)
        nodes, gpus = np.nonzero(c.exists)
        state = np.where(f.owners[nodes, gpus] >= 0, "busy", "free").astype(object)
        state[stranded[nodes, gpus]] = "stranded"
        state[f.reserved[nodes] & (state == "free")] = "reserved"
        state[~f.alive[nodes]] = "down"
        return pd.DataFrame({
            "node": nodes, "name": [c.nodes[n].name for n in nodes], "rack": c.rack[nodes], "gpu": gpus,
            "job": f.owners[nodes, gpus], "free_pct": f.free[nodes, gpus] / FULL_GPU * 100.0, "state": state,
            "reserved": f.reserved[nodes],
        }, columns=cols)

    # ---- views -----------------------------------------------------------------------------

    @param.depends("run", "frame")
    def heatmap_plot(self) -> hv.Overlay:
        """The GPU map at the slider's time: a cell per GPU coloured by job; stranded, down and reserved marked."""
        cells = self.gpu_map()
        racks, npr, gpn, dom = self.run.shape
        n = racks * npr
        f = self.current()
        t_h = f.t / 3600.0 if f is not None else 0.0
        cells = cells.assign(x0=cells["gpu"] - 0.45, x1=cells["gpu"] + 0.45, y0=cells["node"] - 0.42,
                             y1=cells["node"] + 0.42)
        busy = cells[cells["job"] >= 0].copy()
        busy["color"] = [JOB_COLORS[j % len(JOB_COLORS)] for j in busy["job"]]
        vdims = ["name", "job", "free_pct", "state"]
        xlabel, ylabel = "GPU slot (NVLink domains split by dotted lines)", "node (rack r, node n)"
        jobs = hv.Rectangles(busy, ["x0", "y0", "x1", "y1"], [*vdims, "color"]).opts(
            color="color", line_color="white", tools=["hover"])
        free = hv.Rectangles(cells[cells["job"] < 0], ["x0", "y0", "x1", "y1"], vdims).opts(
            color="white", line_color=MARKS["free GPU"], line_width=1, tools=["hover"])
        strand = cells[cells["state"] == "stranded"]
        crosses = hv.Points(strand.assign(x=strand["gpu"], y=strand["node"]), ["x", "y"], vdims).opts(
            marker="x", size=14, color=kit.OVER, line_width=3, tools=["hover"])
        down_rows = np.flatnonzero(~f.alive) if f is not None else np.empty(0, int)
        down = hv.Rectangles([(-0.5, r - 0.5, gpn - 0.5, r + 0.5) for r in down_rows]).opts(
            color=MARKS["node down"], alpha=0.55, line_width=0)
        held = np.flatnonzero(f.reserved) if f is not None else np.empty(0, int)
        reserved = hv.Rectangles([(-0.5, r - 0.48, gpn - 0.5, r + 0.48) for r in held]).opts(
            fill_alpha=0.0, line_color=MARKS["node reserved for the blocked head job"], line_width=3,
            line_dash="dashed")
        racks_lines = hv.Overlay([hv.HLine(r * npr - 0.5).opts(color="#333333", line_width=2)
                                  for r in range(1, racks)] or [hv.HLine(-0.5).opts(alpha=0)])
        domain_lines = hv.Overlay([hv.VLine(d - 0.5).opts(color="#999999", line_dash="dotted")
                                   for d in range(dom, gpn, dom)] or [hv.VLine(-0.5).opts(alpha=0)])
        queued = f.queue if f is not None else ()
        title = (f"GPU map at t = {t_h:.2f} h · {f.running if f else 0} running, {len(queued)} queued "
                 f"({sum(j.gpus for j in queued):g} GPUs) · colour = job id" if f else "GPU map (no run)")
        names = [f"r{r}n{i}" for r in range(racks) for i in range(npr)]
        return (free * jobs * crosses * down * reserved * racks_lines * domain_lines).opts(
            hv.opts.Overlay(
                title=title, xlabel=xlabel, ylabel=ylabel, responsive=True, height=max(260, 34 * n + 90),
                xlim=(-0.5, gpn - 0.5), ylim=(n - 0.5, -0.5), xticks=list(range(gpn)),
                yticks=list(enumerate(names)), show_grid=False, toolbar="right", framewise=True,
                show_legend=False,
            ))

    def _now_line(self) -> hv.VLine:
        f = self.current()
        return hv.VLine(f.t / 3600.0 if f is not None else 0.0).opts(color="#000000", line_width=1.5)

    def _failure_span(self) -> hv.VSpan:
        fail = self.run.failure
        if fail.kind == "none":
            return hv.VSpan(0, 0).opts(alpha=0.0)
        return hv.VSpan(fail.at / 3600.0, (fail.at + fail.repair) / 3600.0).opts(color="#555555", alpha=0.15)

    @param.depends("run", "frame")
    def ratios_plot(self) -> hv.Overlay:
        """Utilisation, FGD fragmentation ratio and stranded ratio over time; the slider's time as a line."""
        s = self.samples()
        names = RATIOS
        long = s.melt(id_vars="t_h", value_vars=list(names), var_name="metric", value_name="share")
        long["metric"] = long["metric"].map(names)
        if long.empty:
            long = pd.DataFrame({"t_h": [0.0], "share": [0.0], "metric": [names["utilisation"]]})
        colors = RATIO_COLORS
        plot = kit.timeseries_plot(long, "share", x="t_h", by="metric", title="Utilisation and fragmentation",
                                   xlabel="simulated time (h)", ylabel="share (0–1)", colors=colors, legend=False)
        return (plot * self._failure_span() * self._now_line()).opts(
            hv.opts.Overlay(title="Utilisation, fragmentation, stranding",
                            show_legend=False, ylim=(0, 1.05), framewise=True),
            hv.opts.Curve(framewise=True))

    @param.depends("run", "frame")
    def queue_plot(self) -> hv.Overlay:
        """Queue length over time (jobs waiting), the slider's time as a line."""
        s = self.samples()
        if s.empty:
            s = pd.DataFrame({"t_h": [0.0], "queue": [0]})
        plot = kit.timeseries_plot(s, "queue", x="t_h", title="Queue length", xlabel="simulated time (h)",
                                   ylabel="queued jobs", step=True, legend=False)
        return (plot * self._failure_span() * self._now_line()).opts(
            hv.opts.Overlay(title=f"Queue length ({self.run.scheduler or '—'}, {self.run.placer or '—'})",
                            show_legend=False, framewise=True),
            hv.opts.Curve(framewise=True))

    @param.depends("run")
    def jct_plot(self) -> hv.NdOverlay:
        """Distribution (CDF) of job completion times per scheduler, the chosen placer for all."""
        jct = self.run.jct
        if jct.empty:
            jct = pd.DataFrame({"scheduler": [self.scheduler], "jct_h": [0.01], "share": [0.0]})
        return kit.timeseries_plot(
            jct, "share", x="jct_h", by="scheduler", step=True, colors=self.colors,
            title=f"JCT distribution per scheduler (placer {self.run.placer or self.placer})",
            xlabel="job completion time, submit → end (h, log)", ylabel="share of jobs done within",
        ).opts(logx=True, legend_position="right")

    @param.depends("run", "frame")
    def headline(self) -> pn.viewable.Viewable:
        """One sentence with the chosen run's numbers, the snapshot and the timings."""
        run = self.run
        row = run.compare[run.compare["scheduler"] == run.scheduler]
        f = self.current()
        if row.empty or f is None:
            return pn.pane.Markdown(f"No results; see the error above. Recomputed in {run.seconds * 1000:.0f} ms.")
        r = row.iloc[0]
        racks, npr, gpn, dom = run.shape
        c = cluster_at(run.shape, f)
        stranded = stranded_gpus(c, f.queue)
        text = (f"**{run.scheduler}** + **{run.placer}** on {racks}×{npr} nodes × {gpn} GPUs "
                f"(offered load {run.load:.2f}): mean JCT **{r['mean_jct_h']:.2f} h**, p99 **{r['p99_jct_h']:.2f} h**, "
                f"mean wait {r['mean_wait_h']:.2f} h, utilisation {r['utilisation']:.0%}, "
                f"{int(r['done'])} jobs done. At **t = {f.t / 3600:.2f} h** (snapshot {self.frame} of "
                f"{len(run.frames) - 1}): {c.free_gpus():g} GPUs free, **{stranded:g} stranded**, "
                f"{int((~f.alive).sum())} nodes down, {int(f.reserved.sum())} reserved. "
                f"Recomputed in {run.seconds * 1000:.0f} ms ({run.scheduler}: {run.main_seconds * 1000:.0f} ms, "
                f"other schedulers: {run.compare_seconds * 1000:.0f} ms, 0 = cached).")
        return pn.pane.Markdown(text, sizing_mode="stretch_width")

    @param.depends("run")
    def error_view(self) -> pn.viewable.Viewable:
        """What went wrong, per scheduler or setting (your code's exceptions land here instead of crashing the page)."""
        lines = "\n".join(f"- **{k}**: `{v}`" for k, v in self.run.errors.items())
        return pn.pane.Alert(f"Could not simulate:\n\n{lines}", alert_type="danger",
                             visible=bool(self.run.errors), sizing_mode="stretch_width")

    def comparison_table(self) -> pn.widgets.Tabulator:
        """The summary numbers of every scheduler, same jobs, placer and failure."""
        titles = {"mean_jct_h": "JCT (h)", "p50_jct_h": "p50 (h)", "p99_jct_h": "p99 (h)",
                  "mean_wait_h": "wait (h)", "makespan_h": "makespan (h)", "utilisation": "util.", "done": "done",
                  "mean_stranded": "stranded", "mean_fragmentation": "frag.", "mean_queue": "queue",
                  "restarts": "restarts", "lost_gpu_hours": "lost GPU·h", "seconds": "wall (s)"}

        def table(run: Run) -> pd.DataFrame:
            # Makespan is the same for every scheduler unless one falls far behind; wall time shows cost.
            return run.compare.drop(columns=["migrations", "makespan_h", "p50_jct_h"]).round(2)

        return pn.widgets.Tabulator(pn.bind(table, self.param.run), disabled=True, show_index=False, titles=titles,
                                    sizing_mode="stretch_width", layout="fit_columns", widths={"scheduler": 170})

    def controls(self) -> pn.Column:
        """The sidebar: policies, cluster, workload, failure, and the player over the run."""
        return pn.Column(
            kit.controls(self, ["scheduler", "placer"], title="Policies"),
            kit.controls(self, ["racks", "nodes_per_rack", "gpus_per_node", "nvlink_domain"], title="Cluster"),
            kit.controls(self, ["mix", "rate", "burstiness", "n_jobs", "priorities", "seed"], title="Workload",
                         widgets={"seed": pn.widgets.IntInput}),
            kit.controls(self, ["failure", "fail_index", "fail_at", "repair_after"], title="Failure injection"),
            pn.pane.Markdown(f"Failures are noticed at once; the lost nodes' jobs restart from their last "
                             f"checkpoint (every 30 min). Backfill looks at {BACKFILL_DEPTH} queued jobs.",
                             margin=(0, 10)),
            self._progress,
            sizing_mode="stretch_width",
        )

    def player(self) -> pn.Column:
        """Time through the run: the player (a slider with play buttons) and the step button."""
        return pn.Row(self._player, self._step, sizing_mode="stretch_width")

    def main(self) -> pn.Column:
        """Errors, headline, the player, the GPU map and its key, the time series, the JCT CDF, the comparison."""
        return pn.Column(self.error_view, self.headline, self.player(), self._heat, kit.color_key(MARKS),
                         self._plots, pn.pane.Markdown("#### Every scheduler with this placer"),
                         self.comparison_table(), sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(
    scheduler: Callable[..., None] | None = None,
    placer: Callable[..., object] | None = None,
    **params: object,
) -> ClusterDashboard:
    """The dashboard for a notebook; a ``scheduler`` (``View -> None``) or ``placer``
    (``(cluster, job, exclude=None) -> Placement | None``) callable appears as "yours" and is chosen;
    a name (``scheduler="fifo"``) picks a built-in one."""
    return ClusterDashboard(scheduler=scheduler, placer=placer, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = ClusterDashboard()
    return pn.template.FastListTemplate(
        title="Lab 09 · GPU cluster scheduler",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
