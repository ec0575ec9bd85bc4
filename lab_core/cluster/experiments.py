"""Runs that notebooks, dashboards and benchmarks share, built on the simulator: they return data
(dataclasses, tidy DataFrames) and draw nothing. Kept apart from the system's modules so none of
those needs the simulator: the simulator imports them, never the other way round."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab_core.cluster.failures import Failure
from lab_core.cluster.fragmentation import Workload, stranded_gpus, stranded_mask
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster
from lab_core.cluster.placement import FGD, PLACERS
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.simulator import SimConfig, SimResult, Simulation
from lab_core.cluster.synthetic import synthetic
from lab_core.sim.progress import Progress
from lab_core.sim.rng import rng

Shape = tuple[int, int, int, int]
"""A cluster's racks, nodes per rack, GPUs per node and NVLink domain size (``Cluster.build``'s order)."""

FRAMES = 80  # snapshots over the arrival-and-run span; a run that queues longer gets more
SAMPLES = 120  # metric samples over the span (the simulator's default of 300 costs 40% of a small run)
BACKFILL_DEPTH = 32  # queued jobs a backfill pass looks at (Slurm's bf_max_job_test); bounds the cost per pass
#: Offered load (GPU-hours asked per hour / GPUs) past which the queue only grows.
MAX_LOAD = 2.0
#: A run whose jobs still wait, none running, this many spans after the start is stopped.
GIVE_UP_AFTER = 20.0
#: Wall-clock seconds one run may take before it is stopped.
MAX_RUN_SECONDS = 10.0
#: The columns of :func:`comparison`, each with what it measures and its unit (headers for tables).
COMPARE_LABELS: dict[str, str] = {
    "scheduler": "scheduler",
    "done": "jobs done",
    "mean_jct_h": "mean JCT (h)",
    "p50_jct_h": "p50 JCT (h)",
    "p99_jct_h": "p99 JCT (h)",
    "mean_wait_h": "mean wait (h)",
    "makespan_h": "makespan (h)",
    "arrival_utilisation_pct": "GPU utilisation while jobs arrive (%)",
    "makespan_utilisation_pct": "GPU utilisation over the makespan (%)",
    "mean_stranded_pct": "stranded (% of free GPUs)",
    "mean_fragmentation_pct": "FGD fragmentation (% of free GPUs)",
    "mean_queue": "queue (jobs)",
    "restarts": "restarts",
    "migrations": "migrations",
    "lost_gpu_hours": "lost (GPU·h)",
    "seconds": "wall time (s)",
}
COMPARE_COLUMNS = list(COMPARE_LABELS)
#: The dashboard table's columns and headers; "fragmentation" may break where the column is narrow.
#: The makespan, and the utilisation over it, are about the same for every scheduler: the headline gives them.
TABLE_TITLES: dict[str, str] = {
    k: COMPARE_LABELS[k].replace("fragmentation", "frag\u00admentation")
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
#: The sampled ratios a dashboard plots over time, by ``SimResult.samples`` column.
RATIO_LABELS: dict[str, str] = {
    "utilisation": "GPU utilisation (% of live GPUs)",
    "fragmentation": "fragmentation (FGD, % of free GPUs)",
    "stranded": "stranded (% of free GPUs)",
}


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


@dataclass(frozen=True, eq=False)
class PolicyRun:
    """One queue policy's run: the simulator's result (``result.stopped`` says if it was cut short)
    and snapshots of the cluster through it."""

    result: SimResult
    frames: tuple[Frame, ...] = ()


def snapshot(sim: Simulation, depth: int = BACKFILL_DEPTH) -> Frame:
    """The cluster of ``sim`` now; reserved nodes only while somebody waits among the first ``depth`` jobs."""
    c = sim.cluster
    waiting = tuple(sim.queue[:depth])
    reserved = c.reserved.copy() if waiting else np.zeros(c.num_nodes, bool)
    return Frame(
        sim.env.now,
        c.owners(),
        c.free.copy(),
        c.cpu_free.copy(),
        c.mem_free.copy(),
        c.alive.copy(),
        reserved,
        waiting,
        len(sim.running_view()),
    )


def offered_load(jobs: Sequence[Job], gpus: int) -> float:
    """GPU-seconds asked for per second of arrivals, over the cluster's GPUs (>1: the queue grows)."""
    if not jobs:
        return 0.0
    span = max(max(j.submit for j in jobs) - min(j.submit for j in jobs), 1.0)
    return sum(j.gpus * j.duration for j in jobs) / span / gpus


