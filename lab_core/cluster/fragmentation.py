"""How fragmented a cluster is: the FGD measure (Weng et al., ATC'23) and the stranded-GPU ratio.

FGD measures fragmentation *against a workload*: for a job shape m, the free GPU capacity on a
node that m cannot use. If m cannot run on the node at all (not enough CPU, memory or total
free GPU) or asks for no GPU, all the node's free GPU is fragment; otherwise the partly free
GPUs with less than ``min(m's GPU demand, 1 GPU)`` free are. A node's fragmentation is the
popularity-weighted sum over shapes; the fragmentation ratio divides the cluster's sum by its
free GPU capacity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lab_core.cluster.job import FULL_GPU, Job
from lab_core.cluster.model import Cluster


@dataclass(frozen=True)
class Workload:
    """Job shapes and how often each arrives (popularity sums to 1)."""

    num_gpus: np.ndarray
    gpu_milli: np.ndarray
    cpu_milli: np.ndarray
    memory_mib: np.ndarray
    popularity: np.ndarray

    @classmethod
    def from_jobs(cls, jobs: Iterable[Job], top: int | None = None) -> Workload:
        """The request mix of ``jobs``: one class per distinct (GPUs, share, CPU, memory) request, as in
        the paper, weighted by count; ``top`` keeps only the commonest classes."""
        counts = Counter((j.num_gpus, j.gpu_milli, j.cpu_milli, j.memory_mib) for j in jobs).most_common(top)
        if not counts:
            raise ValueError("a workload needs at least one job")
        keys = np.array([k for k, _ in counts], dtype=np.int64)
        pop = np.array([c for _, c in counts], dtype=np.float64)
        return cls(
            keys[:, 0], keys[:, 1], keys[:, 2].astype(np.float64), keys[:, 3].astype(np.float64), pop / pop.sum()
        )


def node_fragmentation(free: np.ndarray, cpu_free: np.ndarray, mem_free: np.ndarray, workload: Workload) -> np.ndarray:
    """FGD fragmentation of each row (a node's free milli-GPUs per slot), in milli-GPUs."""
    free = np.asarray(free, dtype=np.int64)
    total = free.sum(axis=1)
    demand = workload.num_gpus * workload.gpu_milli
    gpu = demand > 0
    # F = sum_m p_m * (total if m cannot run else partly-free GPUs below m's threshold)
    #   = total * sum(p) - sum_m p_m * runs_m * (total - partial_m),
    # computed for all classes at once; classes share few thresholds, each one pass over the slots.
    thresholds, which = np.unique(np.minimum(demand[gpu], FULL_GPU), return_inverse=True)
    out = total * workload.popularity.sum()
    if not thresholds.size:
        return out.astype(np.float64)
    partial = np.stack([np.where(free < t, free, 0).sum(axis=1) for t in thresholds], axis=1)
    runs = (
        (np.asarray(cpu_free)[:, None] >= workload.cpu_milli[gpu])
        & (np.asarray(mem_free)[:, None] >= workload.memory_mib[gpu])
        & (total[:, None] >= demand[gpu])
    )
    saved = np.where(runs, total[:, None] - partial[:, which.ravel()], 0)
    return out - saved @ workload.popularity[gpu]


def fragmented_gpus(cluster: Cluster, workload: Workload) -> float:
    """The cluster's FGD fragmentation in GPUs (live nodes only)."""
    live = cluster.alive
    frag = node_fragmentation(cluster.free[live], cluster.cpu_free[live], cluster.mem_free[live], workload)
    return float(frag.sum()) / FULL_GPU


def fragmentation_ratio(cluster: Cluster, workload: Workload) -> float:
    """FGD fragmentation as a share of the free GPU capacity (0 when nothing is free)."""
    free = cluster.free_gpus()
    return fragmented_gpus(cluster, workload) / free if free > 0 else 0.0


def stranded_mask(cluster: Cluster, queued: Iterable[Job]) -> np.ndarray:
    """Nodes x slots mask of GPUs with free capacity that no queued job's shape can use.

    A GPU is usable by a shape when the shape fits on its node now and the GPU could be one of
    the shape's GPUs (a whole free GPU for whole-GPU jobs, enough free share for a fractional
    one); a job wider than a node can use a GPU on an empty node when enough empty nodes exist.
    GPUs on reserved nodes are held for a waiting job on purpose and are not stranded; with no
    GPU job waiting nothing is stranded (idle is not stranded).
    """
    live = cluster.alive & ~cluster.reserved
    free = np.where(cluster.exists & live[:, None], cluster.free, 0)
    queued = [j for j in queued if j.num_gpus > 0]
    if not queued:
        return np.zeros(free.shape, dtype=bool)
    usable = np.zeros(free.shape, dtype=bool)
    seen: set[tuple] = set()
    for job in queued:
        shape = (job.num_gpus, job.gpu_milli, job.cpu_milli, job.memory_mib, job.gpu_type)
        if shape in seen:
            continue
        seen.add(shape)
        if cluster.spans_nodes(job):
            empty = live & (cluster.whole_free() == cluster.gpu_count)
            if job.gpu_type is not None:
                empty &= cluster.gpu_type == job.gpu_type
            if int(cluster.gpu_count[empty].sum()) >= job.num_gpus:
                usable |= empty[:, None] & cluster.exists
            continue
        nodes = cluster.fits(job, exclude=~live)
        per_gpu = free >= (job.gpu_milli if job.fractional else FULL_GPU)
        usable |= nodes[:, None] & per_gpu
    return (free > 0) & ~usable


def stranded_gpus(cluster: Cluster, queued: Iterable[Job]) -> float:
    """Free GPU capacity (in GPUs) that no queued job's shape can use (see ``stranded_mask``)."""
    mask = stranded_mask(cluster, queued)
    return float(cluster.free[mask].sum()) / FULL_GPU


def stranded_ratio(cluster: Cluster, queued: Iterable[Job]) -> float:
    """Stranded GPUs over all free GPUs on live nodes (0 when nothing is free)."""
    free = cluster.free_gpus()
    return stranded_gpus(cluster, queued) / free if free > 0 else 0.0
