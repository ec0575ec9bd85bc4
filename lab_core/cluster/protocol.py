"""The student seams of Lab 09: a queue policy (``Scheduler``) and a placement policy (``Placer``).

Every built-in policy follows them (``schedulers``, ``placement``), so the simulator, the live
cluster and the dashboard run a student's function exactly as they run the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from lab_core.cluster.job import Job
from lab_core.cluster.model import Cluster, Placement

if TYPE_CHECKING:
    from lab_core.cluster.view import View


class Scheduler(Protocol):
    """A queueing policy: called whenever something changes, it starts (or moves) jobs through ``view``."""

    def __call__(self, view: View) -> None: ...


class Placer(Protocol):
    """A placement policy: the GPUs ``job`` gets now (None: nowhere), keeping off the ``exclude`` node mask."""

    def __call__(self, cluster: Cluster, job: Job, exclude: np.ndarray | None = None) -> Placement | None: ...
