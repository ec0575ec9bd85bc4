"""The cluster: racks of nodes, GPUs in NVLink domains, and who holds which share of each GPU.

State lives in numpy arrays (one row per node, one column per GPU slot) so that placement
policies and fragmentation metrics score every node at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab_core.cluster.job import FULL_GPU, Job

Placement = tuple[tuple[int, int, int], ...]
"""Where a job runs: ``(node, gpu, milli)`` for each GPU it uses."""


class PlacementError(ValueError):
    """A placement that breaks the cluster's rules (double-booked GPU, dead node, wrong count ...)."""


@dataclass(frozen=True)
class GpuType:
    """A GPU model: peak dense BF16 TFLOP/s, memory bandwidth TB/s and memory GB."""

    name: str
    tflops_bf16: float
    hbm_tbs: float
    memory_gb: float


GPU_TYPES: dict[str, GpuType] = {
    g.name: g
    for g in (
        GpuType("H100", 989.0, 3.35, 80.0),
        GpuType("A100", 312.0, 2.04, 80.0),
        GpuType("V100", 125.0, 0.90, 32.0),
        GpuType("T4", 65.0, 0.32, 16.0),
        GpuType("P100", 18.7, 0.73, 16.0),
    )
}


@dataclass(frozen=True)
class NodeSpec:
    """One host: its rack, GPU model and count, NVLink domain size, CPU and memory."""

    name: str
    rack: int
    gpu_type: str
    gpus: int
    nvlink_domain: int
    cpu_milli: int
    memory_mib: int


@dataclass
class Allocation:
    """What one running job holds."""

    job: Job
    placement: Placement