def check_load(jobs: Sequence[Job], gpus: int) -> float:
    """The offered load; ValueError past ``MAX_LOAD``, where the queue would only grow."""
    load = offered_load(jobs, gpus)
    if load > MAX_LOAD:
        raise ValueError(
            f"the jobs ask for {load:.2f}× the cluster's GPUs (more than {MAX_LOAD:g}×): the "
            "queue would only grow; lower the arrival rate or enlarge the cluster."
        )
    return load


def run_policy(
    shape: Shape,
    jobs: Sequence[Job],
    scheduler: Scheduler,
    placer: Placer,
    failures: Iterable[Failure] = (),
    *,
    frames: bool = True,
    progress: Progress | None = None,
) -> PolicyRun:
    """Run fresh copies of ``jobs`` on a new cluster of ``shape`` with the given failures, taking
    ``FRAMES`` snapshots over the trace's span (when ``frames``)."""
    horizon = max((j.submit + j.duration for j in jobs), default=1.0)
    config = SimConfig(backfill_depth=BACKFILL_DEPTH, sample_every=max(horizon / SAMPLES, 1.0))
    sim = Simulation(Cluster.build(*shape), [j.fresh() for j in jobs], scheduler, placer, config, failures)
    snaps: list[Frame] = []
    result = sim.run(
        progress=progress,
        steps=FRAMES,
        observe=(lambda s: snaps.append(snapshot(s))) if frames else None,
        give_up_after=GIVE_UP_AFTER,
        max_wall_seconds=MAX_RUN_SECONDS,
    )
    return PolicyRun(result, tuple(snaps))


#: Each comparison column but the scheduler's name: the summary key it comes from and the scale to its unit.
_FROM_SUMMARY: dict[str, tuple[str, float]] = {
    "done": ("done", 1.0),
    "mean_jct_h": ("mean_jct", 1 / 3600),
    "p50_jct_h": ("p50_jct", 1 / 3600),
    "p99_jct_h": ("p99_jct", 1 / 3600),
    "mean_wait_h": ("mean_wait", 1 / 3600),
    "makespan_h": ("makespan", 1 / 3600),
    "arrival_utilisation_pct": ("arrival_utilisation", 100.0),
    "makespan_utilisation_pct": ("utilisation", 100.0),
    "mean_stranded_pct": ("mean_stranded", 100.0),
    "mean_fragmentation_pct": ("mean_fragmentation", 100.0),
    "mean_queue": ("mean_queue", 1.0),
    "restarts": ("restarts", 1.0),
    "migrations": ("migrations", 1.0),
    "lost_gpu_hours": ("lost_gpu_hours", 1.0),
    "seconds": ("wall_seconds", 1.0),
}
_COUNTS = ("done", "restarts", "migrations")


def comparison(results: Mapping[str, SimResult]) -> pd.DataFrame:
    """One row per scheduler: jobs done, JCT and wait (hours), utilisation while jobs arrive and over
    the makespan, stranding and fragmentation (percent), queue, restarts, losses, wall seconds."""
    rows = [
        {
            "scheduler": name,
            **{
                column: r.summary.get(key, 0.0 if column in _COUNTS else math.nan) * scale
                for column, (key, scale) in _FROM_SUMMARY.items()
            },
        }
        for name, r in results.items()
    ]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS).astype({column: int for column in _COUNTS})


def jct_distribution(results: Mapping[str, SimResult]) -> pd.DataFrame:
    """Per scheduler, the sorted completion times of its finished jobs (hours) and the share done within each."""
    parts = []
    for name, r in results.items():
        done = r.jobs[r.jobs["state"] == "done"] if len(r.jobs) else r.jobs
        jct = np.sort(done["jct"].to_numpy(dtype=float) / 3600.0) if len(done) else np.empty(0)
        parts.append(
            pd.DataFrame({"scheduler": name, "jct_h": jct, "share": np.arange(1, jct.size + 1) / max(jct.size, 1)})
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["scheduler", "jct_h", "share"])


