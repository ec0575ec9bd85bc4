"""Shared dashboard pieces: grouped bars keep each group's colour whatever order the rows come in; the
LabDashboard base takes plug-ins, publishes only the newest recompute, shows errors, serves an offline page."""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import panel as pn
import pytest

from widgets import kit
from widgets.kit import bar_plot

hv.extension("bokeh")


@pytest.mark.parametrize("order", [["metric", "config"], ["config", "metric"]])
def test_grouped_bars_are_coloured_by_their_own_group(order):
    rows = [
        {"metric": m, "config": c, "v": float(i)}
        for i, (m, c) in enumerate((m, c) for m in "abc" for c in ("x1", "x2"))
    ]
    frame = pd.DataFrame(rows).sort_values(order).reset_index(drop=True)
    plot = hv.render(bar_plot(frame, "metric", "v", by="config", title="t", xlabel="metric", ylabel="value"))
    bars = next(r for r in plot.renderers if type(getattr(r, "glyph", None)).__name__ == "VBar")
    data = bars.data_source.data
    assert list(data["color"]) == list(data["config"])
    values = {(m, c): v for m, c, v in zip(data["metric"], data["config"], data["v"])}
    assert values == {(r["metric"], r["config"]): r["v"] for r in rows}


# ----------------------------------------------------------------------------- LabDashboard


def _reference_square(x: int) -> int:
    return x * x


class _Demo(kit.LabDashboard):
    lab = "ratelimit"
    plugins = {"squarer": kit.Plugin("squaring function", "Callable[[int], int]", _reference_square)}

    def controls(self) -> pn.viewable.Viewable:
        return pn.pane.Markdown("controls")

    def main(self) -> pn.viewable.Viewable:
        return pn.Column(self.error_view, pn.pane.Markdown("plots"))


def test_plugins_become_yours_and_a_non_callable_is_refused_by_name():
    assert _Demo(squarer=_reference_square).yours == {"squarer": _reference_square}
    assert _Demo().yours == {} and _Demo(squarer=None).yours == {}
    with pytest.raises(TypeError, match=r"squarer must be a squaring function \(Callable\[\[int\], int\]\).*got int"):
        _Demo(squarer=3)


def test_only_the_newest_recompute_may_publish():
    dash = _Demo()
    first = dash.begin()
    second = dash.begin()
    assert dash.is_latest(second) and not dash.is_latest(first)


def test_attempt_returns_the_value_or_records_the_students_error():
    errors: dict[str, str] = {}
    assert kit.LabDashboard.attempt(errors, "yours", _reference_square, 4) == 16
    assert errors == {}

    def broken(x: int) -> int:
        return x // 0

    assert kit.LabDashboard.attempt(errors, "yours", broken, 4) is None
    assert errors["yours"].startswith("ZeroDivisionError") and "in broken" in errors["yours"]
    dash = _Demo()
    assert not dash.error_view().visible
    dash.errors = errors
    alert = dash.error_view()
    assert alert.visible and "ZeroDivisionError" in alert.object


def test_the_page_is_titled_from_the_catalogue_and_asks_for_no_web_font():
    page = _Demo.page()
    assert page.title == "Lab 01 · Rate limiter"
    resources = kit.OfflineFast().resolve_resources(cdn=False)
    urls = [url for kind in ("css", "js", "js_modules") for url in resources[kind].values()]
    assert urls and not [u for u in urls if "fonts.googleapis" in u or u.startswith(("http:", "https:", "//"))], urls
    assert any(u.endswith("fast/js/fast_design.js") for u in urls), urls


def test_the_reporter_moves_a_bar_through_a_larger_total_and_hides_it_when_done():
    bar = kit.progress_bar()
    report = kit.reporter(bar)
    report(0, 1, "start")
    report(5, 74, "embedding")  # past the old max of 1
    assert (bar.value, bar.max, bar.visible) == (5, 74, True)
    report(74, 74, "done")
    assert not bar.visible
