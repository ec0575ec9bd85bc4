"""The migration model against a real job: measure small, predict, compare.

A small torch model is trained a few Adam steps, then migrated as a scheduler would move it: its
model and optimizer state are saved (with fsync), loaded and restored into a fresh model and
optimizer. ``calibrate.migration_seconds`` predicts that time from the bandwidths
``calibrate.measure_checkpoint`` found for plain arrays; :func:`validate` puts both side by side.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence

import pandas as pd
import torch

from lab_core.cluster.calibrate import CheckpointSpeed, measure_checkpoint, migration_seconds
from lab_core.sim.calibration import validation_table

#: fp32 weights and Adam's two fp32 moments: what a checkpoint of the torch job holds per parameter.
FP32_ADAM_BYTES = 12


def _model(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width))


def migrate_job(params: float, folder: str | None = None) -> tuple[float, int, int]:
    """Checkpoint a real job of about ``params`` parameters (two Adam steps in, so its moments exist)
    and restore it into a fresh model and optimizer, as a migration does.

    Returns the seconds it took, the checkpoint's bytes and the job's exact parameter count; raises
    if the restored weights differ from the saved ones.
    """
    width = max(8, round(math.sqrt(params / 2)))
    model = _model(width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(4, width, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    # The target is built before the clock starts: a real migration restores into a started process.
    fresh = _model(width)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = os.path.join(tmp, "job.pt")
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())
        state = torch.load(path)
        fresh.load_state_dict(state["model"])
        fresh_opt.load_state_dict(state["optimizer"])
        seconds = time.perf_counter() - t0
        size = os.path.getsize(path)
    if not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())):
        raise RuntimeError("the restored job's weights differ from the checkpointed ones")
    return seconds, size, sum(p.numel() for p in model.parameters())


def validate(
    sizes: Sequence[float] = (1e6, 4e6),
    *,
    calibrate_mb: int = 16,
    repeats: int = 5,
    folder: str | None = None,
) -> pd.DataFrame:
    """Measured against predicted, per job size: migration seconds and checkpoint megabytes.

    The prediction uses the bandwidth of a ``calibrate_mb`` array checkpoint (no restart time: the
    job is restored in this process). Each repeat measures the array checkpoint and the job one
    after the other, so both meet the same disk; both figures are the fastest of ``repeats``,
    since a busy machine only ever adds time.
    """
    rows = []
    for params in sizes:
        speeds, runs = [], []
        for _ in range(repeats):
            speeds.append(measure_checkpoint(size_mb=calibrate_mb, repeats=1, folder=folder))
            runs.append(migrate_job(params, folder))
        best = CheckpointSpeed(max(s.write_bps for s in speeds), max(s.read_bps for s in speeds), speeds[0].size_bytes)
        seconds, size, count = min(runs)
        label = f"{count / 1e6:.1f}M-parameter torch job"
        rows.append(
            (
                f"checkpoint + restore, {label}",
                "s",
                seconds,
                migration_seconds(count, 1, best, bytes_per_param=FP32_ADAM_BYTES, restart_seconds=0.0),
            )
        )
        rows.append((f"checkpoint size, {label}", "MB", size / 1e6, count * FP32_ADAM_BYTES / 1e6))
    return validation_table(rows)
