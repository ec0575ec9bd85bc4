"""Metric recording: latency percentiles, throughput and histograms as tidy pandas DataFrames."""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PERCENTILES", "percentiles", "Recorder", "sliding_max_count"]

PERCENTILES: tuple[float, ...] = (50, 90, 99, 99.9)

By = str | Sequence[str] | None


def _pname(q: float) -> str:
    return f"p{q:g}"


def percentiles(values: Iterable[float], qs: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """Percentiles of ``values`` (NaN ignored) as ``{"p50": ..., "p99.9": ...}``; NaN when empty."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {_pname(q): math.nan for q in qs}
    return {_pname(q): float(v) for q, v in zip(qs, np.percentile(arr, list(qs)))}


def sliding_max_count(times: Iterable[float], window: float) -> int:
    """Most events in any half-open interval ``[s, s + window)``."""
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise ValueError(f"window must be > 0, got {window!r}")
    t = np.sort(np.asarray(list(times) if not isinstance(times, np.ndarray) else times, float))
    if t.size == 0:
        return 0
    # A busiest interval can always be slid right until it starts at an event, so only
    # intervals starting at each event need counting: the two-pointer scan, vectorised.
    ends = np.searchsorted(t, t + window, side="left")
    return int((ends - np.arange(t.size)).max())


def _label_column(values: list[Any]) -> pd.Series:
    # An object column keeps None (not NaN) for a missing label; complete columns get their
    # natural dtype so numeric labels stay numeric.
    if any(v is None for v in values):
        return pd.Series(values, dtype=object)
    return pd.Series(values)


def _with_groups(frame: pd.DataFrame, cols: list[str], keys: list[tuple[Any, ...]], reps: int) -> None:
    for i, c in enumerate(cols):
        frame[c] = _label_column([k[i] for k in keys for _ in range(reps)])


def _columns(by: By) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


class Recorder:
    """Thread-safe collector of events ``(t, latency, **labels)`` with tidy summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._latency: list[float] = []
        self._labels: list[dict[str, Hashable]] = []
        self._names: dict[str, None] = {}  # label names in first-seen order

    def record(self, t: float, latency: float | None = None, **labels: Hashable) -> None:
        """Add one event at time ``t`` with an optional latency (seconds) and labels."""
        with self._lock:
            self._t.append(float(t))
            self._latency.append(math.nan if latency is None else float(latency))
            self._labels.append(labels)
            for name in labels:
                self._names.setdefault(name, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._t)

    def frame(self) -> pd.DataFrame:
        """All events: columns ``t``, ``latency`` (NaN when absent), then one per label (None when absent)."""
        with self._lock:
            t, latency = list(self._t), list(self._latency)
            labels, names = list(self._labels), list(self._names)
        data: dict[str, Any] = {
            "t": np.asarray(t, dtype=np.float64),
            "latency": np.asarray(latency, dtype=np.float64),
        }
        for name in names:
            data[name] = _label_column([row.get(name) for row in labels])
        return pd.DataFrame(data)

    def _frame_by(self, by: By) -> tuple[pd.DataFrame, list[str]]:
        df = self.frame()
        cols = _columns(by)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            known = [c for c in df.columns if c not in ("t", "latency")]
            raise ValueError(f"by: unknown label(s) {missing}; recorded labels are {known}")
        return df, cols

    @staticmethod
    def _groups(df: pd.DataFrame, cols: list[str]) -> Iterable[tuple[tuple[Any, ...], pd.DataFrame]]:
        if not cols:
            yield (), df
            return
        for key, part in df.groupby(cols, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            # groupby turns a missing label into NaN; give it back as None, as in frame().
            yield tuple(None if pd.isna(k) else k for k in key), part

    def latency_table(self, by: By = None) -> pd.DataFrame:
        """Per group: count of latencies, mean, p50, p90, p99, p99.9 (group columns first)."""
        df, cols = self._frame_by(by)
        keys, rows = [], []
        for key, part in self._groups(df, cols):
            lat = part["latency"].dropna().to_numpy()
            keys.append(key)
            rows.append(
                {
                    "count": int(lat.size),
                    "mean": float(lat.mean()) if lat.size else math.nan,
                    **percentiles(lat),
                }
            )
        stat_cols = ["count", "mean", *(_pname(q) for q in PERCENTILES)]
        stats = pd.DataFrame(rows, columns=stat_cols)
        _with_groups(stats, cols, keys, 1)
        return stats[[*cols, *stat_cols]]

    def throughput(
        self,
        window: float = 1.0,
        step: float | None = None,
        by: By = None,
        start: float | None = None,
        end: float | None = None,
    ) -> pd.DataFrame:
        """Events per second over ``[t - window, t)`` for window ends ``t`` every ``step``.

        ``start`` defaults to the first event rounded down to a multiple of ``window``; windows
        run until one ends past the last event, or up to ``end``. Empty windows have rate 0.
        """
        if not window > 0:
            raise ValueError(f"window must be > 0, got {window!r}")
        step = window if step is None else step
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step!r}")
        df, cols = self._frame_by(by)
        columns = ["t", *cols, "rate"]
        if df.empty and (start is None or end is None):
            return pd.DataFrame(columns=columns)
        if start is None:
            start = math.floor(df["t"].min() / window) * window
        if end is None:
            # Enough windows that the last one ends after the last event.
            n = max(1, math.floor((df["t"].max() - start - window) / step) + 2)
        else:
            n = max(0, math.floor((end - start - window) / step + 1e-9) + 1)
        ends = start + window + np.arange(n, dtype=np.float64) * step
        frames = []
        for key, part in self._groups(df, cols):
            times = np.sort(part["t"].to_numpy())
            counts = np.searchsorted(times, ends, "left") - np.searchsorted(times, ends - window, "left")
            frame = pd.DataFrame({"t": ends, "rate": counts / window})
            _with_groups(frame, cols, [key], n)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns]

    def timeseries(self, value_label: str, by: By = None) -> pd.DataFrame:
        """Recorded values of a numeric label (or ``latency``) over time: columns t, [group cols], value."""
        df, cols = self._frame_by(by)
        if value_label not in df.columns or value_label == "t":
            known = [c for c in df.columns if c != "t"]
            raise ValueError(f"value_label: unknown {value_label!r}; choose one of {known}")
        values = pd.to_numeric(df[value_label], errors="coerce")
        out = df.loc[values.notna(), ["t", *cols]].copy()
        out["value"] = values[values.notna()].astype(float)
        return out.sort_values("t", kind="stable").reset_index(drop=True)

    def histogram(self, column: str = "latency", bins: int | Sequence[float] = 20, by: By = None) -> pd.DataFrame:
        """Counts of ``column`` in bins shared by all groups: bin_left, bin_right, count [, group cols]."""
        df, cols = self._frame_by(by)
        if column not in df.columns:
            raise ValueError(f"column: unknown {column!r}; columns are {list(df.columns)}")
        values = pd.to_numeric(df[column], errors="coerce")
        df = df.loc[values.notna()].assign(**{column: values[values.notna()].astype(float)})
        out_cols = ["bin_left", "bin_right", "count", *cols]
        if df.empty:
            return pd.DataFrame(columns=out_cols)
        # Shared edges so groups can be compared bar by bar.
        edges = np.histogram_bin_edges(df[column].to_numpy(), bins=bins)
        frames = []
        for key, part in self._groups(df, cols):
            counts, _ = np.histogram(part[column].to_numpy(), bins=edges)
            frame = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "count": counts})
            _with_groups(frame, cols, [key], len(counts))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)[out_cols]