def cluster_at(shape: Shape, frame: Frame) -> Cluster:
    """A cluster of ``shape`` with the free capacity, live and reserved nodes of ``frame`` (allocations not restored)."""
    c = Cluster.build(*shape)
    c.free[:] = frame.free
    c.cpu_free[:] = frame.cpu_free
    c.mem_free[:] = frame.mem_free
    c.alive[:] = frame.alive
    c.reserved[:] = frame.reserved
    return c


def gpu_map(shape: Shape, frame: Frame | None) -> pd.DataFrame:
    """One row per GPU slot of ``frame``: node, name, rack, gpu, job (-1 free), free share (%), state, reserved.

    ``state`` is "busy", "free", "stranded", "down" (node dead) or "reserved" (free on a reserved node);
    no rows without a frame.
    """
    if frame is None:
        return pd.DataFrame(columns=["node", "name", "rack", "gpu", "job", "free_pct", "state", "reserved"])
    c = cluster_at(shape, frame)
    stranded = stranded_mask(c, frame.queue)
    nodes, gpus = np.nonzero(c.exists)
    state = np.where(frame.owners[nodes, gpus] >= 0, "busy", "free").astype(object)
    state[stranded[nodes, gpus]] = "stranded"
    state[frame.reserved[nodes] & (state == "free")] = "reserved"
    state[~frame.alive[nodes]] = "down"
    return pd.DataFrame(
        {
            "node": nodes,
            "name": [c.nodes[n].name for n in nodes],
            "rack": c.rack[nodes],
            "gpu": gpus,
            "job": frame.owners[nodes, gpus],
            "free_pct": frame.free[nodes, gpus] / FULL_GPU * 100.0,
            "state": state,
            "reserved": frame.reserved[nodes],
        }
    )


def busiest_frame(frames: Sequence[Frame]) -> int:
    """The snapshot with the most queued GPUs (the cluster under most pressure), else the middle one."""
    queued = [sum(j.gpus for j in f.queue) for f in frames]
    return int(np.argmax(queued)) if max(queued, default=0) > 0 else len(frames) // 2


# ---- what the dashboard shows: one recompute and the data behind its plots ---------------------------


def workload(
    shape: Shape, *, n_jobs: int, rate: float, mix: str, burstiness: float, priorities: int, seed: int
) -> list[Job]:
    """The synthetic trace of a dashboard's settings (``rate`` in jobs per hour), no job wider than the cluster."""
    racks, nodes_per_rack, gpus_per_node, _ = shape
    return synthetic(
        int(n_jobs),
        rate=float(rate) / 3600.0,
        mix=mix,
        burstiness=float(burstiness),
        priorities=int(priorities),
        seed=int(seed),
        max_gpus=racks * nodes_per_rack * gpus_per_node,
    )


def placer(name: str, jobs: Sequence[Job]) -> Placer:
    """A built-in placement policy by name; "fgd" scores against the request mix of ``jobs``."""
    return FGD(Workload.from_jobs(jobs)) if name == "fgd" else PLACERS[name]


def failure_from(kind: str, index: int, at_hours: float, repair_hours: float) -> Failure | None:
    """The failure a dashboard injects: none, or node / rack ``index`` down at ``at_hours`` for ``repair_hours``."""
    if kind == "none":
        return None
    return Failure(at_hours * 3600.0, repair_after=repair_hours * 3600.0, **{kind: index})


@dataclass
class RunCache:
    """Every queue policy's run (or its error) for one ``key`` of inputs, so changing only the chosen
    scheduler reruns one simulation."""

    key: tuple | None = None
    runs: dict[str, tuple[PolicyRun | None, str | None]] = field(default_factory=dict)

    def reusable(self, key: tuple, chosen: str) -> dict[str, tuple[PolicyRun | None, str | None]]:
        """A copy of the runs still valid for ``key``, less ``chosen`` (a comparison run has no snapshots)."""
        runs = dict(self.runs) if key == self.key else {}
        runs.pop(chosen, None)
        return runs


