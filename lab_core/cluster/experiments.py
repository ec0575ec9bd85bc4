"""Runs that notebooks, dashboards and benchmarks share, built on the simulator: they return data
(DataFrames) and draw nothing. Kept apart from the system's modules so none of those needs the
simulator: the simulator imports them, never the other way round."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lab_core.cluster.health import HealthConfig
from lab_core.cluster.model import Cluster
from lab_core.cluster.simulator import SimConfig, Simulation
from lab_core.sim.rng import rng


def detection_tradeoff(
    timeouts: Iterable[float],
    *,
    interval: float = 10.0,
    loss: float = 0.05,
    nodes: int = 64,
    hours: float = 24.0,
    failures: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """For each detector timeout: mean delay to detect real failures and false positives per node-day.

    Runs the heartbeat model alone (no jobs) on ``nodes`` nodes for ``hours``, with ``failures``
    real node failures at seeded random times.
    """
    rows = []
    horizon = hours * 3600.0
    g = rng(seed)
    when = np.sort(g.uniform(0.1 * horizon, 0.9 * horizon, size=failures))
    who = g.choice(nodes, size=failures, replace=failures > nodes)
    for timeout in timeouts:
        cluster = Cluster.build(racks=1, nodes_per_rack=nodes, gpus_per_node=1, nvlink_domain=1)
        sim = Simulation(cluster, config=SimConfig(health=HealthConfig(interval, timeout, loss, seed), sample_every=horizon))
        for t, node in zip(when.tolist(), who.tolist()):
            ev = sim.env.timeout(t)
            ev.callbacks.append(lambda _e, n=int(node): sim.fail_nodes([n], repair_after=3600.0))
        sim.env.run(until=horizon)
        table = sim.health.table()
        real = table[table["real"]]
        false = int((~table["real"].astype(bool)).sum())
        rows.append(
            {
                "timeout": float(timeout),
                "mean_detection_delay": float(real["delay"].mean()) if len(real) else float("nan"),
                "detected": int(len(real)),
                "false_positives_per_node_day": false / (nodes * hours / 24.0),
            }
        )
    return pd.DataFrame(rows)
