"""Lab 03 dashboard without a browser: it builds, follows its settings, sweeps thresholds, shows a mixed feed."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import pytest

from widgets import feed
from widgets.feed import FeedDashboard, app, dashboard


@pytest.fixture(scope="module")
def default() -> FeedDashboard:
    return dashboard()


def test_builds_and_renders(default):
    assert default.errors == {}
    assert list(default.summary()["strategy"]) == ["push", "pull", "hybrid"]
    for view in (default.writes_plot, default.visibility_plot, default.read_plot, default.memory_plot,
                 default.tradeoff_plot):
        hv.render(view())
    pn.panel(default).get_root()


def test_app_is_a_servable_template():
    assert isinstance(app(), pn.template.FastListTemplate)


def test_recompute_time_is_measured(record_property, default):
    record_property("recompute_s_defaults", default.run.seconds)
    dash = dashboard()
    dash.threshold = 1000
    record_property("recompute_s_threshold_only", dash.run.seconds)
    assert default.run.seconds > 0 and dash.run.seconds > 0


def test_the_numbers_follow_the_strategies(default):
    s = default.summary().set_index("strategy")
    assert s.loc["pull", "writes_per_post"] == 0
    assert 0 < s.loc["hybrid", "writes_per_post"] < s.loc["push", "writes_per_post"]
    assert s.loc["push", "read_p99"] < s.loc["pull", "read_p99"]
    assert s.loc["push", "cache_bytes"] > s.loc["hybrid", "cache_bytes"]
    cut, ratio = default.badges()
    assert cut == pytest.approx(100 * (1 - s.loc["hybrid", "writes_per_post"] / s.loc["push", "writes_per_post"]))
    assert ratio == pytest.approx(s.loc["hybrid", "read_p99"] / s.loc["push", "read_p99"])


def test_changing_the_threshold_changes_the_plotted_data():
    dash = dashboard(threshold=20)
    before = dash.summary().set_index("strategy")
    bars_before = list(dash.writes_plot().get(0).dimension_values("writes_per_post"))
    dash.threshold = 1000
    after = dash.summary().set_index("strategy")
    assert after.loc["hybrid", "writes_per_post"] > before.loc["hybrid", "writes_per_post"]
    assert after.loc["hybrid", "read_p99"] < before.loc["hybrid", "read_p99"]
    # push and pull do not depend on the threshold, and were not recomputed
    assert after.loc["push", "writes_per_post"] == before.loc["push", "writes_per_post"]
    bars_after = list(dash.writes_plot().get(0).dimension_values("writes_per_post"))
    assert bars_after != bars_before and bars_after == list(after["writes_per_post"])


def test_changing_the_graph_changes_the_data():
    dash = dashboard()
    before = dash.summary()
    dash.celebrity_boost = 20.0
    after = dash.summary()
    assert after.loc[0, "writes_per_post"] != before.loc[0, "writes_per_post"]
    assert not after.equals(before)


def test_threshold_sweep_writes_grow_with_the_threshold(default):
    sweep = default.sweep()
    assert list(sweep["strategy"]) == ["pull", *["hybrid"] * len(feed.SWEEP), "push"]
    writes = sweep["writes_per_post"].to_numpy()
    assert np.all(np.diff(writes) >= 0) and writes[-1] > writes[0]
    assert writes[0] == 0
    # ... and the read p99 pays for it the other way
    assert sweep["read_p99"].iloc[0] > sweep["read_p99"].iloc[-1]


def test_tradeoff_plot_marks_the_current_threshold(default):
    plot = default.tradeoff_plot()
    marker = [el for el in plot if isinstance(el, hv.Scatter)][-1]
    hybrid = default.summary().set_index("strategy").loc["hybrid"]
    assert marker.dimension_values(0)[0] == pytest.approx(hybrid["writes_per_post"])
    assert marker.dimension_values(1)[0] == pytest.approx(hybrid["read_p99"] * 1e3)


def test_user_feed_has_push_and_pull_items_and_a_ranked_order(default):
    table = default.user_feed()
    viewer = table.attrs["viewer"]
    g = default.run.graph
    counts = g.follower_counts()
    assert any(counts[a] >= default.threshold for a in g.followees(viewer))  # follows a celebrity
    assert set(table["source"]) == {"push", "pull"}
    assert all((counts[a] >= default.threshold) == (s == "pull") for a, s in zip(table["author"], table["source"]))
    n = len(table)
    assert sorted(table["newest_first"]) == list(range(1, n + 1)) == sorted(table["ranked"])
    assert (table["moved"] == table["newest_first"] - table["ranked"]).all()
    assert list(table.sort_values("ranked")["score"]) == sorted(table["score"], reverse=True)
    assert (np.diff(table["age_min"].to_numpy()) >= 0).all()  # newest first before ranking


def test_too_much_traffic_is_refused_with_a_message():
    dash = dashboard(duration=10.0, read_ratio=200.0)
    assert "lower the duration" in dash.errors["simulation"]
    assert dash.summary().empty
    for view in (dash.writes_plot, dash.visibility_plot, dash.read_plot, dash.memory_plot, dash.tradeoff_plot):
        hv.render(view())
    alert = dash.error_view()
    assert alert.visible and "lower the duration" in alert.object
    pn.panel(dash).get_root()
    dash.duration = 1.0
    dash.read_ratio = 50.0
    assert dash.errors == {} and len(dash.summary()) == 3


def test_settings_are_bounded():
    with pytest.raises(ValueError):
        dashboard(n_users=10)
    with pytest.raises(ValueError):
        dashboard(threshold=0)
