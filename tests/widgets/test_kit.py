"""Shared dashboard pieces: grouped bars keep each group's colour whatever order the rows come in."""
from __future__ import annotations

import holoviews as hv
import pandas as pd
import pytest

from widgets.kit import bar_plot

hv.extension("bokeh")


@pytest.mark.parametrize("order", [["metric", "config"], ["config", "metric"]])
def test_grouped_bars_are_coloured_by_their_own_group(order):
    rows = [{"metric": m, "config": c, "v": float(i)} for i, (m, c) in enumerate((m, c) for m in "abc" for c in ("x1", "x2"))]
    frame = pd.DataFrame(rows).sort_values(order).reset_index(drop=True)
    plot = hv.render(bar_plot(frame, "metric", "v", by="config", title="t", xlabel="metric", ylabel="value"))
    bars = next(r for r in plot.renderers if type(getattr(r, "glyph", None)).__name__ == "VBar")
    data = bars.data_source.data
    assert list(data["color"]) == list(data["config"])
    values = {(m, c): v for m, c, v in zip(data["metric"], data["config"], data["v"])}
    assert values == {(r["metric"], r["config"]): r["v"] for r in rows}
