"""What a scheduler (``protocol.Scheduler``) sees and may do in one scheduling pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lab_core.cluster.job import Job
from lab_core.cluster.model import Cluster, Placement

if TYPE_CHECKING:
    from lab_core.cluster.simulator import Simulation


@dataclass(frozen=True)
class Running:
    """A running job: where it sits and when it is expected to end (from its estimate)."""

    job: Job
    placement: Placement
    start: float
    expected_end: float


@dataclass(frozen=True)
class Reservation:
    """The earliest time a waiting job can start, and the nodes it will start on then."""

    start: float
    nodes: np.ndarray  # bool mask over nodes

    def touches(self, placement: Placement) -> bool:
        """True when ``placement`` uses any reserved node."""
        return any(self.nodes[node] for node, _, _ in placement)


class View:
    """The scheduler's handle on the simulation during one pass; every action takes effect at once."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    @property
    def now(self) -> float:
        """Simulated time, seconds."""
        return self._sim.env.now

    @property
    def cluster(self) -> Cluster:
        """The cluster (read it; change it only through this view)."""
        return self._sim.cluster

    @property
    def queue(self) -> list[Job]:
        """Waiting jobs in submission order (a copy; starting a job removes it from the real queue)."""
        return list(self._sim.queue)

    @property
    def running(self) -> dict[int, Running]:
        """Running jobs by id."""
        return self._sim.running_view()

    @property
    def depth(self) -> int:
        """How many queued jobs a backfill pass may look at (as Slurm's bf_max_job_test)."""
        return self._sim.config.backfill_depth

    def free_at(self) -> np.ndarray:
        """Per GPU slot: when it will be entirely free by running jobs' estimates (inf if absent or down)."""
        return self._sim.free_at()

    def place(self, job: Job, exclude: np.ndarray | None = None) -> Placement | None:
        """Where the simulation's placement policy would put ``job`` now (None if nowhere)."""
        return self._sim.place(job, exclude)

    def start(self, job: Job, placement: Placement) -> None:
        """Start a queued ``job`` on ``placement`` (checked: a bad placement raises PlacementError)."""
        self._sim.start(job, placement)

    def reservation(self, job: Job) -> Reservation:
        """When and where ``job`` could start if nothing new started, from running jobs' estimates.

        The first reservation a job gets is remembered as its promised start; backfill must not
        make the job start later than that.
        """
        return self._sim.reservation(job)

    def reserve(self, nodes: np.ndarray) -> None:
        """Keep ``nodes`` (a mask) free of new jobs for the rest of this pass."""
        self._sim.cluster.reserved |= nodes

    def preempt(self, job_id: int) -> None:
        """Stop a running job and queue it again; it keeps the work up to its last checkpoint."""
        self._sim.kill(job_id, reason="preempted")

    def migrate(self, job_id: int, placement: Placement) -> None:
        """Move a running job (checkpoint, copy, restore): it pauses for the migration time."""
        self._sim.migrate(job_id, placement)


def gpu_free_at(cluster: Cluster, running: dict[int, Running], now: float) -> np.ndarray:
    """Per GPU slot: when it will be entirely free, from running jobs' expected ends (inf if absent or down)."""
    at = np.full(cluster.free.shape, now, dtype=np.float64)
    nodes, gpus, ends = [], [], []
    for r in running.values():
        for node, gpu, _ in r.placement:
            if gpu >= 0:
                nodes.append(node)
                gpus.append(gpu)
                ends.append(max(r.expected_end, now))
    if nodes:
        np.maximum.at(at, (np.array(nodes), np.array(gpus)), np.array(ends))
    at[~cluster.usable()] = np.inf
    return at


def earliest_start(cluster: Cluster, job: Job, free_at: np.ndarray, now: float) -> Reservation:
    """The earliest time and nodes at which ``job`` fits, given when each GPU frees up.

    Whole-GPU jobs need ``num_gpus`` GPUs free on one node (or whole nodes for wide jobs);
    a fractional job is planned as needing a whole GPU unless it fits now.
    """
    eligible = cluster.alive & (cluster.cpu_total >= job.cpu_milli) & (cluster.mem_total >= job.memory_mib)
    if job.gpu_type is not None:
        eligible &= cluster.gpu_type == job.gpu_type
    mask = np.zeros(cluster.num_nodes, dtype=bool)
    if job.num_gpus == 0 or (job.fractional and cluster.fits(job, allow_reserved=True).any()):
        ok = cluster.fits(job, allow_reserved=True)
        if ok.any():
            mask[int(np.flatnonzero(ok)[0])] = True
            return Reservation(now, mask)
    if cluster.spans_nodes(job):
        node_at = np.where(eligible, free_at.max(axis=1, initial=now), np.inf)
        order = np.argsort(node_at, kind="stable")
        chosen, need = [], job.num_gpus
        for node in order:
            if need <= 0 or not np.isfinite(node_at[node]):
                break
            chosen.append(int(node))
            need -= int(cluster.gpu_count[node])
        if need > 0:
            return Reservation(np.inf, mask)
        mask[chosen] = True
        return Reservation(float(node_at[chosen].max()), mask)
    k = max(job.num_gpus, 1)
    fits = eligible & (cluster.gpu_count >= k)
    if not fits.any():
        return Reservation(np.inf, mask)
    kth = np.partition(free_at, k - 1, axis=1)[:, k - 1]
    kth = np.where(fits, kth, np.inf)
    node = int(np.argmin(kth))
    mask[node] = True
    return Reservation(float(kth[node]), mask)
