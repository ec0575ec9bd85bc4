"""Runs that notebooks, dashboards and benchmarks share, built on the simulator: they return data
(dataclasses, tidy DataFrames) and draw nothing. Kept apart from the system's modules so none of
those needs the simulator: the simulator imports them, never the other way round."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab_core.cluster.failures import Failure
from lab_core.cluster.fragmentation import stranded_mask
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.simulator import SimConfig, SimResult, Simulation
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


def gpu_map(shape: Shape, frame: Frame) -> pd.DataFrame:
    """One row per GPU slot of ``frame``: node, name, rack, gpu, job (-1 free), free share (%), state, reserved.

    ``state`` is "busy", "free", "stranded", "down" (node dead) or "reserved" (free on a reserved node).
    """
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
