"""Lab 09: a GPU cluster scheduler: placement, queue policies, fragmentation, failures, traces.

A ``Simulation`` runs a ``Cluster`` (racks, nodes, GPUs in NVLink domains) under a queue policy
(``schedulers``) and a placement policy (``placement``), the two student seams of ``protocol``,
with node failures (``Failure``, an input like the jobs) detected by heartbeats (``health``);
``fragmentation`` measures stranding; ``experiments`` holds what notebooks, benchmarks and the
dashboard run.
"""

from lab_core.cluster.experiments import detection_tradeoff
from lab_core.cluster.failures import Failure
from lab_core.cluster.fragmentation import (
    Workload,
    fragmentation_ratio,
    fragmented_gpus,
    node_fragmentation,
    stranded_gpus,
    stranded_mask,
    stranded_ratio,
)
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.job import FULL_GPU, Job, JobError, State
from lab_core.cluster.model import GPU_TYPES, Cluster, NodeSpec, Placement, PlacementError
from lab_core.cluster.placement import FGD, PLACERS, best_fit, first_fit, gpus_in_node, topology_aware
from lab_core.cluster.protocol import Placer, Scheduler
from lab_core.cluster.schedulers import (
    SCHEDULERS,
    conservative_backfill,
    defragment,
    easy_backfill,
    fifo,
    greedy,
    reservation,
)
from lab_core.cluster.simulator import SimConfig, SimResult, Simulation
from lab_core.cluster.synthetic import MIXES, synthetic
from lab_core.cluster.view import Reservation, Running, View

__all__ = [
    "FGD",
    "FULL_GPU",
    "GPU_TYPES",
    "MIXES",
    "PLACERS",
    "SCHEDULERS",
    "Cluster",
    "Failure",
    "HealthConfig",
    "Job",
    "JobError",
    "NodeSpec",
    "Placement",
    "Placer",
    "PlacementError",
    "Reservation",
    "Running",
    "Scheduler",
    "SimConfig",
    "SimResult",
    "Simulation",
    "State",
    "View",
    "Workload",
    "best_fit",
    "conservative_backfill",
    "defragment",
    "detection_tradeoff",
    "easy_backfill",
    "fifo",
    "first_fit",
    "fragmented_gpus",
    "fragmentation_ratio",
    "gpus_in_node",
    "greedy",
    "node_fragmentation",
    "reservation",
    "stranded_gpus",
    "stranded_mask",
    "stranded_ratio",
    "synthetic",
    "topology_aware",
]
