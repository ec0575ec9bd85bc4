"""Queue policies behind one protocol: each is a callable taking a ``View`` for one scheduling pass.

The placement policy (first-fit, best-fit, topology, FGD) is the simulation's and reached
through ``view.place``; these decide *which* waiting jobs start, and what to do about the head
of the line when it does not fit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Placement, PlacementError
from lab_core.cluster.view import View, earliest_start


class Misses:
    """Job shapes that found no placement during this pass: the cluster only fills up within a pass,
    so the same shape would fail again and need not be tried."""

    def __init__(self) -> None:
        self._seen: set[tuple] = set()

    def place(self, view: View, job: Job, exclude: np.ndarray | None = None, tag: object = None) -> Placement | None:
        """``view.place`` unless this shape (with this ``tag`` for ``exclude``) already failed."""
        key = (job.num_gpus, job.gpu_milli, job.cpu_milli, job.memory_mib, job.gpu_type, tag)
        if key in self._seen:
            return None
        placement = view.place(job, exclude)
        if placement is None:
            self._seen.add(key)
        return placement


def start_in_order(view: View) -> Job | None:
    """Start queued jobs in order while they fit; return the first one that does not (the blocked head)."""
    for job in view.queue:
        placement = view.place(job)
        if placement is None:
            return job
        view.start(job, placement)
    return None


def fifo(view: View) -> None:
    """Strict first-in first-out: nothing overtakes a head of line that does not fit."""
    start_in_order(view)


def greedy(view: View) -> None:
    """Start every waiting job that fits, in order; big jobs can starve behind a stream of small ones."""
    misses = Misses()
    for job in view.queue[: view.depth]:
        placement = misses.place(view, job)
        if placement is not None:
            view.start(job, placement)


def reservation(view: View) -> None:
    """Hold the nodes the blocked head job will start on; later jobs may use only the other nodes."""
    head = start_in_order(view)
    if head is None:
        return
    view.reserve(view.reservation(head).nodes)
    greedy(view)


def easy_backfill(view: View) -> None:
    """EASY backfill: the head gets a reservation; a later job may start now if it cannot delay it,
    because it ends (by its estimate) before the reserved start or keeps off the reserved nodes."""
    head = start_in_order(view)
    if head is None:
        return
    res = view.reservation(head)
    misses = Misses()
    for job in view.queue[1 : view.depth]:
        placement = misses.place(view, job)
        if placement is None:
            continue
        if view.now + job.estimate <= res.start or not res.touches(placement):
            view.start(job, placement)
            continue
        elsewhere = misses.place(view, job, exclude=res.nodes, tag="off-reservation")
        if elsewhere is not None:
            view.start(job, elsewhere)


def conservative_backfill(view: View) -> None:
    """Conservative backfill: every waiting job (up to the depth) gets a reservation in order, and a
    job starts now only if it delays none of the reservations made before it."""
    free_at = view.free_at()
    promised = np.full(view.cluster.num_nodes, np.inf)  # earliest reserved start on each node
    head = True
    for job in view.queue[: view.depth]:
        clear = promised >= view.now + job.estimate
        placement = view.place(job, exclude=~clear)
        if placement is not None:
            view.start(job, placement)
            for node, gpu, _ in placement:
                if gpu >= 0:
                    free_at[node, gpu] = max(free_at[node, gpu], view.now + job.estimate)
            continue
        res = earliest_start(view.cluster, job, free_at, view.now)
        if not np.isfinite(res.start):
            continue
        if head:
            # Plans are rebuilt every pass, so only the first blocked job's promise is binding.
            view.reservation(job)
            head = False
        promised[res.nodes] = np.minimum(promised[res.nodes], res.start)
        k = max(job.num_gpus, 1)
        for node in np.flatnonzero(res.nodes):
            # The reserved job holds the k earliest-free GPUs of its node(s) until it ends.
            take = np.argsort(free_at[node], kind="stable")[: min(k, int(view.cluster.gpu_count[node]))]
            free_at[node, take] = res.start + job.estimate


def priority_preemption(view: View) -> None:
    """Highest priority first; a job that does not fit may preempt lower-priority jobs on one node.

    Victims are the lowest-priority jobs, cheapest to lose first (least work since their last
    checkpoint); they go back in the queue and resume from that checkpoint.
    """
    misses, hopeless = Misses(), set()
    for job in sorted(view.queue, key=lambda j: (-j.priority, j.submit))[: view.depth]:
        placement = misses.place(view, job)
        shape = (job.num_gpus, job.gpu_milli, job.priority)
        if placement is None and not view.cluster.spans_nodes(job) and shape not in hopeless:
            victims = _victims(view, job)
            if not victims:
                hopeless.add(shape)
            if victims:
                for jid in victims:
                    view.preempt(jid)
                misses = Misses()
                placement = misses.place(view, job)
        if placement is not None:
            view.start(job, placement)


def _victims(view: View, job: Job) -> list[int]:
    """The fewest lower-priority jobs on one node whose removal lets ``job`` fit there, or []."""
    cluster = view.cluster
    running = view.running
    best: list[int] = []
    best_cost = np.inf
    need = job.gpu_milli if job.fractional else FULL_GPU
    for node in np.flatnonzero(cluster.alive & (cluster.gpu_count >= job.num_gpus)):
        if job.gpu_type is not None and cluster.gpu_type[node] != job.gpu_type:
            continue
        here = [running[j] for j in cluster.jobs_on(int(node)) if j in running]
        lower = sorted(
            (r for r in here if r.job.priority < job.priority and not cluster.spans_nodes(r.job)),
            key=lambda r: (r.job.priority, view.now - r.start),
        )
        free = cluster.free[node].copy()
        chosen, cost = [], 0.0
        for r in lower:
            if ((free >= need) & cluster.exists[node]).sum() >= max(job.num_gpus, 1):
                break
            for n, gpu, milli in r.placement:
                if n == node and gpu >= 0:
                    free[gpu] += milli
            chosen.append(r.job.id)
            cost += (view.now - r.start) * r.job.gpus
        if chosen and ((free >= need) & cluster.exists[node]).sum() >= max(job.num_gpus, 1) and cost < best_cost:
            best, best_cost = chosen, cost
    return best


def defragment(view: View, max_moves: int = 4) -> None:
    """FIFO, but when the head does not fit although enough GPUs are free in total, migrate up to
    ``max_moves`` small jobs off the node that is closest to fitting it, then start the head."""
    head = start_in_order(view)
    if head is None or view.cluster.spans_nodes(head) or head.fractional or head.num_gpus == 0:
        return
    cluster = view.cluster
    if cluster.whole_free().sum() < head.num_gpus:
        return
    candidates = np.flatnonzero(cluster.alive & (cluster.gpu_count >= head.num_gpus) & ~cluster.reserved)
    order = candidates[np.argsort(-cluster.whole_free()[candidates], kind="stable")]
    running = view.running
    for node in order.tolist():
        movers = [running[j] for j in cluster.jobs_on(node) if j in running]
        if len(movers) > max_moves or any(cluster.spans_nodes(r.job) for r in movers):
            continue
        if _evacuate(view, node, movers):
            placement = view.place(head)
            if placement is not None:
                view.start(head, placement)
                start_in_order(view)
            return


def _evacuate(view: View, node: int, movers: list) -> bool:
    """Move ``movers`` off ``node`` onto other nodes, or move nothing and return False."""
    cluster = view.cluster
    keep = np.zeros(cluster.num_nodes, dtype=bool)
    keep[node] = True
    plans: list[tuple[int, Placement]] = []
    saved = cluster.free.copy(), cluster.cpu_free.copy(), cluster.mem_free.copy()
    try:
        for r in sorted(movers, key=lambda r: -r.job.gpus):
            target = view.place(r.job, exclude=keep)
            if target is None:
                return False
            plans.append((r.job.id, target))
            for n, gpu, milli in target:  # book the target so later movers see it taken
                if gpu >= 0:
                    cluster.free[n, gpu] -= milli
            for n in {n for n, _, _ in target}:
                cluster.cpu_free[n] -= r.job.cpu_milli
                cluster.mem_free[n] -= r.job.memory_mib
    finally:
        cluster.free[:], cluster.cpu_free[:], cluster.mem_free[:] = saved
    for jid, target in plans:
        try:
            view.migrate(jid, target)
        except PlacementError:
            return False
    return True


SCHEDULERS: dict[str, Callable[[], Callable[[View], None]]] = {
    "fifo": lambda: fifo,
    "greedy": lambda: greedy,
    "reservation": lambda: reservation,
    "easy_backfill": lambda: easy_backfill,
    "conservative_backfill": lambda: conservative_backfill,
    "priority": lambda: priority_preemption,
    "defrag": lambda: defragment,
}
