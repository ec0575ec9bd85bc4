"""The discrete-event cluster simulator (simpy): arrivals, a scheduling pass after every change,
completions, preemption, migration, node failures and recovery from checkpoints.

Jobs and node failures are its inputs; :meth:`Simulation.run` is the one loop that advances it,
for notebooks, benchmarks and the dashboard alike (which watches it through ``observe``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from lab_core.cluster.calibrate import measured_migration_seconds
from lab_core.cluster.failures import Failure
from lab_core.cluster.fragmentation import Workload, fragmentation_ratio, stranded_ratio
from lab_core.cluster.health import HealthConfig, HealthMonitor
from lab_core.cluster.job import Job, JobError, State
from lab_core.cluster.model import Cluster, Placement
from lab_core.cluster.placement import PLACERS
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.schedulers import SCHEDULERS
from lab_core.cluster.view import Reservation, Running, View, earliest_start, gpu_free_at
from lab_core.sim.arrivals import drive
from lab_core.sim.clock import SimClock
from lab_core.sim.metrics import Recorder
from lab_core.sim.progress import Progress

RUN_STEPS = 50  # steps of Simulation.run over the trace's span (progress reports, observe calls)


@dataclass
class SimConfig:
    """Knobs of the simulation itself (not of the policies)."""

    sample_every: float | None = None  # seconds between metric samples; None: about 300 samples over the trace
    # Checkpoint + copy + restore of one job during defragmentation; None: measured on this machine
    # (calibrate.measured_migration_seconds), the first time a job moves.
    migration_seconds: float | None = None
    backfill_depth: int = 100  # queued jobs a backfill pass may consider
    health: HealthConfig | None = None  # heartbeats and a failure detector; None: failures seen at once
    workload: Workload | None = None  # shape mix for the FGD fragmentation ratio; None: from the jobs
    check_invariants: bool = False  # verify bookkeeping after every pass (tests)


@dataclass
class SimResult:
    """What a run produced: per-job rows, metric samples over time, cluster events and a summary."""

    jobs: pd.DataFrame
    samples: pd.DataFrame
    events: pd.DataFrame
    summary: dict[str, float]
    recorder: Recorder = field(repr=False)
    stopped: str | None = None  # why the run ended before every job was done (None: it did not)


class Simulation:
    """A cluster, a queue and a scheduler (queue policy + placement policy) on simulated time."""

    def __init__(
        self,
        cluster: Cluster,
        jobs: Iterable[Job] = (),
        scheduler: Scheduler | str = "fifo",
        placer: Placer | str = "best_fit",
        config: SimConfig | None = None,
        failures: Iterable[Failure] = (),
    ) -> None:
        self.cluster = cluster
        self.config = config or SimConfig()
        self.scheduler = SCHEDULERS[scheduler]() if isinstance(scheduler, str) else scheduler
        self.placer = PLACERS[placer] if isinstance(placer, str) else placer
        self.env = simpy.Environment()
        self.clock = SimClock(self.env)
        self.jobs: dict[int, Job] = {}
        self.queue: list[Job] = []
        self._running: dict[int, Running] = {}
        self._token: dict[int, int] = {}
        self._stalled: dict[int, float] = {}  # job id -> time its node died, until the failure is noticed
        self.recorder = Recorder()
        self.samples: list[dict] = []
        self.events: list[dict] = []
        self._pass_pending = False
        self._held = np.zeros(cluster.num_nodes, dtype=bool)
        # When each GPU frees up by running jobs' estimates, kept up to date on every start and stop
        # so that reservations cost one vectorised step rather than a walk over every running job.
        self._busy_until = np.zeros(cluster.free.shape)
        self._occupants: dict[tuple[int, int], dict[int, float]] = {}
        # A shape that found no place stays placeless until something is freed: counting frees lets
        # a blocked head of line cost nothing on passes where nothing ended.
        self._freed = 0
        self._misses: dict[tuple, int] = {}
        self._view = View(self)
        pending = sorted(jobs, key=lambda j: j.submit)
        self._ids: set[int] = set()
        for job in pending:
            self._validate(job)
            self._ids.add(job.id)
        self._pending = pending
        self._next = 0
        self._horizon = max((j.submit + j.duration for j in pending), default=0.0)
        self._workload = self.config.workload or (Workload.from_jobs(pending) if pending else None)
        self.health = HealthMonitor(self, self.config.health) if self.config.health else None
        drive(self.env, [j.submit for j in pending], self._arrive)
        every = self.config.sample_every or max(self._horizon / 300.0, 1.0)
        self._sample_every = every
        self.env.process(self._sampler())
        self.failures = tuple(failures)
        for failure in self.failures:
            nodes = failure.nodes(cluster)  # an unknown node or rack is refused now, not mid-run
            ev = self.env.timeout(failure.at)
            ev.callbacks.append(lambda _e, n=nodes, r=failure.repair_after: self.fail_nodes(n, r))

    # -- submission ----------------------------------------------------------------------------
    def _validate(self, job: Job) -> None:
        if job.id in self._ids:
            raise JobError(f"job id {job.id} is already taken")
        if job.num_gpus > self.cluster.total_gpus:
            raise JobError(f"job {job.id} asks for {job.num_gpus} GPUs; the cluster has {self.cluster.total_gpus}")
        if job.gpu_type is not None and job.gpu_type not in set(self.cluster.gpu_type.tolist()):
            raise JobError(
                f"job {job.id} wants gpu_type {job.gpu_type!r}; the cluster has {sorted(set(self.cluster.gpu_type.tolist()))}"
            )
        if not self.cluster.spans_nodes(job) and job.num_gpus > 0:
            big = self.cluster.gpu_count >= job.num_gpus
            if not (big & (self.cluster.cpu_total >= job.cpu_milli) & (self.cluster.mem_total >= job.memory_mib)).any():
                raise JobError(
                    f"job {job.id}: no node has {job.num_gpus} GPUs with {job.cpu_milli} milli-CPU and {job.memory_mib} MiB"
                )
        if self.cluster.spans_nodes(job) and job.num_gpus % int(self.cluster.gpu_count.max()):
            raise JobError(
                f"job {job.id} is wider than a node ({job.num_gpus} GPUs): it must use whole nodes, "
                f"a multiple of {int(self.cluster.gpu_count.max())}"
            )

    def submit(self, job: Job) -> Job:
        """Queue ``job`` now (its submit time becomes the current time); raises JobError if it can never run."""
        job.submit = self.env.now
        self._validate(job)
        self._ids.add(job.id)
        self._enqueue(job)
        return job

    def cancel(self, job_id: int) -> Job:
        """Withdraw a queued or running job (its GPUs are freed); raises KeyError/JobError if it cannot be."""
        job = self.jobs[job_id]
        if job.state is State.DONE or job.state is State.CANCELLED:
            raise JobError(f"job {job_id} is already {job.state.value}")
        if job_id in self._running:
            r = self._vacate(job_id)
            self._token[job_id] = self._token.get(job_id, 0) + 1
            self._stalled.pop(job_id, None)
            self.cluster.release(job_id)
            job.progress = min(job.progress + max(self.env.now - r.start, 0.0), job.duration)
        else:
            self.queue.remove(job)
        job.state = State.CANCELLED
        job.end = self.env.now
        job.log(self.env.now, "cancelled")
        self._free_at = None
        self.request_pass()
        return job

    def _arrive(self, _t: float) -> None:
        job = self._pending[self._next]
        self._next += 1
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        self.jobs[job.id] = job
        job.state = State.QUEUED
        job.log(self.env.now, "queued")
        self.queue.append(job)
        self.request_pass()

    def next_id(self) -> int:
        """A fresh job id."""
        return max(self._ids, default=0) + 1

    # -- the scheduling pass ----------------------------------------------------------------------
    def request_pass(self) -> None:
        """Run the scheduler once, after everything else happening at this instant."""
        if self._pass_pending:
            return
        self._pass_pending = True
        ev = self.env.timeout(0)
        ev.callbacks.append(self._pass)

    def _pass(self, _ev: simpy.Event | None = None) -> None:
        self._pass_pending = False
        self.cluster.reserved[:] = False
        self._held = np.zeros(self.cluster.num_nodes, dtype=bool)
        self._free_at = None
        if self.queue:
            self.scheduler(self._view)
        # Between passes ``reserved`` shows every node held for a waiting job (by ``reserve`` or a
        # reservation), for metrics and pictures; inside a pass only ``reserve`` keeps jobs off.
        self.cluster.reserved |= self._held
        if self.config.check_invariants:
            errors = self.cluster.invariant_errors()
            if not np.array_equal(self.free_at(), gpu_free_at(self.cluster, self._running, self.env.now)):
                errors.append("per-GPU free times disagree with the running jobs")
            if errors:
                raise AssertionError(f"t={self.env.now}: " + "; ".join(errors[:5]))

    def running_view(self) -> dict[int, Running]:
        """Running jobs by id (a copy)."""
        return dict(self._running)

    def reservation(self, job: Job) -> Reservation:
        """Earliest start and nodes for ``job`` from running jobs' estimates; remembers the first promise."""
        if self._free_at is None:
            self._free_at = self.free_at()
        res = earliest_start(self.cluster, job, self._free_at, self.env.now)
        if res.start > self.env.now:
            self._held |= res.nodes
        if job.reserved_start is None and math.isfinite(res.start) and res.start > self.env.now:
            job.reserved_start = res.start
            job.log(self.env.now, f"reserved for t={res.start:.0f}")
        return res

    # -- running jobs ------------------------------------------------------------------------------
    def start(self, job: Job, placement: Placement, *, delay: float = 0.0) -> None:
        """Allocate ``placement`` to queued ``job`` and schedule its completion."""
        if job.state is not State.QUEUED or job not in self.queue:
            raise JobError(f"job {job.id} is not waiting in the queue (state {job.state.value})")
        self.cluster.allocate(job, placement)
        self.queue.remove(job)
        self._free_at = None
        if job.start is None:
            job.start = self.env.now
        job.state = State.RUNNING
        job.log(self.env.now, f"started on nodes {sorted({n for n, _, _ in placement})}")
        self._launch(job, placement, delay)

    def _launch(self, job: Job, placement: Placement, delay: float) -> None:
        token = self._token.get(job.id, 0) + 1
        self._token[job.id] = token
        began = self.env.now + delay
        expected = began + max(job.estimate - job.progress, 0.0)
        self._running[job.id] = Running(job, placement, began, expected)
        for node, gpu, _ in placement:
            if gpu >= 0:
                self._occupants.setdefault((node, gpu), {})[job.id] = expected
                self._busy_until[node, gpu] = max(self._busy_until[node, gpu], expected)
        ev = self.env.timeout(delay + job.remaining)
        ev.callbacks.append(lambda _e, jid=job.id, tok=token: self._finish(jid, tok))

    def place(self, job: Job, exclude: np.ndarray | None = None) -> Placement | None:
        """The placement policy's answer for ``job`` now, skipping shapes that failed since the last free."""
        cacheable = exclude is None and not self.cluster.reserved.any()
        key = (job.num_gpus, job.gpu_milli, job.cpu_milli, job.memory_mib, job.gpu_type)
        if cacheable and self._misses.get(key) == self._freed:
            return None
        placement = self.placer(self.cluster, job, exclude)
        if placement is None and cacheable:
            self._misses[key] = self._freed
        return placement

    def _vacate(self, job_id: int) -> Running:
        r = self._running.pop(job_id)
        self._freed += 1
        for node, gpu, _ in r.placement:
            if gpu >= 0:
                others = self._occupants[(node, gpu)]
                del others[job_id]
                self._busy_until[node, gpu] = max(others.values(), default=0.0)
        return r

    def free_at(self) -> np.ndarray:
        """Per GPU slot: when it will be entirely free by running jobs' estimates (inf if absent or down)."""
        at = np.maximum(self._busy_until, self.env.now)
        at[~self.cluster.usable()] = np.inf
        return at

    def _finish(self, job_id: int, token: int) -> None:
        if self._token.get(job_id) != token:
            return  # killed or moved since; a newer completion is scheduled
        job = self._vacate(job_id).job
        self.cluster.release(job_id)
        job.progress = job.duration
        job.end = self.env.now
        job.state = State.DONE
        job.log(self.env.now, "done")
        self.recorder.record(self.env.now, job.jct, kind="jct", tenant=job.tenant, gpus=job.num_gpus)
        self.recorder.record(job.start, job.wait, kind="wait", tenant=job.tenant, gpus=job.num_gpus)
        self.request_pass()

    def kill(self, job_id: int, reason: str, *, stopped_at: float | None = None) -> None:
        """Stop a running job and queue it again from its last checkpoint."""
        r = self._vacate(job_id)
        self._token[job_id] = self._token.get(job_id, 0) + 1
        self.cluster.release(job_id)
        job = r.job
        done = job.progress + max((self.env.now if stopped_at is None else stopped_at) - r.start, 0.0)
        # Progress already saved (by a migration's checkpoint) is never lost.
        kept = max(job.kept_progress(done), job.progress)
        wasted = (done - kept) + (self.env.now - stopped_at if stopped_at is not None else 0.0)
        job.lost_gpu_seconds += wasted * job.gpus
        job.progress = min(kept, job.duration)
        job.restarts += 1
        job.state = State.QUEUED
        job.log(self.env.now, f"{reason}; restarts from {job.progress:.0f}s of {job.duration:.0f}s")
        self.events.append(
            {"t": self.env.now, "event": reason, "job": job_id, "lost_gpu_hours": wasted * job.gpus / 3600}
        )
        # Back in its original place in line: a restarted job did not choose to wait again.
        self.queue.append(job)
        self.queue.sort(key=lambda j: j.submit)
        self._free_at = None
        self.request_pass()

    def migrate(self, job_id: int, placement: Placement) -> None:
        """Move a running job: it keeps all its work (checkpoint on demand) but pauses to copy state."""
        r = self._vacate(job_id)
        self._token[job_id] = self._token.get(job_id, 0) + 1
        job = r.job
        job.progress = min(job.progress + max(self.env.now - r.start, 0.0), job.duration)
        self.cluster.release(job_id)
        try:
            self.cluster.allocate(job, placement)
        except Exception:
            self.cluster.allocate(job, r.placement)
            self._launch(job, r.placement, 0.0)
            raise
        job.migrations += 1
        cost = self.migration_seconds()
        job.lost_gpu_seconds += cost * job.gpus
        job.log(self.env.now, f"migrated to nodes {sorted({n for n, _, _ in placement})}")
        self.events.append(
            {"t": self.env.now, "event": "migrated", "job": job_id, "lost_gpu_hours": cost * job.gpus / 3600}
        )
        self._free_at = None
        self._launch(job, placement, cost)

    def migration_seconds(self) -> float:
        """What moving a job costs: the configured time, else the one measured on this machine."""
        cost = self.config.migration_seconds
        return measured_migration_seconds() if cost is None else cost

    # -- failures ----------------------------------------------------------------------------------
    def fail_nodes(self, nodes: Iterable[int], repair_after: float | None = None) -> None:
        """Nodes die now: their jobs stop making progress; the scheduler learns of it at detection."""
        nodes = [int(n) for n in nodes]
        for node in nodes:
            if not 0 <= node < self.cluster.num_nodes:
                raise ValueError(f"no node {node}; the cluster has nodes 0..{self.cluster.num_nodes - 1}")
        for node in nodes:
            self.events.append({"t": self.env.now, "event": "node failed", "node": node})
            for jid in self.cluster.jobs_on(node):
                if jid in self._running and jid not in self._stalled:
                    self._stalled[jid] = self.env.now
                    self._token[jid] = self._token.get(jid, 0) + 1  # a dead node finishes nothing
        if self.health is not None:
            self.health.failed(nodes, repair_after)
        else:
            self.declare_dead(nodes)
            if repair_after is not None:
                ev = self.env.timeout(repair_after)
                ev.callbacks.append(lambda _e: self.declare_alive(nodes))

    def fail_rack(self, rack: int, repair_after: float | None = None) -> None:
        """Every node of ``rack`` dies now (a top-of-rack switch or power failure)."""
        self.fail_nodes(Failure(self.env.now, rack=rack).nodes(self.cluster), repair_after)

    def declare_dead(self, nodes: Iterable[int]) -> None:
        """The failure detector gives up on ``nodes``: their jobs restart from checkpoints elsewhere."""
        for node in nodes:
            if not self.cluster.alive[node]:
                continue
            for jid in self.cluster.jobs_on(node):
                if jid in self._running:
                    self.kill(jid, "node lost", stopped_at=self._stalled.pop(jid, None))
            self.cluster.alive[node] = False
            self.events.append({"t": self.env.now, "event": "node declared dead", "node": int(node)})
        self.request_pass()

    def declare_alive(self, nodes: Iterable[int]) -> None:
        """Nodes are back in service."""
        for node in nodes:
            if not self.cluster.alive[node]:
                self._freed += 1
                self.cluster.alive[node] = True
                self.events.append({"t": self.env.now, "event": "node back", "node": int(node)})
        self.request_pass()

    # -- metrics -----------------------------------------------------------------------------------
    def _sampler(self):
        while True:
            self.samples.append(self.sample())
            yield self.env.timeout(self._sample_every)

    def sample(self) -> dict[str, float]:
        """The cluster's metrics now."""
        c = self.cluster
        waiting = self.queue[: self.config.backfill_depth]
        return {
            "t": self.env.now,
            "utilisation": c.utilisation(),
            "allocation": c.allocated_gpus() / c.total_gpus,
            "fragmentation": fragmentation_ratio(c, self._workload) if self._workload is not None else 0.0,
            "stranded": stranded_ratio(c, waiting),
            "queue": len(self.queue),
            "queued_gpus": float(sum(j.gpus for j in self.queue)),
            "running": len(self._running),
            "free_gpus": c.free_gpus(),
            "nodes_down": int((~c.alive).sum()),
        }

    # -- running the simulation ------------------------------------------------------------------
    def run(
        self,
        until: float | None = None,
        progress: Progress | None = None,
        *,
        steps: int = RUN_STEPS,
        observe: Callable[[Simulation], None] | None = None,
        give_up_after: float = 100.0,
        max_wall_seconds: float | None = None,
    ) -> SimResult:
        """Simulate until every job is done, or to ``until`` seconds (past the last job too: a failure
        study needs no jobs), in ``steps`` equal steps over that span (more if the queue outlasts it);
        ``observe(self)`` sees the start and every step.

        Stops early, saying why in ``SimResult.stopped``, when jobs wait with none running after
        ``give_up_after`` spans (nothing will ever start them) or after ``max_wall_seconds`` of computing.
        """
        wall = time.perf_counter()
        span = max(self._horizon if until is None else until, 1.0)
        stopped = None
        if observe is not None:
            observe(self)
        while self.env.now < until if until is not None else not self.finished():
            target = self.env.now + span / steps
            if until is not None:
                target = min(target, until)
            self.env.run(until=target)
            if observe is not None:
                observe(self)
            if progress is not None:
                progress(min(int(100 * self.env.now / span), 99), 100, f"simulated {self.env.now / 3600:.1f} h")
            if self.env.now > give_up_after * span and self.queue and not self._running:
                stopped = (
                    f"stopped at t={self.env.now / 3600:.1f} h with {len(self.queue)} jobs still waiting and "
                    "none running: does the scheduler start the jobs that fit?"
                )
                break
            if max_wall_seconds is not None and time.perf_counter() - wall > max_wall_seconds:
                stopped = f"stopped after {max_wall_seconds:g} s of computing at t={self.env.now / 3600:.1f} h"
                break
        if progress is not None:
            progress(100, 100, "done")
        result = self.result()
        result.stopped = stopped
        result.summary["wall_seconds"] = time.perf_counter() - wall
        return result

    def step(self, seconds: float) -> None:
        """Advance simulated time by ``seconds`` (live submission and tests)."""
        self.env.run(until=self.env.now + seconds)

    def finished(self) -> bool:
        """True once every known job is done and none is still to arrive."""
        return self._next >= len(self._pending) and not self.queue and not self._running

    def result(self) -> SimResult:
        """Tables and summary of the run so far."""
        rows = [
            {
                "id": j.id,
                "tenant": j.tenant,
                "num_gpus": j.num_gpus,
                "gpus": j.gpus,
                "priority": j.priority,
                "submit": j.submit,
                "start": j.start,
                "end": j.end,
                "duration": j.duration,
                "wait": j.wait,
                "jct": j.jct,
                "restarts": j.restarts,
                "migrations": j.migrations,
                "lost_gpu_hours": j.lost_gpu_seconds / 3600,
                "reserved_start": j.reserved_start,
                "state": j.state.value,
            }
            for j in self.jobs.values()
        ]
        jobs = pd.DataFrame(rows)
        samples = pd.DataFrame(self.samples)
        events = pd.DataFrame(self.events, columns=["t", "event", "job", "node", "lost_gpu_hours"])
        return SimResult(jobs, samples, events, summarise(jobs, samples, self.cluster), self.recorder)


