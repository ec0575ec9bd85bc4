"""One validation table for every lab that calibrates a simulator against its real system.

Each row compares what the real part measured with what the simulator predicted for the same
workload; notebooks print it, benchmarks store it, tests bound its relative errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

COLUMNS: tuple[str, ...] = ("metric", "unit", "measured", "predicted", "rel_error")


def relative_error(predicted: float, measured: float) -> float:
    """``(predicted - measured) / measured``; NaN when nothing was measured."""
    return (predicted - measured) / measured if measured else math.nan


def validation_table(rows: Iterable[tuple[str, str, float, float]]) -> pd.DataFrame:
    """A table of ``(metric, unit, measured, predicted)`` rows with each row's relative error."""
    table = pd.DataFrame(
        [
            (metric, unit, float(measured), float(predicted), relative_error(float(predicted), float(measured)))
            for metric, unit, measured, predicted in rows
        ],
        columns=list(COLUMNS),
    )
    if table["metric"].duplicated().any():
        raise ValueError(f"metrics must be distinct, got {list(table['metric'])}")
    return table


def worst_error(table: pd.DataFrame) -> float:
    """The largest absolute relative error of a validation table (NaN rows ignored)."""
    return float(table["rel_error"].abs().max())