@dataclass(frozen=True, eq=False)
class Recompute:
    """One dashboard recompute: the chosen scheduler's result and snapshots, every scheduler's comparison, timings."""

    result: SimResult | None = None
    frames: tuple[Frame, ...] = ()
    shape: Shape = (1, 1, 1, 1)
    scheduler: str = ""
    placer: str = ""
    failure: Failure | None = None
    compare: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPARE_COLUMNS))
    jct: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["scheduler", "jct_h", "share"]))
    seconds: float = 0.0
    main_seconds: float = 0.0
    compare_seconds: float = 0.0
    load: float = 0.0

    def frame(self, index: int) -> Frame | None:
        """Snapshot ``index`` (the last one past the end), None without snapshots."""
        return self.frames[min(index, len(self.frames) - 1)] if self.frames else None

    def failure_hours(self) -> tuple[float, float] | None:
        """When the injected failure starts and ends (repaired), in hours; None without one."""
        fail = self.failure
        return None if fail is None else (fail.at / 3600.0, (fail.at + fail.repair_after) / 3600.0)

    def samples(self) -> pd.DataFrame:
        """The chosen run's metric samples (``SimResult.samples``) with time in hours as ``t_h``."""
        s = (
            self.result.samples
            if self.result is not None
            else pd.DataFrame(columns=["t", "utilisation", "fragmentation", "stranded", "queue"])
        )
        return s.assign(t_h=s["t"] / 3600.0)


def recompute_of(
    runs: Mapping[str, PolicyRun],
    chosen: str,
    placer: str,
    shape: Shape,
    failure: Failure | None,
    load: float,
    *,
    seconds: float,
    main_seconds: float,
    compare_seconds: float,
) -> Recompute:
    """The recompute of ``runs`` (one per scheduler that ran) with ``chosen``'s result and snapshots."""
    results = {name: r.result for name, r in runs.items()}
    run = runs.get(chosen)
    return Recompute(
        run.result if run else None,
        run.frames if run else (),
        shape,
        chosen,
        placer,
        failure,
        comparison(results),
        jct_distribution(results),
        seconds,
        main_seconds,
        compare_seconds,
        load,
    )


def ratio_series(samples: pd.DataFrame) -> pd.DataFrame:
    """The sampled ratios in long form: ``t_h``, ``metric`` (its label) and ``pct`` (one zero row if none)."""
    long = samples.melt(id_vars="t_h", value_vars=list(RATIO_LABELS), var_name="metric", value_name="pct")
    long["metric"] = long["metric"].map(RATIO_LABELS)
    long["pct"] = long["pct"].astype(float) * 100.0
    if long.empty:
        return pd.DataFrame({"t_h": [0.0], "pct": [0.0], "metric": [RATIO_LABELS["utilisation"]]})
    return long


def queue_series(samples: pd.DataFrame) -> pd.DataFrame:
    """The sampled queue length over ``t_h`` (one zero row if none)."""
    return pd.DataFrame({"t_h": [0.0], "queue": [0]}) if samples.empty else samples


@dataclass(frozen=True, eq=False)
class MapLayers:
    """What the GPU map draws at one snapshot: a rectangle per GPU (``x0..y1`` in slot and node units), the
    busy ones with their label, palette index and whether that colour is dark, crosses on stranded GPUs,
    bands over dead and reserved nodes, rack and NVLink-domain lines, the node names and a title."""

    cells: pd.DataFrame
    busy: pd.DataFrame
    stranded: pd.DataFrame
    down: list[tuple[float, float, float, float]]
    reserved: list[tuple[float, float, float, float]]
    rack_lines: list[float]
    domain_lines: list[float]
    names: list[str]
    title: str


def map_layers(shape: Shape, frame: Frame | None, cells: pd.DataFrame, palette: int) -> MapLayers:
    """The GPU map's layers for ``cells`` (``gpu_map`` of ``frame``); job ``j`` takes colour ``j % palette``
    of a palette of (dark, light) pairs."""
    racks, npr, gpn, dom = shape
    cells = cells.assign(
        x0=cells["gpu"] - 0.45, x1=cells["gpu"] + 0.45, y0=cells["node"] - 0.42, y1=cells["node"] + 0.42
    )
    busy = cells[cells["job"] >= 0]
    busy = busy.assign(
        x=busy["gpu"],
        y=busy["node"],
        label=busy["job"].astype(str),
        palette=busy["job"] % palette,
        dark=busy["job"] % palette % 2 == 0,
    )
    strand = cells[cells["state"] == "stranded"]
    down_rows, held = (np.flatnonzero(~frame.alive), np.flatnonzero(frame.reserved)) if frame else ((), ())
    queued = frame.queue if frame is not None else ()
    title = (
        f"GPU map at t = {frame.t / 3600:.2f} h · {frame.running} running, {len(queued)} queued "
        f"({sum(j.gpus for j in queued):g} GPUs) · label = job id (colours repeat)"
        if frame
        else "GPU map (no run)"
    )
    return MapLayers(
        cells,
        busy,
        strand.assign(x=strand["gpu"], y=strand["node"]),
        [(-0.5, r - 0.5, gpn - 0.5, r + 0.5) for r in down_rows],
        [(-0.5, r - 0.48, gpn - 0.5, r + 0.48) for r in held],
        [r * npr - 0.5 for r in range(1, racks)],
        [d - 0.5 for d in range(dom, gpn, dom)],
        [f"r{r}n{i}" for r in range(racks) for i in range(npr)],
        title,
    )


