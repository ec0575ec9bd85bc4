"""Placement policies: given a job and the cluster now, which GPUs it gets (or None: not now).

Each policy is a ``protocol.Placer``: ``place(cluster, job, exclude=None) -> Placement | None``; ``exclude``
is a node mask the caller wants kept clear (a reservation). Jobs wider than a node get whole
nodes, within one rack when possible, for every policy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab_core.cluster.fragmentation import Workload, node_fragmentation
from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster, Placement
from lab_core.cluster.protocol import Placer


def gpus_in_node(cluster: Cluster, node: int, job: Job, *, topology: bool = True) -> Placement:
    """Choose GPUs on ``node`` for a single-node ``job`` that fits there.

    Fractional jobs take the tightest GPU that fits. Whole-GPU jobs, with ``topology``, stay in
    one NVLink domain when one has room (the fullest such domain, to keep others whole);
    otherwise they take the lowest-numbered free GPUs.
    """
    # Plain Python over one node's few slots is several times faster than numpy calls here,
    # and this runs once per job start.
    free = cluster.free[node, : int(cluster.gpu_count[node])].tolist()
    if job.fractional:
        _, gpu = min((f, g) for g, f in enumerate(free) if f >= job.gpu_milli)
        return ((node, gpu, job.gpu_milli),)
    whole = [g for g, f in enumerate(free) if f == FULL_GPU]
    size = int(cluster.domain_size[node])
    if topology and job.num_gpus <= size:
        counts: dict[int, int] = {}
        for g in whole:
            counts[g // size] = counts.get(g // size, 0) + 1
        roomy = [(c, d) for d, c in counts.items() if c >= job.num_gpus]
        if roomy:
            best = min(roomy)[1]
            whole = [g for g in whole if g // size == best]
    return tuple((node, g, FULL_GPU) for g in whole[: job.num_gpus])


def whole_nodes(cluster: Cluster, job: Job, exclude: np.ndarray | None = None) -> Placement | None:
    """Whole empty nodes for a job wider than one node, packed into as few racks as possible."""
    empty = cluster.alive & ~cluster.reserved & (cluster.whole_free() == cluster.gpu_count)
    if exclude is not None:
        empty &= ~exclude
    if job.gpu_type is not None:
        empty &= cluster.gpu_type == job.gpu_type
    empty &= (cluster.cpu_free >= job.cpu_milli) & (cluster.mem_free >= job.memory_mib)
    chosen: list[int] = []
    need = job.num_gpus
    racks = np.unique(cluster.rack[empty])
    # The rack with the most empty GPUs first keeps the job's traffic on as few rack switches as possible.
    racks = sorted(racks, key=lambda r: -int(cluster.gpu_count[empty & (cluster.rack == r)].sum()))
    for r in racks:
        for node in np.flatnonzero(empty & (cluster.rack == r)):
            if need <= 0:
                break
            chosen.append(int(node))
            need -= int(cluster.gpu_count[node])
    if need > 0:
        return None
    placement: list[tuple[int, int, int]] = []
    remaining = job.num_gpus
    for node in chosen:
        for gpu in np.flatnonzero(cluster.exists[node])[:remaining]:
            placement.append((node, int(gpu), FULL_GPU))
        remaining = job.num_gpus - len(placement)
    return tuple(placement)


def _single(choose: Callable[[Cluster, Job, np.ndarray], int], topology: bool) -> Placer:
    def place(cluster: Cluster, job: Job, exclude: np.ndarray | None = None) -> Placement | None:
        if cluster.spans_nodes(job):
            return whole_nodes(cluster, job, exclude)
        ok = cluster.fits(job, exclude=exclude)
        if not ok.any():
            return None
        node = choose(cluster, job, ok)
        if job.num_gpus == 0:
            return ((node, -1, 0),)
        return gpus_in_node(cluster, node, job, topology=topology)

    return place


def _first(cluster: Cluster, job: Job, ok: np.ndarray) -> int:
    return int(np.flatnonzero(ok)[0])


def _tightest(cluster: Cluster, job: Job, ok: np.ndarray) -> int:
    nodes = np.flatnonzero(ok)
    free = cluster.free[nodes].sum(axis=1)
    return int(nodes[np.argmin(free)])


def _topology(cluster: Cluster, job: Job, ok: np.ndarray) -> int:
    nodes = np.flatnonzero(ok)
    if job.num_gpus == 0 or job.fractional:
        return _tightest(cluster, job, ok)
    # Nodes where the job fits inside one NVLink domain come first, then the tightest of those.
    whole = (cluster.free[nodes] == FULL_GPU) & cluster.exists[nodes]
    in_domain = np.zeros(nodes.size, dtype=bool)
    for d in range(int(cluster.domain.max()) + 1):
        in_domain |= (whole & (cluster.domain[nodes] == d)).sum(axis=1) >= job.num_gpus
    in_domain &= job.num_gpus <= cluster.domain_size[nodes]
    free = cluster.free[nodes].sum(axis=1).astype(np.int64)
    score = np.where(in_domain, 0, 10 * FULL_GPU * cluster.width) + free
    return int(nodes[np.argmin(score)])


first_fit: Placer = _single(_first, topology=False)
first_fit.__doc__ = "The lowest-numbered node that fits, its lowest-numbered free GPUs (no topology)."
best_fit: Placer = _single(_tightest, topology=True)
best_fit.__doc__ = "The node with the least free GPU that still fits; GPUs in one NVLink domain when possible."
topology_aware: Placer = _single(_topology, topology=True)
topology_aware.__doc__ = (
    "Prefer nodes where the job fits in one NVLink domain, then the tightest; whole racks for wide jobs."
)


class FGD:
    """Fragmentation-gradient placement (Weng et al., ATC'23): the choice that grows fragmentation least.

    Fragmentation is measured against ``workload``, the expected mix of job shapes; each
    candidate (node, GPU) is scored by how much the node's fragmentation rises if the job lands
    there, and ties go to the tighter node.
    """

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def __call__(self, cluster: Cluster, job: Job, exclude: np.ndarray | None = None) -> Placement | None:
        if cluster.spans_nodes(job):
            return whole_nodes(cluster, job, exclude)
        ok = cluster.fits(job, exclude=exclude)
        nodes = np.flatnonzero(ok)
        if not nodes.size:
            return None
        free = cluster.free[nodes]
        cpu = cluster.cpu_free[nodes]
        mem = cluster.mem_free[nodes]
        before = node_fragmentation(free, cpu, mem, self.workload)
        if job.num_gpus == 0:
            after = node_fragmentation(free, cpu - job.cpu_milli, mem - job.memory_mib, self.workload)
            node = int(nodes[np.argmin(after - before)])
            return ((node, -1, 0),)
        if job.fractional:
            ok = (free >= job.gpu_milli) & cluster.exists[nodes]
            # GPUs of one node with the same free share are interchangeable: score the first of each.
            earlier_same = (
                (free[:, :, None] == free[:, None, :]) & ok[:, None, :] & np.tri(free.shape[1], k=-1, dtype=bool)
            )
            rows, gpus = np.nonzero(ok & ~earlier_same.any(axis=2))
            trial = free[rows].copy()
            trial[np.arange(rows.size), gpus] -= job.gpu_milli
            after = node_fragmentation(trial, cpu[rows] - job.cpu_milli, mem[rows] - job.memory_mib, self.workload)
            delta = after - before[rows]
            left = trial.sum(axis=1)
            pick = np.lexsort((left, delta))[0]
            return ((int(nodes[rows[pick]]), int(gpus[pick]), job.gpu_milli),)
        # Whole free GPUs are interchangeable for the measure: taking any k of them leaves the same
        # fragmentation, so score "the first k" for every node at once and choose GPUs only for the winner.
        whole = (free == FULL_GPU) & cluster.exists[nodes]
        trial = np.where(whole & (np.cumsum(whole, axis=1) <= job.num_gpus), 0, free)
        after = node_fragmentation(trial, cpu - job.cpu_milli, mem - job.memory_mib, self.workload)
        pick = int(np.lexsort((trial.sum(axis=1), after - before))[0])
        return gpus_in_node(cluster, int(nodes[pick]), job)


PLACERS: dict[str, Placer] = {"first_fit": first_fit, "best_fit": best_fit, "topology": topology_aware}
