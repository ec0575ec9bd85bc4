"""Shared dashboard pieces: the :class:`LabDashboard` base, bounded controls, SLA badges,
percentile, time-series and bar plots, busy indicators.

Every plot takes a tidy DataFrame (as ``lab_core`` returns them), labels both axes with units,
has a title and stretches to the width of its container.
"""

from __future__ import annotations

import html
import itertools
import math
import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io.resources import CDN_DIST

from lab_core.labs import get_lab
from lab_core.sim import PERCENTILES, Progress

# Inline, as the notebooks' set-up cells load them: a notebook that imports a dashboard must not
# fetch Bokeh and Panel from the CDN again (offline classrooms). Grading (SYSLAB_FAST) skips the bundle.
_INLINE = os.environ.get("SYSLAB_FAST") != "1"
hv.extension("bokeh", logo=False, inline=_INLINE)
pn.extension("tabulator", inline=_INLINE)

T = TypeVar("T")

PLOT_HEIGHT = 320
# Category10 without its red, which the badges and limit lines reserve for "over target".
PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
OVER = "#d62728"
GOOD = "#2ca02c"
LATENCY_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6}

_BASE_OPTS: dict[str, Any] = {
    "responsive": True,
    # Redraw axes from each frame's data: live dashboards update plots in place.
    "framewise": True,
    "height": PLOT_HEIGHT,
    "show_grid": True,
    "toolbar": "right",
    "default_tools": ["pan", "wheel_zoom", "box_zoom", "save", "reset"],
}


