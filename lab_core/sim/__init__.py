"""Shared simulation kit: clocks, seeded randomness, arrival processes and metric recorders.

Arrival generators stay namespaced (``arrivals.poisson``, ``arrivals.trace``) because names such
as ``uniform`` or ``gamma`` would be ambiguous on their own.
"""
from lab_core.sim import arrivals, metrics
from lab_core.sim.arrivals import drive
from lab_core.sim.clock import Clock, ManualClock, RealClock, SimClock
from lab_core.sim.metrics import PERCENTILES, Recorder, percentiles, sliding_max_count
from lab_core.sim.rng import DEFAULT_SEED, rng

__all__ = [
    "DEFAULT_SEED",
    "PERCENTILES",
    "Clock",
    "ManualClock",
    "RealClock",
    "Recorder",
    "SimClock",
    "arrivals",
    "drive",
    "metrics",
    "percentiles",
    "rng",
    "sliding_max_count",
]