def per_tenant(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per tenant: jobs done, GPU-hours served and their share, mean wait and mean slowdown (JCT / duration)."""
    done = jobs[jobs["state"] == "done"]
    if not len(done):
        return pd.DataFrame(columns=["tenant", "jobs", "gpu_hours", "share", "mean_wait", "mean_slowdown"])
    served = done["gpus"] * done["duration"] / 3600
    table = (
        done.assign(gpu_hours=served, slowdown=done["jct"] / done["duration"])
        .groupby("tenant")
        .agg(
            jobs=("id", "size"),
            gpu_hours=("gpu_hours", "sum"),
            mean_wait=("wait", "mean"),
            mean_slowdown=("slowdown", "mean"),
        )
        .reset_index()
    )
    table.insert(3, "share", table["gpu_hours"] / table["gpu_hours"].sum())
    return table


def summarise(jobs: pd.DataFrame, samples: pd.DataFrame, cluster: Cluster) -> dict[str, float]:
    """Headline numbers: JCT, waiting, makespan, utilisation, stranding, fragmentation, losses, fairness."""
    done = jobs[jobs["state"] == "done"] if len(jobs) else jobs
    out: dict[str, float] = {"jobs": float(len(jobs)), "done": float(len(done))}
    if len(done):
        out["mean_jct"] = float(done["jct"].mean())
        out["p50_jct"] = float(done["jct"].quantile(0.5))
        out["p99_jct"] = float(done["jct"].quantile(0.99))
        out["mean_wait"] = float(done["wait"].mean())
        out["makespan"] = float(done["end"].max() - jobs["submit"].min())
        busy = float((done["gpus"] * done["duration"]).sum())
        out["utilisation"] = busy / (cluster.total_gpus * out["makespan"]) if out["makespan"] > 0 else 0.0
        # Jain's index over tenants' mean slowdowns: 1 when every tenant waits alike.
        slowdown = per_tenant(jobs)["mean_slowdown"]
        out["fairness"] = float(slowdown.sum() ** 2 / (len(slowdown) * (slowdown**2).sum()))
    if len(samples):
        # The makespan utilisation above is diluted by the drain after the last arrival; sampled
        # utilisation while jobs still arrive is the steady state a cluster runs at.
        arriving = samples["t"] <= (jobs["submit"].max() if len(jobs) else 0.0)
        out["arrival_utilisation"] = float(samples.loc[arriving, "utilisation"].mean())
        out["mean_stranded"] = float(samples["stranded"].mean())
        out["mean_fragmentation"] = float(samples["fragmentation"].mean())
        out["mean_queue"] = float(samples["queue"].mean())
    out["lost_gpu_hours"] = float(jobs["lost_gpu_hours"].sum()) if len(jobs) else 0.0
    out["restarts"] = float(jobs["restarts"].sum()) if len(jobs) else 0.0
    out["migrations"] = float(jobs["migrations"].sum()) if len(jobs) else 0.0
    return out
