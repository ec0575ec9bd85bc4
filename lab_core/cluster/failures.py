"""Node failures as an input of a simulation, like its jobs: which nodes die, when, and for how long."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab_core.cluster.model import Cluster


@dataclass(frozen=True)
class Failure:
    """One ``node`` or a whole ``rack`` (give exactly one) dies at ``at`` seconds and is repaired
    ``repair_after`` seconds later (None: never)."""

    at: float
    node: int | None = None
    rack: int | None = None
    repair_after: float | None = None

    def __post_init__(self) -> None:
        if (self.node is None) == (self.rack is None):
            raise ValueError("a failure names exactly one of node or rack")
        if not (math.isfinite(self.at) and self.at >= 0):
            raise ValueError(f"at must be a finite time >= 0 seconds, got {self.at!r}")
        if self.repair_after is not None and not (math.isfinite(self.repair_after) and self.repair_after > 0):
            raise ValueError(f"repair_after must be a finite number of seconds > 0 or None, got {self.repair_after!r}")

    def nodes(self, cluster: Cluster) -> list[int]:
        """The nodes of ``cluster`` this failure takes down; ValueError for a node or rack it lacks."""
        if self.node is not None:
            if not 0 <= self.node < cluster.num_nodes:
                raise ValueError(f"no node {self.node}; the cluster has nodes 0..{cluster.num_nodes - 1}")
            return [int(self.node)]
        nodes = np.flatnonzero(cluster.rack == self.rack)
        if not nodes.size:
            raise ValueError(f"no rack {self.rack}; racks are {sorted(set(cluster.rack.tolist()))}")
        return nodes.tolist()
