"""Synthetic workloads: seeded job streams with a published-like shape mix, for labs and tests.

The ``published`` mix follows the shape of public deep-learning cluster traces (Philly, Helios,
Alibaba PAI): most jobs take one GPU, a tenth take a whole 8-GPU node, a few span nodes;
durations are lognormal with a median of about 20 minutes and a long tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab_core.cluster.job import FULL_GPU, Job
from lab_core.sim import arrivals
from lab_core.sim.rng import rng


@dataclass(frozen=True)
class Mix:
    """Job shapes (GPUs, milli-GPU per GPU) with their probabilities, and a lognormal duration."""

    shapes: tuple[tuple[int, int], ...]
    weights: tuple[float, ...]
    median_minutes: float = 20.0
    sigma: float = 1.2


MIXES: dict[str, Mix] = {
    "published": Mix(
        ((1, FULL_GPU), (2, FULL_GPU), (4, FULL_GPU), (8, FULL_GPU), (16, FULL_GPU)), (0.70, 0.10, 0.08, 0.10, 0.02)
    ),
    "heavy8": Mix(
        ((1, FULL_GPU), (2, FULL_GPU), (4, FULL_GPU), (8, FULL_GPU)), (0.45, 0.10, 0.10, 0.35), median_minutes=30.0
    ),
    "sharing": Mix(((1, 250), (1, 500), (1, FULL_GPU), (2, FULL_GPU), (8, FULL_GPU)), (0.25, 0.25, 0.35, 0.10, 0.05)),
}


def synthetic(
    n_jobs: int = 500,
    *,
    rate: float = 1 / 60,
    mix: str | Mix = "published",
    burstiness: float = 1.0,
    tenants: int = 3,
    checkpoint_interval: float | None = 1800.0,
    overestimate: float = 1.0,
    priorities: int = 1,
    seed: int = 0,
    max_gpus: int | None = None,
) -> list[Job]:
    """``n_jobs`` jobs arriving at ``rate`` per second (gamma gaps with CV ``burstiness``).

    ``overestimate`` >= 1 scales users' walltime estimates above the true durations; jobs get
    tenants ``t0..`` and priorities ``0..priorities-1`` uniformly; shapes wider than
    ``max_gpus`` are left out of the mix.
    """
    if not isinstance(n_jobs, int) or n_jobs < 0:
        raise ValueError(f"n_jobs must be a whole number >= 0, got {n_jobs!r}")
    if overestimate < 1.0:
        raise ValueError(f"overestimate must be >= 1 (estimates never below the true duration), got {overestimate!r}")
    m = MIXES[mix] if isinstance(mix, str) else mix
    shapes = [s for s in m.shapes if max_gpus is None or s[0] <= max_gpus]
    weights = np.array([w for s, w in zip(m.shapes, m.weights) if max_gpus is None or s[0] <= max_gpus])
    if not shapes:
        raise ValueError(f"no shape of the mix fits max_gpus={max_gpus}")
    g = rng(seed)
    times = np.empty(0)
    horizon = max(n_jobs / rate, 1.0)
    while times.size < n_jobs:
        horizon *= 1.5
        times = arrivals.gamma(rate, horizon, cv=burstiness, seed=seed)
    times = times[:n_jobs]
    pick = g.choice(len(shapes), size=n_jobs, p=weights / weights.sum())
    durations = np.clip(g.lognormal(np.log(m.median_minutes * 60.0), m.sigma, size=n_jobs), 60.0, 7 * 86400.0)
    slack = g.uniform(1.0, overestimate, size=n_jobs) if overestimate > 1.0 else np.ones(n_jobs)
    tenant = g.integers(0, tenants, size=n_jobs)
    prio = g.integers(0, priorities, size=n_jobs)
    return [
        Job(
            id=i,
            submit=float(times[i]),
            duration=float(round(durations[i])),
            num_gpus=shapes[pick[i]][0],
            gpu_milli=shapes[pick[i]][1],
            tenant=f"t{tenant[i]}",
            priority=int(prio[i]),
            checkpoint_interval=checkpoint_interval,
            estimate=float(round(durations[i]) * slack[i]),
        )
        for i in range(n_jobs)
    ]
