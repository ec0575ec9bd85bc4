"""Metrics: percentiles, grouped latency tables, windowed throughput, histograms, burst counting."""

import math
import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.sim import PERCENTILES, Recorder, arrivals, percentiles, sliding_max_count


def test_percentiles_match_numpy():
    values = np.random.default_rng(0).exponential(1.0, 1001)
    got = percentiles(values)
    assert list(got) == ["p50", "p90", "p99", "p99.9"]
    for q in PERCENTILES:
        assert got[f"p{q:g}"] == pytest.approx(np.percentile(values, q))


def test_percentiles_empty_and_nan():
    assert all(math.isnan(v) for v in percentiles([]).values())
    assert percentiles([1.0, float("nan"), 3.0], qs=(50,)) == {"p50": 2.0}


def test_frame_columns_and_missing_labels():
    rec = Recorder()
    rec.record(0.0, 0.1, client="a")
    rec.record(1.0, outcome="rejected")
    df = rec.frame()
    assert list(df.columns) == ["t", "latency", "client", "outcome"]
    assert len(rec) == 2
    assert df["client"].tolist() == ["a", None]
    assert df["outcome"].tolist() == [None, "rejected"]
    assert df["latency"].iloc[0] == 0.1 and math.isnan(df["latency"].iloc[1])


def test_record_is_thread_safe():
    rec = Recorder()

    def work(i):
        for k in range(2000):
            rec.record(float(k), 0.001, worker=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(rec) == 8000
    assert rec.frame().groupby("worker").size().tolist() == [2000] * 4


def test_latency_table_groups():
    rec = Recorder()
    for i in range(100):
        rec.record(i, latency=float(i), client="a", outcome="allowed")
    for i in range(10):
        rec.record(i, latency=1000.0 + i, client="b", outcome="allowed")
    rec.record(5, client="b", outcome="rejected")
    table = rec.latency_table(by=["client", "outcome"])
    assert list(table.columns[:2]) == ["client", "outcome"]
    assert list(table.columns[2:]) == ["count", "mean", "p50", "p90", "p99", "p99.9"]
    rows = {(r.client, r.outcome): r for r in table.itertuples()}
    assert set(rows) == {("a", "allowed"), ("b", "allowed"), ("b", "rejected")}
    assert rows["a", "allowed"].count == 100
    assert rows["a", "allowed"].p90 == pytest.approx(np.percentile(np.arange(100), 90))
    assert rows["b", "allowed"].mean == pytest.approx(1004.5)
    assert rows["b", "rejected"].count == 0 and math.isnan(rows["b", "rejected"].p50)
    overall = rec.latency_table()
    assert len(overall) == 1 and overall["count"].iloc[0] == 110


def test_unknown_group_label_is_named():
    rec = Recorder()
    rec.record(0.0, 1.0, client="a")
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['user'\]"):
        rec.latency_table(by="user")


def test_throughput_of_uniform_stream_equals_rate():
    rec = Recorder()
    for t in arrivals.uniform(10, 20):
        rec.record(t)
    tp = rec.throughput(window=1.0)
    assert list(tp.columns) == ["t", "rate"]
    assert tp["t"].tolist() == [float(k) for k in range(1, 21)]
    assert (tp["rate"] == 10.0).all()
    sliding = rec.throughput(window=2.0, step=0.5, start=0.0, end=20.0)
    assert (sliding["rate"] == 10.0).all()
    assert sliding["t"].iloc[0] == 2.0 and sliding["t"].iloc[-1] == 20.0


def test_throughput_includes_zero_windows_per_group():
    rec = Recorder()
    for t in [0.1, 0.2, 4.5]:
        rec.record(t, client="a")
    rec.record(2.5, client="b")
    tp = rec.throughput(window=1.0, by="client")
    assert list(tp.columns) == ["t", "client", "rate"]
    a = tp[tp["client"] == "a"]
    b = tp[tp["client"] == "b"]
    assert a["rate"].tolist() == [2.0, 0.0, 0.0, 0.0, 1.0]
    assert b["rate"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_throughput_half_open_windows():
    rec = Recorder()
    rec.record(1.0)
    tp = rec.throughput(window=1.0, start=0.0, end=2.0)
    # An event at exactly t=1 belongs to [1, 2), not [0, 1).
    assert tp["rate"].tolist() == [0.0, 1.0]


def test_throughput_rejects_bad_window():
    with pytest.raises(ValueError, match="window must be > 0"):
        Recorder().throughput(window=0)
    with pytest.raises(ValueError, match="step must be > 0"):
        Recorder().throughput(step=-1)


def test_timeseries_in_time_order():
    rec = Recorder()
    rec.record(2.0, queue=3, pool="x")
    rec.record(1.0, queue=5, pool="y")
    rec.record(1.5, latency=0.2)
    ts = rec.timeseries("queue")
    assert ts["t"].tolist() == [1.0, 2.0]
    assert ts["value"].tolist() == [5.0, 3.0]
    assert rec.timeseries("queue", by="pool")["pool"].tolist() == ["y", "x"]
    with pytest.raises(ValueError, match="value_label: unknown 'depth'"):
        rec.timeseries("depth")


def test_histogram_counts_sum_to_n():
    rec = Recorder()
    lat = np.random.default_rng(1).lognormal(0, 1, 500)
    for i, x in enumerate(lat):
        rec.record(float(i), float(x), client="ab"[i % 2])
    rec.record(999.0)  # no latency: not counted
    hist = rec.histogram(bins=15)
    assert list(hist.columns) == ["bin_left", "bin_right", "count"]
    assert len(hist) == 15 and hist["count"].sum() == 500
    assert np.allclose(hist["bin_left"].iloc[1:].to_numpy(), hist["bin_right"].iloc[:-1].to_numpy())
    by = rec.histogram(bins=15, by="client")
    assert list(by.columns) == ["bin_left", "bin_right", "count", "client"]
    assert by.groupby("client")["count"].sum().to_dict() == {"a": 250, "b": 250}


@pytest.mark.parametrize(
    ("times", "window", "expected"),
    [
        ([], 1.0, 0),
        ([5.0], 1.0, 1),
        ([0.0, 1.0], 1.0, 1),  # half-open: [0, 1) excludes 1.0
        ([0.0, 0.999], 1.0, 2),
        # Fixed window of 1 s with limit 3: 3 at the end of one window, 3 at the start of the next.
        ([0.9, 0.95, 0.99, 1.0, 1.01, 1.05], 1.0, 6),
        ([3.0, 1.0, 2.0, 2.5, 0.0], 1.5, 3),
    ],
)
def test_sliding_max_count_cases(times, window, expected):
    assert sliding_max_count(times, window) == expected


def test_sliding_max_count_rejects_bad_window():
    with pytest.raises(ValueError, match="window must be > 0, got 0"):
        sliding_max_count([1.0], 0)


def _brute_force(times, window):
    best = 0
    for s in times:
        best = max(best, sum(1 for x in times if s <= x < s + window))
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)), max_size=60),
    st.floats(0.01, 50, allow_nan=False),
)
def test_sliding_max_count_matches_brute_force(times, window):
    assert sliding_max_count(times, window) == _brute_force(times, window)


def test_frame_is_a_dataframe_snapshot():
    rec = Recorder()
    rec.record(0.0, 1.0)
    df = rec.frame()
    rec.record(1.0, 2.0)
    assert isinstance(df, pd.DataFrame) and len(df) == 1 and len(rec) == 2
