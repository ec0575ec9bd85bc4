"""Lab 03's dashboard data in ``experiments``: the size guard, the recompute record, the tidy frames
behind the plots and the summary table, and the reader's page with a student's seams."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lab_core.feed import experiments as ex
from lab_core.feed.policy import merge
from lab_core.feed.simulate import SUMMARY_COLUMNS

KW = {"duration": 0.5, "read_ratio": 5.0, "seed": 1}


@pytest.fixture(scope="module")
def study():
    return ex.fanout_study(ex.graph(2_000, 10.0, 5.0, 1), 100, **KW)


def test_check_size_refuses_only_past_the_bound():
    per_run = ex.WRITE_RATE * 1.0 * (1.0 + 50.0)
    ex.check_size(1.0, 50.0, int(ex.MAX_EVENTS // per_run))
    with pytest.raises(ValueError, match="lower the duration or the read:write ratio"):
        ex.check_size(1.0, 50.0, int(ex.MAX_EVENTS // per_run) + 1)


def test_study_run_rows_and_tables(study):
    run = ex.StudyRun(study)
    assert run.row("hybrid")["threshold"] == 100 and run.row("yours") is None
    assert run.table("summary").equals(study.summary) and run.table("summary") is not study.summary
    assert run.table("sweep").equals(study.sweep)
    empty = ex.StudyRun()
    assert empty.row("push") is None
    assert empty.table("sweep").empty and list(empty.table("summary").columns) == SUMMARY_COLUMNS


def test_plotted_fills_a_failed_run_with_zeros(study):
    assert ex.plotted(study.summary) is study.summary
    zeros = ex.plotted(pd.DataFrame(columns=SUMMARY_COLUMNS))
    assert list(zeros["strategy"]) == list(ex.STRATEGIES) and float(zeros["writes_per_post"].sum()) == 0.0


def test_visibility_and_latency_are_the_summary_reshaped(study):
    s = study.summary.set_index("strategy")
    vis = ex.visibility(study.summary).set_index(["strategy", "percentile"])["delay_ms"]
    assert vis["hybrid", "p99"] == pytest.approx(s.loc["hybrid", "visibility_p99"] * 1e3)
    assert vis["push", "p50"] == pytest.approx(s.loc["push", "visibility_p50"] * 1e3)
    lat = ex.read_latency(study.summary).set_index("strategy")
    assert list(lat.columns) == ["count", "p50", "p90", "p99", "p99.9"]
    assert lat.loc["pull", "p99"] == s.loc["pull", "read_p99"] and lat.loc["pull", "count"] == s.loc["pull", "reads"]


def test_hybrid_gains(study):
    hybrid = study.row("hybrid")
    cut, ratio = ex.hybrid_gains(hybrid)
    assert cut == pytest.approx(100.0 * (1.0 - hybrid["writes_vs_push"]))
    assert ratio == hybrid["read_p99_vs_push"]
    assert all(math.isnan(v) for v in ex.hybrid_gains(None))


def test_tradeoff_points_label_the_ends_and_leave_the_current_threshold_to_its_marker(study):
    pts = ex.tradeoff_points(study.sweep, 100)
    assert list(pts["label"]) == ["pull (all)", "≥20", "", "≥500", "push (none)"]
    assert list(pts["p99"]) == pytest.approx(list(study.sweep["read_p99"] * 1e3))
    cur = ex.current_point(study.row("hybrid"), 100)
    assert cur.iloc[0].to_dict() == {
        "writes": pytest.approx(study.row("hybrid")["writes_per_post"]),
        "p99": pytest.approx(study.row("hybrid")["read_p99"] * 1e3),
        "label": "threshold 100",
    }
    assert ex.current_point(None, 5000).iloc[0].to_dict() == {"writes": 0.0, "p99": 0.0, "label": "threshold 5,000"}


def test_summary_in_units(study):
    table = ex.summary_in_units(study.summary).set_index("strategy")
    assert list(table.columns) == list(ex.SUMMARY_HEADINGS)[1:]
    assert list(table["threshold"]) == ["none", "all", "≥ 100"]
    hybrid = study.row("hybrid")
    assert table.loc["hybrid", "read_p99"] == round(hybrid["read_p99"] * 1e3, 3)
    assert table.loc["hybrid", "cache_bytes"] == round(hybrid["cache_bytes"] / 1e6, 3)
    assert list(ex.summary_in_units(pd.DataFrame(columns=SUMMARY_COLUMNS)).columns) == list(ex.SUMMARY_HEADINGS)


def test_page_with_uses_the_given_seams_only():
    g = ex.graph(2_000, 10.0, 5.0, 1)
    reference = ex.page_with(g, 100, 10, 1, {}, None)
    assert reference.attrs["yours"] == [] and reference.equals(ex.reader_page(g, 100, timeline_cap=10, seed=1))
    calls = []

    def counting_merge(sources, *, limit, cursor=None):
        calls.append(limit)
        return merge(sources, limit=limit, cursor=cursor)

    mine = ex.page_with(g, 100, 10, 1, {"merge": counting_merge}, None)
    assert calls == [ex.PAGE] and mine.attrs["yours"] == ["merge"] and mine.equals(reference)