class Cluster:
    """GPU inventory, topology and allocations; every change goes through ``allocate``/``release``."""

    def __init__(self, nodes: list[NodeSpec]) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.nodes = list(nodes)
        n = len(nodes)
        width = max(spec.gpus for spec in nodes)
        self.width = width
        self.node_width = int(max(spec.gpus for spec in nodes))
        self.rack = np.array([spec.rack for spec in nodes], dtype=np.int32)
        self.gpu_count = np.array([spec.gpus for spec in nodes], dtype=np.int32)
        self.exists = np.arange(width)[None, :] < self.gpu_count[:, None]
        domains = np.array([max(spec.nvlink_domain, 1) for spec in nodes], dtype=np.int32)
        self.domain = np.arange(width)[None, :] // domains[:, None]
        self.domain_size = domains
        self.gpu_type = np.array([spec.gpu_type for spec in nodes])
        self.cpu_total = np.array([spec.cpu_milli for spec in nodes], dtype=np.int64)
        self.mem_total = np.array([spec.memory_mib for spec in nodes], dtype=np.int64)
        self.free = np.where(self.exists, FULL_GPU, 0).astype(np.int32)
        self.cpu_free = self.cpu_total.copy()
        self.mem_free = self.mem_total.copy()
        self.alive = np.ones(n, dtype=bool)
        self.reserved = np.zeros(n, dtype=bool)
        self.allocations: dict[int, Allocation] = {}

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        racks: int = 2,
        nodes_per_rack: int = 4,
        gpus_per_node: int = 8,
        nvlink_domain: int = 4,
        gpu_type: str = "H100",
        cpu_milli: int = 128_000,
        memory_mib: int = 1_048_576,
    ) -> Cluster:
        """A homogeneous cluster of ``racks`` x ``nodes_per_rack`` nodes."""
        for name, value in (("racks", racks), ("nodes_per_rack", nodes_per_rack), ("gpus_per_node", gpus_per_node)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(nvlink_domain, int) or nvlink_domain < 1 or gpus_per_node % nvlink_domain:
            raise ValueError(f"nvlink_domain must divide gpus_per_node={gpus_per_node}, got {nvlink_domain!r}")
        if gpu_type not in GPU_TYPES:
            raise ValueError(f"unknown gpu_type {gpu_type!r}; known: {', '.join(GPU_TYPES)}")
        specs = [
            NodeSpec(f"r{r}n{i}", r, gpu_type, gpus_per_node, nvlink_domain, cpu_milli, memory_mib)
            for r in range(racks)
            for i in range(nodes_per_rack)
        ]
        return cls(specs)

    # -- sizes --------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def total_gpus(self) -> int:
        """GPUs in the cluster, dead nodes included."""
        return int(self.gpu_count.sum())

    def usable(self) -> np.ndarray:
        """Mask (nodes x slots) of GPUs that exist on live nodes."""
        return self.exists & self.alive[:, None]

    def free_gpus(self) -> float:
        """Unallocated GPU capacity on live nodes, in whole-GPU units."""
        return float(self.free[self.usable()].sum()) / FULL_GPU

    def allocated_gpus(self) -> float:
        """Allocated GPU capacity, in whole-GPU units."""
        return float((FULL_GPU - self.free)[self.usable()].sum()) / FULL_GPU

    def utilisation(self) -> float:
        """Allocated share of the live GPUs (0..1)."""
        total = int(self.usable().sum())
        return self.allocated_gpus() / total if total else 0.0

    def whole_free(self) -> np.ndarray:
        """Per node: GPUs that are entirely free (0 for dead nodes)."""
        # Absent slots hold 0 free, so they never count as whole.
        return (self.free == FULL_GPU).sum(axis=1) * self.alive

    # -- feasibility ----------------------------------------------------------------------------
    def fits(self, job: Job, *, exclude: np.ndarray | None = None, allow_reserved: bool = False) -> np.ndarray:
        """Mask of nodes where a single-node ``job`` fits right now."""
        ok = self.alive.copy()
        # Most jobs ask no CPU or memory in the synthetic mixes; skip comparisons that cannot fail.
        if job.cpu_milli:
            ok &= self.cpu_free >= job.cpu_milli
        if job.memory_mib:
            ok &= self.mem_free >= job.memory_mib
        if not allow_reserved:
            ok &= ~self.reserved
        if exclude is not None:
            ok &= ~exclude
        if job.gpu_type is not None:
            ok &= self.gpu_type == job.gpu_type
        if job.num_gpus == 0:
            return ok
        if job.fractional:
            return ok & ((self.free >= job.gpu_milli) & self.exists).any(axis=1)
        return ok & (self.whole_free() >= job.num_gpus)

    def spans_nodes(self, job: Job) -> bool:
        """True when the job is wider than every node and so needs several whole nodes."""
        return job.num_gpus > self.node_width

    # -- changes --------------------------------------------------------------------------------
    def check(self, job: Job, placement: Placement) -> None:
        """Raise PlacementError unless ``placement`` is a legal home for ``job`` right now."""
        if job.id in self.allocations:
            raise PlacementError(f"job {job.id} is already placed")
        if len(placement) != job.num_gpus:
            raise PlacementError(f"job {job.id} asks for {job.num_gpus} GPUs but the placement has {len(placement)}")
        seen: set[tuple[int, int]] = set()
        nodes: dict[int, None] = {}
        for node, gpu, milli in placement:
            if not (0 <= node < self.num_nodes and 0 <= gpu < self.width and self.exists[node, gpu]):
                raise PlacementError(f"job {job.id}: no GPU {gpu} on node {node}")
            if (node, gpu) in seen:
                raise PlacementError(f"job {job.id}: GPU {gpu} of node {node} is listed twice")
            seen.add((node, gpu))
            if not self.alive[node]:
                raise PlacementError(f"job {job.id}: node {node} is down")
            if milli != job.gpu_milli:
                raise PlacementError(f"job {job.id}: asks {job.gpu_milli} milli-GPU per GPU, placement gives {milli}")
            if self.free[node, gpu] < milli:
                raise PlacementError(
                    f"job {job.id}: GPU {gpu} of node {node} has {int(self.free[node, gpu])} milli free, needs {milli} "
                    "(double-booked)"
                )
            if job.gpu_type is not None and self.gpu_type[node] != job.gpu_type:
                raise PlacementError(f"job {job.id}: wants {job.gpu_type}, node {node} has {self.gpu_type[node]}")
            nodes.setdefault(node, None)
        if job.num_gpus == 0:
            return
        for node in nodes:
            if self.cpu_free[node] < job.cpu_milli or self.mem_free[node] < job.memory_mib:
                raise PlacementError(f"job {job.id}: node {node} lacks CPU or memory")
        if len(nodes) > 1 and not self.spans_nodes(job):
            raise PlacementError(f"job {job.id} fits in one node but is split over {len(nodes)}")

    def allocate(self, job: Job, placement: Placement) -> None:
        """Give ``placement`` to ``job`` after checking it; a CPU-only job's placement is ``((node, -1, 0),)``."""
        if job.num_gpus == 0:
            if len(placement) != 1 or placement[0][1] != -1:
                raise PlacementError(f"job {job.id} uses no GPU: its placement is ((node, -1, 0),), got {placement!r}")
            if job.id in self.allocations:
                raise PlacementError(f"job {job.id} is already placed")
            node = placement[0][0]
            if not (0 <= node < self.num_nodes) or not self.alive[node]:
                raise PlacementError(f"job {job.id}: node {node} does not exist or is down")
            if self.cpu_free[node] < job.cpu_milli or self.mem_free[node] < job.memory_mib:
                raise PlacementError(f"job {job.id}: node {node} lacks CPU or memory")
            hosts = [node]
        else:
            self.check(job, placement)
            hosts = sorted({node for node, _, _ in placement})
            for node, gpu, milli in placement:
                self.free[node, gpu] -= milli
        for node in hosts:
            self.cpu_free[node] -= job.cpu_milli
            self.mem_free[node] -= job.memory_mib
        self.allocations[job.id] = Allocation(job, tuple(placement))

    def release(self, job_id: int) -> Allocation:
        """Free what ``job_id`` holds and return its allocation."""
        alloc = self.allocations.pop(job_id)
        hosts: set[int] = set()
        for node, gpu, milli in alloc.placement:
            if gpu >= 0:
                self.free[node, gpu] += milli
            hosts.add(node)
        for node in hosts:
            self.cpu_free[node] += alloc.job.cpu_milli
            self.mem_free[node] += alloc.job.memory_mib
        return alloc

    def jobs_on(self, node: int) -> list[int]:
        """Ids of the jobs holding anything on ``node``."""
        return [jid for jid, a in self.allocations.items() if any(n == node for n, _, _ in a.placement)]

    def owners(self) -> np.ndarray:
        """Nodes x slots array of the job id using each GPU (the largest share's owner), -1 if free."""
        out = np.full(self.free.shape, -1, dtype=np.int64)
        best = np.zeros(self.free.shape, dtype=np.int32)
        for jid, alloc in self.allocations.items():
            for node, gpu, milli in alloc.placement:
                if gpu >= 0 and milli > best[node, gpu]:
                    best[node, gpu] = milli
                    out[node, gpu] = jid
        return out

    def invariant_errors(self) -> list[str]:
        """Broken bookkeeping, if any: over-booked GPUs or free capacity that disagrees with allocations."""
        used = np.zeros(self.free.shape, dtype=np.int64)
        for alloc in self.allocations.values():
            for node, gpu, milli in alloc.placement:
                if gpu >= 0:
                    used[node, gpu] += milli
        errors = []
        over = np.argwhere(used > FULL_GPU)
        errors += [f"GPU {g} of node {n} booked {int(used[n, g])} milli (> {FULL_GPU})" for n, g in over]
        drift = np.argwhere(self.exists & (used + self.free != FULL_GPU))
        errors += [
            f"GPU {g} of node {n}: free {int(self.free[n, g])} + used {int(used[n, g])} != {FULL_GPU}" for n, g in drift
        ]
        return errors
