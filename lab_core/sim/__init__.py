"""Shared simulation kit: clocks, seeded randomness, arrival processes, metric recorders, progress
reports and the calibration table.

Arrival generators stay namespaced (``arrivals.poisson``, ``arrivals.trace``) because names such
as ``uniform`` or ``gamma`` would be ambiguous on their own.
"""

from lab_core.sim import arrivals, metrics
from lab_core.sim.arrivals import drive
from lab_core.sim.calibration import relative_error, validation_table, worst_error
from lab_core.sim.clock import Clock, ManualClock, RealClock, SimClock
from lab_core.sim.metrics import PERCENTILES, Recorder, percentiles, sliding_max_count
from lab_core.sim.progress import Progress, steps
from lab_core.sim.rng import DEFAULT_SEED, rng

__all__ = [
    "DEFAULT_SEED",
    "PERCENTILES",
    "Progress",
    "Clock",
    "ManualClock",
    "RealClock",
    "Recorder",
    "SimClock",
    "arrivals",
    "drive",
    "metrics",
    "percentiles",
    "relative_error",
    "rng",
    "sliding_max_count",
    "steps",
    "validation_table",
    "worst_error",
]
