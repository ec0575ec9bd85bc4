"""Node agents' heartbeats and the health monitor's failure detector.

Every ``interval`` seconds each live node's agent sends a heartbeat, lost with probability
``loss``; the monitor declares a node dead when it has heard nothing for ``timeout`` seconds.
A short timeout notices real failures sooner but also kills jobs on healthy nodes whose
heartbeats were merely lost (false positives); a node wrongly declared dead rejoins on its
next heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lab_core.sim.rng import rng

if TYPE_CHECKING:
    from lab_core.cluster.simulator import Simulation


@dataclass(frozen=True)
class HealthConfig:
    """Heartbeat period, detector timeout (both seconds) and the chance a heartbeat is lost."""

    interval: float = 10.0
    timeout: float = 30.0
    loss: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {self.interval!r}")
        if not self.timeout >= self.interval:
            raise ValueError(f"timeout must be >= interval ({self.interval}), got {self.timeout!r}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss!r}")


class HealthMonitor:
    """Heartbeats from every node agent, one vectorised tick per interval, and the timeout detector."""

    def __init__(self, sim: Simulation, config: HealthConfig) -> None:
        self.sim = sim
        self.config = config
        n = sim.cluster.num_nodes
        self.broken = np.zeros(n, dtype=bool)  # really down (injected), as opposed to declared dead
        self.last_heartbeat = np.zeros(n)
        self.failed_at = np.full(n, np.nan)
        self.detections: list[dict] = []
        self._rng = rng(config.seed)
        sim.env.process(self._tick())

    def failed(self, nodes: Iterable[int], repair_after: float | None) -> None:
        """Nodes stop sending heartbeats (until repaired)."""
        nodes = list(nodes)
        self.broken[nodes] = True
        self.failed_at[nodes] = self.sim.env.now
        if repair_after is not None:
            ev = self.sim.env.timeout(repair_after)
            ev.callbacks.append(lambda _e: self._repair(nodes))

    def _repair(self, nodes: list[int]) -> None:
        self.broken[nodes] = False
        self.failed_at[nodes] = np.nan

    def _tick(self):
        cfg = self.config
        while True:
            now = self.sim.env.now
            heard = ~self.broken & (self._rng.random(self.broken.size) >= cfg.loss)
            self.last_heartbeat[heard] = now
            back = heard & ~self.sim.cluster.alive
            if back.any():
                self.sim.declare_alive(np.flatnonzero(back).tolist())
            silent = self.sim.cluster.alive & (now - self.last_heartbeat >= cfg.timeout)
            for node in np.flatnonzero(silent).tolist():
                real = bool(self.broken[node])
                delay = now - self.failed_at[node] if real else float("nan")
                self.detections.append({"t": now, "node": node, "real": real, "delay": delay})
                self.sim.events.append({"t": now, "event": "detected" if real else "false positive", "node": node})
            if silent.any():
                self.sim.declare_dead(np.flatnonzero(silent).tolist())
            yield self.sim.env.timeout(cfg.interval)

    def table(self) -> pd.DataFrame:
        """One row per node the detector declared dead: time, node, real failure or not, detection delay."""
        return pd.DataFrame(self.detections, columns=["t", "node", "real", "delay"])
