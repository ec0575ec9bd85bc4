"""Migration cost from a measured checkpoint: how long moving a job really takes.

Defragmentation and preemption move a job by checkpointing it, copying the checkpoint and
restoring it. ``measure_checkpoint`` times writing (with fsync) and reading back a job's state
(weights and optimizer moments as arrays) on this machine's disk; ``migration_seconds`` turns the
measured bandwidths into the time to move a job whose full checkpoint (weights, gradients are not
saved, Adam's two moments) is ``bytes_per_param`` bytes per parameter, sharded over the job's GPUs
(each rank saves its shard in parallel). The simulator charges ``measured_migration_seconds`` per
move unless told a cost; ``lab_core.cluster.validate`` checks the model against a real torch job.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

# bf16 weights (2) + fp32 master weights (4) + Adam m and v in fp32 (8): about 3x a bf16+fp32 model.
BYTES_PER_PARAM = 14
#: The job whose move the simulator charges: a 7B-parameter model trained on one 8-GPU node.
REFERENCE_PARAMS, REFERENCE_GPUS = 7e9, 8


@dataclass(frozen=True)
class CheckpointSpeed:
    """Measured write and read bandwidth of a checkpoint on local disk, bytes per second."""

    write_bps: float
    read_bps: float
    size_bytes: int


def measure_checkpoint(size_mb: int = 64, repeats: int = 3, folder: str | None = None) -> CheckpointSpeed:
    """Time writing (with fsync) and reading back a ``size_mb`` job state of eight arrays; medians of ``repeats``."""
    if size_mb < 1 or repeats < 1:
        raise ValueError(f"size_mb and repeats must be >= 1, got {size_mb!r} and {repeats!r}")
    g = np.random.default_rng(0)
    state = {f"layer{i}.weight": g.standard_normal(size_mb * 2**20 // 4 // 8, dtype=np.float32) for i in range(8)}
    size = sum(a.nbytes for a in state.values())
    writes, reads = [], []
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = os.path.join(tmp, "ckpt.npz")
        for _ in range(repeats):
            t0 = time.perf_counter()
            with open(path, "wb") as f:
                np.savez(f, **state)
                f.flush()
                os.fsync(f.fileno())
            writes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with np.load(path) as stored:
                loaded = {name: stored[name] for name in stored.files}
            reads.append(time.perf_counter() - t0)
            if loaded.keys() != state.keys():
                raise RuntimeError("checkpoint read back differs from what was written")
    return CheckpointSpeed(size / sorted(writes)[len(writes) // 2], size / sorted(reads)[len(reads) // 2], size)


def migration_seconds(
    params: float,
    gpus: int,
    speed: CheckpointSpeed,
    *,
    bytes_per_param: float = BYTES_PER_PARAM,
    restart_seconds: float = 30.0,
) -> float:
    """Seconds to checkpoint, copy and restore a job training ``params`` parameters on ``gpus`` GPUs.

    Each GPU's rank writes and later reads its shard at the measured speed (the copy between
    nodes is assumed no slower than the disk); ``restart_seconds`` covers process start-up and
    re-forming the communicator.
    """
    if params <= 0 or gpus < 1:
        raise ValueError(f"params must be > 0 and gpus >= 1, got {params!r} and {gpus!r}")
    shard = params * bytes_per_param / gpus
    return shard / speed.write_bps + shard / speed.read_bps + restart_seconds


@functools.cache
def measured_migration_seconds() -> float:
    """Seconds to move the reference job (7B parameters on 8 GPUs), from a checkpoint measured once
    per process (16 MB, median of five, about 0.5 s: a busy disk's fsync varies several-fold)."""
    return migration_seconds(REFERENCE_PARAMS, REFERENCE_GPUS, measure_checkpoint(size_mb=16, repeats=5))
