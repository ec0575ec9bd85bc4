"""Lab 03 dashboard without a browser: it builds, follows its settings, sweeps thresholds, shows a mixed feed."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import pytest

from lab_core.feed.policy import Page
from widgets import feed
from widgets.feed import FeedDashboard, app, dashboard


@pytest.fixture(scope="module")
def default() -> FeedDashboard:
    return dashboard()


def test_builds_and_renders(default):
    assert default.errors == {}
    assert list(default.summary()["strategy"]) == ["push", "pull", "hybrid"]
    for view in (
        default.writes_plot,
        default.visibility_plot,
        default.read_plot,
        default.memory_plot,
        default.tradeoff_plot,
    ):
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


def test_defaults_show_a_healthy_system_that_the_visitor_can_break(default):
    cut, ratio = default.badges()
    assert cut >= feed.WRITE_CUT_TARGET and ratio <= feed.READ_P99_RATIO_TARGET
    assert "missed" not in "".join(b.object for b in default.headline().objects[1].objects)
    dash = dashboard(celebrity_boost=1.0, mean_follows=20.0)  # celebrities less dominant: hybrid misses
    cut, ratio = dash.badges()
    assert cut < feed.WRITE_CUT_TARGET or ratio > feed.READ_P99_RATIO_TARGET


def test_the_references_plugged_in_as_yours_match_and_raise_nothing():
    dash = dashboard(**{name: p.reference for name, p in feed.Dashboard.plugins.items()})
    assert dash.errors == {}
    assert set(dash.plugins) == {"fanout_targets", "merge", "add_to_timeline", "features"}
    s = dash.summary().set_index("strategy")
    assert list(s.index) == ["push", "pull", "hybrid", "yours"]
    assert s.loc["yours", "fanout_writes"] == s.loc["hybrid", "fanout_writes"]
    assert "the same writes as the reference ✓" in dash.headline().objects[0].object
    assert dash.user_feed("yours").equals(dash.user_feed())
    assert "the same page and order as the reference ✓" in dash.feed_view().objects[0].object
    assert len(dash.writes_plot().get(0).dimension_values("writes_per_post")) == 4
    pn.panel(dash).get_root()


def test_a_wrong_fanout_policy_shows_its_writes_beside_the_reference():
    def push_everyone(count, followers, active, threshold):
        return list(followers)

    dash = dashboard(fanout_targets=push_everyone)
    s = dash.summary().set_index("strategy")
    assert s.loc["yours", "fanout_writes"] == s.loc["push", "fanout_writes"] > s.loc["hybrid", "fanout_writes"]
    assert "different writes from the reference ✗" in dash.headline().objects[0].object
    assert "yours" not in dash.run.pages  # no page plug-in given: the reference page only


def test_wrong_page_functions_show_a_different_page():
    def never_trimmed(redis, user, post_id, created_at, length):
        redis.zadd(f"feed:tl:{user}", {f"{post_id:019d}": created_at})

    dash = dashboard(add_to_timeline=never_trimmed, timeline_cap=20, mean_follows=20.0, celebrity_boost=1.0)
    assert dash.user_feed("yours").attrs["timeline_entries"] > 20 == dash.user_feed().attrs["timeline_entries"]

    def newest_last(sources, *, limit, cursor=None):
        items = sorted({i.post_id: i for s in sources for i in s}.values(), key=lambda i: i.order)
        return Page(items[:limit], None)

    dash = dashboard(merge=newest_last)
    assert not dash.user_feed("yours").equals(dash.user_feed())
    assert "a different page or order ✗" in dash.feed_view().objects[0].object


def test_a_student_exception_is_shown_and_the_reference_still_drawn():
    def broken(*args, **kwargs):
        raise RuntimeError("my bug")

    dash = dashboard(fanout_targets=broken, features=broken)
    assert set(dash.errors) == {"your fanout_targets", "your features"}
    assert all("my bug" in text and "broken" in text for text in dash.errors.values())
    assert list(dash.summary()["strategy"]) == ["push", "pull", "hybrid"] and len(dash.user_feed()) > 0
    assert dash.error_view().visible
    dash = dashboard(merge=feed.merge, features=broken)  # the page still shows your merge, reference-ranked
    assert set(dash.errors) == {"your features"} and dash.user_feed("yours").attrs["yours"] == ["merge"]
    assert "the same page and order as the reference ✓" in dash.feed_view().objects[0].object
    with pytest.raises(TypeError, match="fan-out policy"):
        dashboard(fanout_targets=42)


def test_summary_table_is_in_the_plots_units(default):
    table = default.summary_table().value
    s = default.summary()
    assert table["read_p99"].tolist() == pytest.approx((s["read_p99"] * 1e3).round(3).tolist())
    assert table["cache_bytes"].tolist() == pytest.approx((s["cache_bytes"] / 1e6).round(3).tolist())
    titles = default.summary_table().titles
    assert all("(ms)" in titles[c] for c in ("visibility_p50", "visibility_p99", "read_p50", "read_p99"))
    assert titles["cache_bytes"] == "cache (MB)"