def headline(run: Recompute, index: int) -> str:
    """One sentence (markdown) with the chosen run's numbers at snapshot ``index`` and the recompute's timings."""
    row = run.compare[run.compare["scheduler"] == run.scheduler]
    f = run.frame(index)
    if row.empty or f is None or run.result is None:
        return f"No results; see the error above. Recomputed in {run.seconds * 1000:.0f} ms."
    r, c, (racks, npr, gpn, _) = row.iloc[0], cluster_at(run.shape, f), run.shape
    arriving_h = float(run.result.jobs["submit"].max()) / 3600.0
    return (
        f"**{run.scheduler}** + **{run.placer}** on {racks}×{npr} nodes × {gpn} GPUs "
        f"(offered load {run.load:.2f}): mean JCT **{r['mean_jct_h']:.2f} h**, p99 **{r['p99_jct_h']:.2f} h**, "
        f"mean wait {r['mean_wait_h']:.2f} h, GPU utilisation **{r['arrival_utilisation_pct']:.0f} % while "
        f"jobs arrive** (first {arriving_h:.1f} h; {r['makespan_utilisation_pct']:.0f} % over the whole "
        f"{r['makespan_h']:.1f} h run), {int(r['done'])} jobs done. At **t = {f.t / 3600:.2f} h** (snapshot "
        f"{index} of {len(run.frames) - 1}): {c.free_gpus():g} GPUs free, "
        f"**{stranded_gpus(c, f.queue):g} stranded**, {int((~f.alive).sum())} nodes down, "
        f"{int(f.reserved.sum())} reserved. Recomputed in {run.seconds * 1000:.0f} ms ({run.scheduler}: "
        f"{run.main_seconds * 1000:.0f} ms, other schedulers: {run.compare_seconds * 1000:.0f} ms, 0 = cached)."
    )


def detection_tradeoff(
    timeouts: Iterable[float],
    *,
    interval: float = 10.0,
    loss: float = 0.05,
    nodes: int = 64,
    hours: float = 24.0,
    failures: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """For each detector timeout: mean delay to detect real failures and false positives per node-day.

    Runs the heartbeat model alone (no jobs) on ``nodes`` nodes for ``hours``, with ``failures``
    real node failures at seeded random times, each repaired an hour later.
    """
    rows = []
    horizon = hours * 3600.0
    g = rng(seed)
    when = np.sort(g.uniform(0.1 * horizon, 0.9 * horizon, size=failures))
    who = g.choice(nodes, size=failures, replace=failures > nodes)
    schedule = [Failure(t, node=int(n), repair_after=3600.0) for t, n in zip(when.tolist(), who.tolist())]
    for timeout in timeouts:
        cluster = Cluster.build(racks=1, nodes_per_rack=nodes, gpus_per_node=1, nvlink_domain=1)
        config = SimConfig(health=HealthConfig(interval, timeout, loss, seed), sample_every=horizon)
        sim = Simulation(cluster, config=config, failures=schedule)
        sim.run(until=horizon)
        table = sim.health.table()
        real = table[table["real"]]
        false = int((~table["real"].astype(bool)).sum())
        rows.append(
            {
                "timeout": float(timeout),
                "mean_detection_delay": float(real["delay"].mean()) if len(real) else float("nan"),
                "detected": int(len(real)),
                "false_positives_per_node_day": false / (nodes * hours / 24.0),
            }
        )
    return pd.DataFrame(rows)
