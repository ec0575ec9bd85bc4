"""A cluster simulation running in scaled real time, for the job-submission API and the demo.

A background thread advances the simpy environment by (real seconds elapsed x ``speed``) every
``tick`` seconds; every public method takes the same lock, so callers on other threads (the
HTTP server) always see the simulation between events, never in the middle of a pass.
Tests skip the thread and move time with ``advance``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from lab_core.cluster.fragmentation import Workload
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.job import Job, JobError, State
from lab_core.cluster.model import Cluster
from lab_core.cluster.placement import PLACERS
from lab_core.cluster.schedulers import SCHEDULERS
from lab_core.cluster.simulator import SimConfig, Simulation
from lab_core.cluster.synthetic import synthetic

# field -> (accepted JSON types, may be null); ``bool`` is refused separately because it is an int
JOB_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "num_gpus": ((int,), False),
    "duration": ((int, float), False),
    "gpu_milli": ((int,), False),
    "cpu_milli": ((int,), False),
    "memory_mib": ((int,), False),
    "priority": ((int,), False),
    "tenant": ((str,), False),
    "gpu_type": ((str,), True),
    "checkpoint_interval": ((int, float), True),
    "estimate": ((int, float), True),
    "name": ((str,), False),
}
REQUIRED_FIELDS = ("num_gpus", "duration")
MAX_TEXT = 200  # characters in a job's name or tenant: labels, not payloads

STATES = tuple(s.value for s in State)


class Unschedulable(JobError):
    """A well-formed job this cluster can never run (too wide, unknown GPU type, no node big enough)."""


class AlreadyDown(RuntimeError):
    """A failure injected into nodes that are all down already."""


class ClusterStopped(RuntimeError):
    """The simulation raised inside its thread; the live cluster no longer changes."""


class LiveCluster:
    """A ``Simulation`` that follows the wall clock at ``speed`` simulated seconds per real second.

    ``jobs`` arrive at their own submit times (a background load); ``autostart`` tells the HTTP
    app's lifespan to start the clock thread; without it, time moves only by ``advance``.
    """

    def __init__(
        self,
        *,
        racks: int = 2,
        nodes_per_rack: int = 4,
        gpus_per_node: int = 8,
        nvlink_domain: int = 4,
        gpu_type: str = "H100",
        scheduler: str = "easy_backfill",
        placer: str = "best_fit",
        speed: float = 60.0,
        health: HealthConfig | None = None,
        jobs: Iterable[Job] = (),
        sample_every: float = 60.0,
        max_samples: int = 10_000,
        tick: float = 0.1,
        max_catch_up: float = 1.0,
        autostart: bool = True,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
        if placer not in PLACERS:
            raise ValueError(f"unknown placer {placer!r}; known: {', '.join(PLACERS)}")
        for name, value in (
            ("speed", speed),
            ("sample_every", sample_every),
            ("tick", tick),
            ("max_catch_up", max_catch_up),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be a whole number >= 1, got {max_samples!r}")
        cluster = Cluster.build(racks, nodes_per_rack, gpus_per_node, nvlink_domain, gpu_type)
        jobs = list(jobs)
        # FGD's fragmentation ratio is measured against a job mix; with no background load, the
        # published mix stands in for what users are expected to submit.
        workload = Workload.from_jobs(jobs if jobs else shapes_for(cluster, synthetic(256, seed=0)))
        config = SimConfig(sample_every=sample_every, health=health, workload=workload)
        self.sim = Simulation(cluster, jobs, scheduler=scheduler, placer=placer, config=config)
        self._background = [j.id for j in jobs]
        self.scheduler_name, self.placer_name = scheduler, placer
        self.speed = float(speed)
        self.tick = float(tick)
        self.max_catch_up = float(max_catch_up)
        self.max_samples = max_samples
        self.autostart = autostart
        self.error: str | None = None
        self._wall = wall
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- time ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread that moves simulated time with the wall clock (no-op if running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow_wall_clock, name="live-cluster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the clock thread and wait for it; the simulation keeps its state."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the clock thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _follow_wall_clock(self) -> None:
        last = self._wall()
        while not self._stop.wait(self.tick):
            now = self._wall()
            # After a stall (suspended laptop, a slow pass) the simulation falls behind instead of
            # replaying hours in one step while holding the lock that every request waits for.
            elapsed = min(now - last, self.max_catch_up)
            last = now
            try:
                self.advance(elapsed * self.speed)
            except ClusterStopped:
                return

    def advance(self, seconds: float) -> float:
        """Run the simulation ``seconds`` further (all events up to then); returns the new time."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        with self._lock:
            self._check_alive()
            env = self.sim.env
            target = env.now + seconds
            try:
                if target > env.now:  # simpy refuses to run until the current instant
                    env.run(until=target)
                # simpy stops before the events due at ``target``; run them too, so that a job due
                # to end at t is done when the clock reads t.
                while env.peek() <= target:
                    env.step()
            except Exception as exc:
                # A failed pass leaves simpy's queue half-processed: freezing is safer than going on.
                self.error = f"{type(exc).__name__}: {exc}"
                raise ClusterStopped(f"the simulation stopped at t={self.sim.env.now:g}: {self.error}") from exc
            if len(self.sim.samples) > self.max_samples:
                del self.sim.samples[: -self.max_samples]
            return float(self.sim.env.now)

    @property
    def now(self) -> float:
        """Current simulated time in seconds."""
        with self._lock:
            return float(self.sim.env.now)

    def _check_alive(self) -> None:
        if self.error is not None:
            raise ClusterStopped(f"the simulation stopped at t={self.sim.env.now:g}: {self.error}")

    # -- jobs --------------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any]) -> Job:
        """Queue a job described by ``spec`` (JOB_FIELDS); raises JobError naming the bad field."""
        fields = job_fields(spec)
        with self._lock:
            self._check_alive()
            job = Job(id=self.sim.next_id(), submit=float(self.sim.env.now), **fields)
            try:
                return self.sim.submit(job)
            except JobError as exc:
                # The refused job never gets its id (the next job will), so the message must not use it.
                raise Unschedulable(str(exc).replace(f"job {job.id}", "the job", 1)) from None

    def cancel(self, job_id: int) -> dict:
        """Cancel a queued or running job; KeyError if unknown, JobError if already finished."""
        with self._lock:
            self._check_alive()
            if job_id not in self.sim.jobs:
                raise KeyError(job_id)
            return self._job_view(self.sim.cancel(job_id))

    def job(self, job_id: int) -> dict:
        """One job's view (as_dict plus placement and queue position); KeyError if unknown."""
        with self._lock:
            return self._job_view(self.sim.jobs[job_id])

    def jobs(self, state: str | None = None, limit: int = 100) -> dict:
        """Newest jobs first, optionally only those in ``state``, at most ``limit``."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
        with self._lock:
            chosen = [j for j in self.sim.jobs.values() if state is None or j.state.value == state]
            chosen.sort(key=lambda j: j.id, reverse=True)
            return {"total": len(chosen), "jobs": [self._job_view(j, events=False) for j in chosen[:limit]]}

    def _job_view(self, job: Job, *, events: bool = True) -> dict:
        out = job.as_dict()
        if not events:
            out.pop("events")
        alloc = self.sim.cluster.allocations.get(job.id)
        out["placement"] = [] if alloc is None else [{"node": n, "gpu": g, "milli": m} for n, g, m in alloc.placement]
        out["queue_position"] = next((i for i, j in enumerate(self.sim.queue) if j.id == job.id), None)
        return out

    # -- failures ----------------------------------------------------------------------------------
    def fail(self, *, node: int | None = None, rack: int | None = None, repair_after: float | None = None) -> dict:
        """Kill one node or a whole rack now; ValueError names an unknown one, AlreadyDown if none is up."""
        if (node is None) == (rack is None):
            raise ValueError("give exactly one of node or rack")
        with self._lock:
            self._check_alive()
            c = self.sim.cluster
            if node is not None:
                if not 0 <= node < c.num_nodes:
                    raise ValueError(f"no node {node}; the cluster has nodes 0..{c.num_nodes - 1}")
                targets = [node]
            else:
                racks = sorted(set(c.rack.tolist()))
                if rack not in racks:
                    raise ValueError(f"no rack {rack}; racks are {racks}")
                targets = np.flatnonzero(c.rack == rack).tolist()
            up = [n for n in targets if self._up(n)]
            if not up:
                what = f"node {node}" if node is not None else f"every node of rack {rack}"
                raise AlreadyDown(f"{what} is already down")
            hit = sorted({jid for n in up for jid in c.jobs_on(n)})
            self.sim.fail_nodes(up, repair_after)
            return {
                "t": float(self.sim.env.now),
                "nodes": up,
                "jobs_hit": hit,
                "repair_after": repair_after,
                "detection": "immediate"
                if self.sim.health is None
                else f"after {self.sim.health.config.timeout:g} s of silence",
            }

    def _up(self, node: int) -> bool:
        # With a health monitor a broken node stays "alive" until detected; it is already down.
        broken = self.sim.health is not None and bool(self.sim.health.broken[node])
        return bool(self.sim.cluster.alive[node]) and not broken

    # -- views -------------------------------------------------------------------------------------
    def cluster_view(self) -> dict:
        """Every node with its GPUs' free share and owner job, plus utilisation and fragmentation."""
        with self._lock:
            c = self.sim.cluster
            owners = c.owners()
            nodes = []
            for i, spec in enumerate(c.nodes):
                gpus = [
                    {
                        "gpu": g,
                        "free_milli": int(c.free[i, g]),
                        "owner": None if owners[i, g] < 0 else int(owners[i, g]),
                    }
                    for g in range(int(c.gpu_count[i]))
                ]
                nodes.append(
                    {
                        "node": i,
                        "name": spec.name,
                        "rack": int(c.rack[i]),
                        "gpu_type": str(c.gpu_type[i]),
                        "alive": bool(c.alive[i]),
                        "reserved": bool(c.reserved[i]),
                        "nvlink_domain": int(c.domain_size[i]),
                        "cpu_free_milli": int(c.cpu_free[i]),
                        "memory_free_mib": int(c.mem_free[i]),
                        "gpus": gpus,
                    }
                )
            sample = self.sim.sample()
            return {
                "t": float(self.sim.env.now),
                "total_gpus": c.total_gpus,
                "utilisation": sample["utilisation"],
                "fragmentation": sample["fragmentation"],
                "stranded": sample["stranded"],
                "free_gpus": sample["free_gpus"],
                "nodes": nodes,
            }

    def metrics(self) -> dict:
        """The metrics now and running totals, in O(jobs) without building the pandas result."""
        with self._lock:
            sim = self.sim
            done = [j for j in sim.jobs.values() if j.state is State.DONE]
            jct = np.array([j.jct for j in done], dtype=float)
            wait = np.array([j.wait for j in done], dtype=float)
            summary = {
                "jobs": len(sim.jobs),
                "by_state": {s: 0 for s in STATES} | dict(Counter(j.state.value for j in sim.jobs.values())),
                "still_to_arrive": sum(1 for jid in self._background if jid not in sim.jobs),
                "mean_jct": float(jct.mean()) if jct.size else None,
                "p50_jct": float(np.quantile(jct, 0.5)) if jct.size else None,
                "p99_jct": float(np.quantile(jct, 0.99)) if jct.size else None,
                "mean_wait": float(wait.mean()) if wait.size else None,
                "restarts": sum(j.restarts for j in sim.jobs.values()),
                "migrations": sum(j.migrations for j in sim.jobs.values()),
                "lost_gpu_hours": sum(j.lost_gpu_seconds for j in sim.jobs.values()) / 3600.0,
            }
            return {
                "t": float(sim.env.now),
                "speed": self.speed,
                "clock_running": self.running,
                "scheduler": self.scheduler_name,
                "placer": self.placer_name,
                "queue_length": len(sim.queue),
                "sample": sim.sample(),
                "summary": summary,
                "error": self.error,
            }

    def events(self, since: float = 0.0) -> dict:
        """Cluster events (failures, kills, migrations) and failure detections at or after ``since``."""
        with self._lock:
            events = [dict(e) for e in self.sim.events if e["t"] >= since]
            health = None
            if self.sim.health is not None:
                health = [dict(d) for d in self.sim.health.detections if d["t"] >= since]
            return {"t": float(self.sim.env.now), "since": since, "events": events, "detections": health}