def colors_for(keys: Iterable[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stable colour per key: ``fixed`` ones first, the rest from the palette in order."""
    out = dict(fixed or {})
    free = [c for c in PALETTE if c not in out.values()] or list(PALETTE)
    new = [k for k in dict.fromkeys(keys) if k not in out]
    out.update({k: free[i % len(free)] for i, k in enumerate(new)})
    return out


def controls(
    obj: param.Parameterized,
    parameters: Sequence[str],
    *,
    widgets: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> pn.Column:
    """Widgets for ``parameters`` of ``obj``; numeric parameters must have bounds so no slider runs off."""
    for name in parameters:
        p = obj.param[name]
        if isinstance(p, param.Number) and (p.bounds is None or None in p.bounds) and name not in (widgets or {}):
            raise ValueError(f"parameter {name!r} of {type(obj).__name__} needs bounds (or an explicit widget)")
    pane = pn.Param(
        obj,
        parameters=list(parameters),
        widgets=dict(widgets or {}),
        show_name=False,
        sizing_mode="stretch_width",
        default_layout=pn.Column,
    )
    header = [pn.pane.Markdown(f"### {title}", margin=(0, 10))] if title else []
    return pn.Column(*header, pane, sizing_mode="stretch_width")


def sla_badge(
    label: str,
    value: float,
    target: float,
    *,
    unit: str = "",
    higher_is_better: bool = False,
    digits: int = 3,
) -> pn.pane.HTML:
    """A green (target met) or red (missed) pill reading ``label: value unit (target <= t)``."""
    met = value >= target if higher_is_better else value <= target
    sign = "≥" if higher_is_better else "≤"
    number = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"
    suffix = f" {unit}" if unit else ""
    text = f"{'✓' if met else '✗'} {label}: {number}{suffix} (target {sign} {target:.{digits}g}{suffix})"
    style = (
        f"background:{GOOD if met else OVER};color:white;border-radius:1em;padding:0.2em 0.8em;"
        "font-size:0.9em;white-space:nowrap"
    )
    return pn.pane.HTML(
        f'<span class="sla-badge {"met" if met else "missed"}" style="{style}">{html.escape(text)}</span>',
        margin=(4, 6),
    )


def _group_labels(frame: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    if not by:
        return pd.Series(["all"] * len(frame), index=frame.index)
    return frame[list(by)].astype(str).agg(" / ".join, axis=1)


def latency_plot(
    table: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    unit: str = "ms",
    title: str = "Latency percentiles",
    logy: bool = False,
    colors: Mapping[str, str] | None = None,
) -> hv.NdOverlay:
    """One line per group through p50, p90, p99, p99.9 of a ``Recorder.latency_table`` (seconds in, ``unit`` out)."""
    if unit not in LATENCY_UNITS:
        raise ValueError(f"unit must be one of {', '.join(LATENCY_UNITS)}, got {unit!r}")
    stats = [f"p{q:g}" for q in PERCENTILES]
    groups = (
        [by]
        if isinstance(by, str)
        else list(by)
        if by is not None
        else [c for c in table.columns if c not in ("count", "mean", *stats)]
    )
    ylabel = f"latency ({unit})"
    long = table.assign(group=_group_labels(table, groups)).melt(
        id_vars="group", value_vars=stats, var_name="percentile", value_name="latency"
    )
    long["latency"] = long["latency"] * LATENCY_UNITS[unit]
    palette = colors_for(long["group"].unique(), colors)
    curves = {
        g: hv.Curve(part, "percentile", ("latency", ylabel)).opts(color=palette[g])
        * hv.Scatter(part, "percentile", ("latency", ylabel)).opts(color=palette[g], size=7)
        for g, part in long.groupby("group", sort=False)
    }
    return hv.NdOverlay(curves, kdims=[" / ".join(groups) or "group"]).opts(
        title=title, xlabel="percentile", ylabel=ylabel, logy=logy, legend_position="top_left", **_BASE_OPTS
    )


def timeseries_plot(
    frame: pd.DataFrame,
    y: str,
    *,
    x: str = "t",
    by: str | None = None,
    title: str,
    ylabel: str,
    xlabel: str = "time (s)",
    step: bool = False,
    colors: Mapping[str, str] | None = None,
    legend: bool = True,
    **style: Any,
) -> hv.NdOverlay:
    """``y`` against ``x``, one line per value of ``by``; ``step`` holds each level until the next sample."""
    parts = list(frame.groupby(by, sort=False)) if by and not frame.empty else [("", frame)]
    palette = colors_for([str(k) for k, _ in parts], colors)
    interpolation = "steps-post" if step else "linear"
    curves = {
        str(key): hv.Curve(part, (x, xlabel), (y, ylabel)).opts(
            interpolation=interpolation, color=palette[str(key)], show_legend=legend, **style
        )
        for key, part in parts
    }
    return hv.NdOverlay(curves, kdims=[by or "series"]).opts(
        title=title, xlabel=xlabel, ylabel=ylabel, legend_position="top_left", **_BASE_OPTS
    )


def bar_plot(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    by: str | None = None,
    title: str,
    xlabel: str,
    ylabel: str,
    hover: Sequence[str] = (),
    colors: Mapping[str, str] | None = None,
    legend: bool = True,
) -> hv.Bars:
    """Bars of ``y`` per ``x``, side by side and coloured per ``by``, ``hover`` columns in the tooltip."""
    colour_key = by or x
    palette = colors_for(frame[colour_key].astype(str).unique(), colors)
    # Dimension values fix the bar order to the frame's; HoloViews would otherwise choose its own.
    kdims = [hv.Dimension(c, label=lbl, values=list(frame[c].unique())) for c, lbl in ((x, xlabel), (by, by)) if c]
    if by:
        # HoloViews groups the rows by ``by`` before drawing but takes the colour column in the
        # frame's own order: rows ordered by ``x`` first got other groups' colours. Group them first.
        rank = {c: frame[c].map({v: i for i, v in enumerate(frame[c].unique())}) for c in (by, x)}
        frame = frame.iloc[np.lexsort((rank[x].to_numpy(), rank[by].to_numpy()))]
    bars = hv.Bars(frame, kdims, [(y, ylabel), *hover])
    return bars.opts(
        hv.opts.Bars(
            # A colour mapper, not dim().categorize(): HoloViews reorders grouped bars after applying the latter.
            color=colour_key,
            cmap=palette,
            multi_level=False,
            show_legend=legend and by is not None,
            legend_position="top_left",
            tools=["hover"],
            title=title,
            xlabel=xlabel,
            ylabel=ylabel,
            xrotation=0 if frame[x].astype(str).str.len().max() < 12 or frame.empty else 20,
            **_BASE_OPTS,
        )
    )


def target_line(value: float, label: str, *, at: Any) -> hv.Overlay:
    """A dashed red horizontal line at ``value``, labelled ``label`` above the x value ``at``."""
    return hv.HLine(value).opts(color=OVER, line_dash="dashed", line_width=2) * hv.Text(
        at, value, label, halign="center", valign="bottom"
    ).opts(text_color=OVER, text_font_size="10pt", text_font_style="bold")


def color_key(colors: Mapping[str, str], keys: Iterable[str] | None = None) -> pn.pane.HTML:
    """One legend for several plots: a coloured swatch and name per key."""
    items = "".join(
        f'<span style="margin-right:1.2em;white-space:nowrap"><span style="display:inline-block;width:1.6em;'
        f'height:0.35em;vertical-align:middle;background:{colors[k]};margin-right:0.4em"></span>{html.escape(k)}</span>'
        for k in (colors if keys is None else keys)
    )
    return pn.pane.HTML(f'<div style="line-height:1.8">{items}</div>', sizing_mode="stretch_width", margin=(0, 10))


def describe(exc: BaseException) -> str:
    """``Type: message (file, line N, in func)`` of the innermost frame, so a student can find their bug.

    simpy re-raises a copy of a process's exception; the original, with the student's frame, is its cause.
    """
    origin = exc.__cause__ if type(exc.__cause__) is type(exc) else exc
    frames = traceback.extract_tb(origin.__traceback__)
    if not frames:
        return f"{type(exc).__name__}: {exc}"
    last = frames[-1]
    return f"{type(exc).__name__}: {exc} ({Path(last.filename).name}, line {last.lineno}, in {last.name})"


@contextmanager
def loading(*targets: pn.viewable.Viewable) -> Iterator[None]:
    """Show Panel's loading spinner over ``targets`` while the block runs, even if it raises."""
    for target in targets:
        target.loading = True
    try:
        yield
    finally:
        for target in targets:
            target.loading = False


def progress_bar() -> pn.indicators.Progress:
    """A hidden progress bar for :func:`track` to show while a long recompute runs."""
    return pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width", bar_color="info")


def reporter(bar: pn.indicators.Progress) -> Progress:
    """A ``progress=`` callback for ``lab_core`` experiments that moves ``bar`` (hidden again when done)."""

    def report(done: int, total: int, label: str) -> None:
        # max first: Progress refuses a value above the max it has at that moment.
        bar.max = max(1, total)
        bar.param.update(value=min(done, total), visible=done < total)

    return report


def track(items: Sequence[T], bar: pn.indicators.Progress) -> Iterator[T]:
    """Yield ``items`` while ``bar`` shows how many are done; the bar hides again at the end."""
    bar.param.update(value=0, max=max(1, len(items)), visible=True)
    try:
        for done, item in enumerate(items):
            yield item
            bar.value = done + 1
    finally:
        bar.visible = False


class OfflineFast(pn.theme.Fast):
    """Panel's Fast design without its Google web font: pages are served offline (Binder, classrooms,
    interview laptops), where that request hangs or fails. Text falls back to the system font."""

    # Panel resolves a design's relative resources under its class name; point the one relative
    # file at Fast's own bundled copy so the subclass serves it from the installed package too.
    _resources = {
        **{key: value for key, value in pn.theme.Fast._resources.items() if key != "font"},
        "js_modules": {
            name: f"{CDN_DIST}bundled/fast/{path}" if not path.startswith(("http", "/")) else path
            for name, path in pn.theme.Fast._resources["js_modules"].items()
        },
    }


SYSTEM_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'


@dataclass(frozen=True)
class Plugin:
    """An exercise whose class or function a student can plug into a dashboard, shown as "yours".

    ``seam`` names the protocol it must follow (for the error message); ``reference`` is the lab's
    own implementation of it, which the lab-contract test plugs in to check the dashboard takes it.
    """

    label: str
    seam: str
    reference: Callable[..., object]


class LabDashboard(pn.viewable.Viewer):
    """The shape every lab's dashboard shares: the student's plug-ins, newest-wins recomputes, an error
    pane, a progress bar, and the served page titled from the catalogue.

    Subclasses set ``lab`` (the catalogue name) and ``plugins`` (keyword name -> :class:`Plugin`),
    build their plots in ``__init__`` after ``super().__init__``, and implement ``controls`` and ``main``.
    """

    lab: ClassVar[str]
    plugins: ClassVar[Mapping[str, Plugin]] = {}

    errors = param.Dict(default={}, precedence=-1, doc="what failed in the latest recompute: name -> message")

    def __init__(self, **params: Any) -> None:
        given = {name: params.pop(name) for name in list(params) if name in self.plugins}
        for name, value in given.items():
            if value is not None and not callable(value):
                plugin = self.plugins[name]
                raise TypeError(
                    f"{name} must be a {plugin.label} ({plugin.seam}): a class or function, got {type(value).__name__}"
                )
        self.yours: dict[str, Callable[..., object]] = {k: v for k, v in given.items() if v is not None}
        # Slider drags can start overlapping recomputes on a threaded server; only the newest one publishes.
        self._generations = itertools.count()
        self._latest = -1
        self._progress = progress_bar()
        super().__init__(**params)

    def begin(self) -> int:
        """Start a recompute; pass the token to :meth:`is_latest` before publishing its result."""
        self._latest = next(self._generations)
        return self._latest

    def is_latest(self, token: int) -> bool:
        """Whether no recompute started after the one holding ``token`` (older ones drop their result)."""
        return token == self._latest

    @staticmethod
    def attempt(errors: dict[str, str], name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``, or None with the exception described under ``errors[name]``: a
        student's class may raise anything, and the page shows it instead of breaking."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any error of the student's code is shown, not raised
            errors[name] = describe(exc)
            return None

    @param.depends("errors")
    def error_view(self) -> pn.viewable.Viewable:
        """What went wrong in the latest recompute, per part (the student's exceptions land here)."""
        lines = "\n".join(f"- **{name}**: `{text}`" for name, text in self.errors.items())
        return pn.pane.Alert(
            f"Could not compute:\n\n{lines}",
            alert_type="danger",
            visible=bool(self.errors),
            sizing_mode="stretch_width",
        )

    def controls(self) -> pn.viewable.Viewable:
        """The sidebar: the parameters a practitioner would tune."""
        raise NotImplementedError

    def main(self) -> pn.viewable.Viewable:
        """The plots, headline and tables."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever the dashboard runs in the background (a served session ended)."""

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")

    @classmethod
    def page(cls, **params: Any) -> pn.template.FastListTemplate:
        """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
        dash = cls(**params)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: dash.close())
        return pn.template.FastListTemplate(
            title=get_lab(cls.lab).page_title,
            sidebar=[dash.controls()],
            main=[dash.main()],
            sidebar_width=340,
            accent="#1f77b4",
            design=OfflineFast,
            font=SYSTEM_FONT,
        )