def job_fields(spec: Any) -> dict[str, Any]:
    """Check a job request's field names and JSON types; raises JobError naming the field."""
    if not isinstance(spec, dict):
        raise JobError(f"a job is an object with fields {', '.join(JOB_FIELDS)}, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(JOB_FIELDS))
    if unknown:
        raise JobError(f"unknown field(s): {', '.join(map(str, unknown))}; known: {', '.join(JOB_FIELDS)}")
    missing = [f for f in REQUIRED_FIELDS if f not in spec]
    if missing:
        raise JobError(f"missing field(s): {', '.join(missing)}")
    for name, value in spec.items():
        types, nullable = JOB_FIELDS[name]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "a whole number" if types == (int,) else "a number" if int in types else "a string"
            raise JobError(f"{name} must be {kind}{' or null' if nullable else ''}, got {value!r}"[:300])
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise JobError(f"{name} is {len(value)} characters; the limit is {MAX_TEXT}")
    return dict(spec)


def shapes_for(cluster: Cluster, jobs: Iterable[Job]) -> list[Job]:
    """The jobs this cluster could ever run: no wider than it, and whole nodes when wider than one."""
    width = int(cluster.gpu_count.max())
    return [j for j in jobs if j.num_gpus <= cluster.total_gpus and (j.num_gpus <= width or j.num_gpus % width == 0)]
