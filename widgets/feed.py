"""News feed fan-out: push, pull and hybrid on a power-law social graph, and one reader's ranked page.

Lab 03's dashboard: ``dashboard(**params)`` in a notebook, ``app()`` for ``syslab serve``. It is
parameters and plots over ``lab_core.feed.experiments``: a change of graph or traffic reruns
``fanout_study`` (push, pull, hybrid and a sweep of thresholds); moving only the threshold reruns
hybrid alone. The student's functions from the notebook plug in as keywords
(``dashboard(fanout_targets=..., merge=..., add_to_timeline=..., features=...)``) and are shown
as "yours" beside the reference: a hybrid run deciding with your fan-out, and the reader's page
written, merged and ranked with your functions.
"""

from __future__ import annotations

import functools
import time

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.feed import experiments as ex
from lab_core.feed.graph import SocialGraph
from lab_core.feed.policy import fanout_targets, merge
from lab_core.feed.ranker import Ranker, features
from lab_core.feed.timeline import add_to_timeline
from widgets import kit

COLORS: dict[str, str] = {"push": "#1f77b4", "pull": "#ff7f0e", "hybrid": "#2ca02c", "yours": "#9467bd"}
#: Threshold slider stops: a power-law graph needs log steps, not linear ones.
THRESHOLDS: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SWEEP = ex.SWEEP
#: The issue's targets.
WRITE_CUT_TARGET = 90.0  # hybrid cuts fan-out writes by at least this % vs push
READ_P99_RATIO_TARGET = 2.0  # hybrid read p99 at most this multiple of push's
PAGE_PLUGINS = ("add_to_timeline", "merge", "features")  # the seams the reader's page goes through
# The parameters whose change reruns the study and the pages.
SETTINGS = ("threshold", "n_users", "mean_follows", "celebrity_boost", "read_ratio", "timeline_cap", "duration", "seed")
#: Tables fit the page's width and wrap their headers (units included) instead of cutting them off.
TABLE = {
    "disabled": True,
    "show_index": False,
    "layout": "fit_columns",
    "sizing_mode": "stretch_width",
    "configuration": {"columnDefaults": {"headerWordWrap": True}},
}


def _with_text(text: str, body: pn.viewable.Viewable) -> pn.Column:
    """A Markdown paragraph above ``body``, both as wide as the page."""
    return pn.Column(pn.pane.Markdown(text, sizing_mode="stretch_width"), body, sizing_mode="stretch_width")


class FeedDashboard(kit.LabDashboard):
    """Fan-out on write vs on read: writes per post, visibility delay, read latency, cache memory, a reader's page."""

    lab = "feed"
    plugins = {
        "fanout_targets": kit.Plugin("fan-out policy", "lab_core.feed.protocol.FanoutPolicy", fanout_targets),
        "merge": kit.Plugin("feed merge", "lab_core.feed.protocol.Merge", merge),
        "add_to_timeline": kit.Plugin("timeline write", "lab_core.feed.protocol.TimelineWrite", add_to_timeline),
        "features": kit.Plugin("ranker features", "lab_core.feed.protocol.Features", features),
    }

    threshold = param.Integer(100, bounds=(1, 10_000), label="Celebrity threshold (followers)")
    n_users = param.Integer(10_000, bounds=(1_000, 50_000), step=1_000, label="Graph size (users)")
    # Defaults: a celebrity-heavy graph on which hybrid at 100 meets both targets; the visitor breaks it.
    mean_follows = param.Number(10.0, bounds=(2.0, 100.0), step=1.0, label="Mean follows per user")
    celebrity_boost = param.Number(
        5.0, bounds=(0.5, 50.0), step=0.5, label="Celebrity boost (× weight of the top 0.1%)"
    )
    read_ratio = param.Number(50.0, bounds=(1.0, 200.0), step=1.0, label="Read:write ratio")
    timeline_cap = param.Integer(800, bounds=(20, 5_000), step=20, label="Timeline length (entries)")
    duration = param.Number(1.0, bounds=(0.2, 10.0), step=0.2, label="Duration (simulated s)")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    run = param.ClassSelector(class_=ex.StudyRun, default=ex.StudyRun(), precedence=-1, doc="the latest recompute")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._base_key: tuple | None = None
        self._base: pd.DataFrame | None = None
        self._your_ranker: Ranker | None = None
        # linked_axes off: the strategy axes of plain and grouped bars must not be merged into one.
        panes = [
            pn.pane.HoloViews(
                hv.DynamicMap(view),
                linked_axes=False,
                sizing_mode="stretch_width",
                min_width=420,
                styles={"flex": "1 1 45%"},
            )
            for view in (self.writes_plot, self.visibility_plot, self.read_plot, self.memory_plot, self.tradeoff_plot)
        ]
        self._plots = pn.FlexBox(*panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self.recompute()

    # ---- computing -------------------------------------------------------------------------

    def _kwargs(self) -> dict:
        return {
            "duration": float(self.duration),
            "write_rate": ex.WRITE_RATE,
            "read_ratio": float(self.read_ratio),
            "timeline_cap": int(self.timeline_cap),
            "seed": int(self.seed),
        }

    def _study(self, g: SocialGraph) -> ex.FanoutStudy:
        kwargs, t = self._kwargs(), int(self.threshold)
        key = (int(self.n_users), float(self.mean_follows), float(self.celebrity_boost), *kwargs.values())
        base = self._base if key == self._base_key else None
        runs = (1 if base is not None else 2 + len(set(SWEEP) | {t})) + ("fanout_targets" in self.yours)
        ex.check_size(float(self.duration), float(self.read_ratio), runs)
        with kit.loading(self._plots):
            study = ex.fanout_study(g, t, base=base, progress=kit.reporter(self._progress), **kwargs)
        self._base_key, self._base = key, study.base
        return study

    def _pages(self, g: SocialGraph, errors: dict[str, str]) -> dict[str, pd.DataFrame]:
        """The reference page and, when the student gave any of its seams, theirs (a failing ranker
        training is reported under ``features`` and that page ranked by the reference instead)."""
        given = {k: self.yours[k] for k in PAGE_PLUGINS if k in self.yours}
        if "features" in given and self._your_ranker is None:
            self._your_ranker = self.attempt(errors, "your features", ex.trained_ranker, given["features"])
        if self._your_ranker is None:
            given.pop("features", None)
        page = functools.partial(ex.page_with, g, int(self.threshold), int(self.timeline_cap), int(self.seed))
        pages = {"reference": self.attempt(errors, "reader's page", page, {}, None)}
        if given:
            pages["yours"] = self.attempt(errors, f"your {', '.join(given)}", page, given, self._your_ranker)
        return {side: page for side, page in pages.items() if page is not None}

    def _graph(self) -> SocialGraph:
        return ex.graph(int(self.n_users), float(self.mean_follows), float(self.celebrity_boost), int(self.seed))

    def _yours_run(self, g: SocialGraph) -> pd.DataFrame:
        return ex.yours_run(g, int(self.threshold), self.yours["fanout_targets"], **self._kwargs())

    @param.depends(*SETTINGS, watch=True)
    def recompute(self) -> None:
        """Simulate hybrid at the threshold (push, pull and the sweep unless cached), build the pages."""
        token = self.begin()
        started = time.perf_counter()
        errors: dict[str, str] = {}
        g = self.attempt(errors, "simulation", self._graph)
        study = self.attempt(errors, "simulation", self._study, g) if g is not None else None
        pages: dict[str, pd.DataFrame] = {}
        if study is not None:
            if "fanout_targets" in self.yours:
                mine = self.attempt(errors, "your fanout_targets", self._yours_run, g)
                study = study.with_yours(mine) if mine is not None else study
            pages = self._pages(g, errors)
        if self.is_latest(token):
            self.param.update(errors=errors, run=ex.StudyRun(study, pages, g, time.perf_counter() - started))

    # ---- data behind the plots (tidy frames, also what the tests look at) ------------------

    def summary(self) -> pd.DataFrame:
        """One row per strategy (push, pull, hybrid at the threshold, yours): ``SUMMARY_COLUMNS`` plus ratios."""
        return self.run.table("summary")

    def sweep(self) -> pd.DataFrame:
        """The trade-off curve: pull, hybrid at each ``SWEEP`` threshold, push (same workload for all)."""
        return self.run.table("sweep")

    def user_feed(self, side: str = "reference") -> pd.DataFrame:
        """The reader's page (``experiments.FEED_COLUMNS``) made with the reference or with your functions."""
        return self.run.pages.get(side, pd.DataFrame(columns=ex.FEED_COLUMNS))

    def visibility(self) -> pd.DataFrame:
        """Visibility delay per strategy and percentile (ms): strategy, percentile, delay_ms."""
        return ex.visibility(ex.plotted(self.summary()))

    def latency(self) -> pd.DataFrame:
        """Read latency percentiles per strategy in seconds, as ``kit.latency_plot`` takes them."""
        return ex.read_latency(ex.plotted(self.summary()))

    def badges(self) -> tuple[float, float]:
        """(% fewer fan-out writes of hybrid vs push, hybrid read p99 ÷ push read p99)."""
        return ex.hybrid_gains(self.run.row("hybrid"))

    # ---- views -----------------------------------------------------------------------------

    def _labelled_bars(self, frame: pd.DataFrame, y: str, fmt: str, **kw) -> hv.Element:
        bars = kit.bar_plot(frame, "strategy", y, colors=COLORS, legend=False, **kw)
        labels = hv.Labels(frame.assign(text=[fmt.format(v) for v in frame[y]]), ["strategy", y], "text").opts(
            text_baseline="bottom", text_font_size="10pt", text_color="#333333", yoffset=0
        )
        return (bars * labels).opts(padding=(0.05, (0, 0.12)))

    @param.depends("run")
    def writes_plot(self) -> hv.Element:
        """Fan-out writes per post (write amplification) per strategy, each bar labelled."""
        s = ex.plotted(self.summary())[["strategy", "writes_per_post", "fanout_writes", "posts"]]
        return self._labelled_bars(
            s,
            "writes_per_post",
            "{:,.1f}",
            title="Fan-out writes per post",
            xlabel="strategy",
            ylabel="timeline writes per post (ZADDs)",
            hover=["fanout_writes", "posts"],
        )

    @param.depends("run")
    def visibility_plot(self) -> hv.Element:
        """How long until every follower can see a post: p50 and p99 per strategy (legend beside the bars)."""
        return kit.bar_plot(
            self.visibility(),
            "strategy",
            "delay_ms",
            by="percentile",
            colors={"p50": "#17becf", "p99": "#8c564b"},
            xlabel="strategy",
            title="Visibility delay (post → in every follower's feed)",
            ylabel="visibility delay (ms)",
        ).opts(legend_position="right")

    @param.depends("run")
    def read_plot(self) -> hv.Element:
        """Feed read latency percentiles per strategy (colours as in the key above the plots)."""
        return kit.latency_plot(
            self.latency(), by="strategy", unit="ms", colors=COLORS, title="Feed read latency (queueing + service)"
        ).opts(show_legend=False)

    @param.depends("run")
    def memory_plot(self) -> hv.Element:
        """Timeline cache memory per strategy (MB)."""
        s = ex.plotted(self.summary())
        s = s.assign(cache_mb=s["cache_bytes"].astype(float) / 1e6)[
            ["strategy", "cache_mb", "timeline_entries", "author_list_entries"]
        ]
        return self._labelled_bars(
            s,
            "cache_mb",
            "{:.2f} MB",
            title="Timeline cache memory",
            xlabel="strategy",
            ylabel="cache memory (MB)",
            hover=["timeline_entries", "author_list_entries"],
        )

    @param.depends("run")
    def tradeoff_plot(self) -> hv.Element:
        """Writes per post against read p99 over thresholds, the current threshold marked."""
        sweep = ex.plotted(self.sweep(), ("pull", *(["hybrid"] * len(SWEEP)), "push"))
        xlabel, ylabel = "fan-out writes per post (ZADDs)", "read p99 (ms)"
        pts = ex.tradeoff_points(sweep, int(self.threshold))
        curve = hv.Curve(pts, ("writes", xlabel), ("p99", ylabel)).opts(color="#7f7f7f", line_width=2)
        dots = hv.Scatter(pts, ("writes", xlabel), [("p99", ylabel), "label"]).opts(
            color="#7f7f7f", size=7, tools=["hover"]
        )
        texts = hv.Labels(pts, ["writes", "p99"], "label").opts(
            text_font_size="9pt", text_color="#555555", text_baseline="bottom", text_align="left", xoffset=0
        )
        # The same layers every time (a DynamicMap must return one type): zeros when the run failed.
        cur = ex.current_point(self.run.row("hybrid"), int(self.threshold))
        marker = hv.Scatter(cur, ("writes", xlabel), [("p99", ylabel), "label"]).opts(
            color=kit.OVER, marker="star", size=18, tools=["hover"]
        )
        marker_text = hv.Labels(cur, ["writes", "p99"], "label").opts(
            text_color=kit.OVER, text_font_style="bold", text_font_size="10pt", text_align="left", text_baseline="top"
        )
        return (curve * dots * texts * marker * marker_text).opts(
            title="Threshold trade-off: write cost vs read p99",
            xlabel=xlabel,
            ylabel=ylabel,
            responsive=True,
            height=kit.PLOT_HEIGHT,
            padding=0.1,
            show_grid=True,
            framewise=True,
            toolbar="right",
        )

    @param.depends("run")
    def headline(self) -> pn.viewable.Viewable:
        """The two SLA badges and one sentence with the numbers behind them (and yours, when given)."""
        push, hybrid, mine, g = self.run.row("push"), self.run.row("hybrid"), self.run.row("yours"), self.run.graph
        if push is None or hybrid is None or g is None:
            return pn.pane.Markdown("No results; see the error above.")
        cut, ratio = self.badges()
        celebs = int((g.follower_counts() >= self.run.study.threshold).sum())
        text = (
            f"**Hybrid at threshold {self.run.study.threshold:,}** pulls **{celebs:,}** celebrities: "
            f"**{hybrid['writes_per_post']:,.1f}** writes per post vs **{push['writes_per_post']:,.1f}** "
            f"for push, read p99 **{hybrid['read_p99'] * 1e3:.2f} ms** vs **{push['read_p99'] * 1e3:.2f} ms**. "
            f"{int(hybrid['posts']):,} posts and {int(hybrid['reads']):,} reads on {g.n_users:,} users "
            f"({g.n_edges:,} follows). Recomputed in {self.run.seconds * 1000:.0f} ms."
        )
        if mine is not None:
            same = mine["fanout_writes"] == hybrid["fanout_writes"]
            text += (
                f"\n\n**Yours** (hybrid deciding with your `fanout_targets`): "
                f"{mine['writes_per_post']:,.1f} writes per post, read p99 {mine['read_p99'] * 1e3:.2f} ms: "
                f"{'the same writes as the reference ✓' if same else 'different writes from the reference ✗'}"
            )
        badges = pn.FlexBox(
            kit.sla_badge("hybrid cuts fan-out writes vs push", cut, WRITE_CUT_TARGET, unit="%", higher_is_better=True),
            kit.sla_badge("hybrid read p99 ÷ push read p99", ratio, READ_P99_RATIO_TARGET, unit="×"),
        )
        return _with_text(text, badges)

    @staticmethod
    def _page_table(frame: pd.DataFrame) -> pn.widgets.Tabulator:
        table = pn.widgets.Tabulator(frame, titles=ex.FEED_HEADINGS, text_align={"source": "center"}, **TABLE)
        table.style.map(
            lambda v: f"color:{COLORS['push'] if v == 'push' else COLORS['pull']};font-weight:bold", subset=["source"]
        )
        return table

    @param.depends("run")
    def feed_view(self) -> pn.viewable.Viewable:
        """The reader's page: each item's source and position newest-first and after the ranker; yours beside it."""
        ref, mine = self.run.pages.get("reference"), self.run.pages.get("yours")
        if ref is None:
            return pn.pane.Markdown("No reader's page; see the error above.")
        n_push, n_pull = int((ref["source"] == "push").sum()), int((ref["source"] == "pull").sum())
        intro = (
            f"#### User {ref.attrs['viewer']}'s feed page ({n_push} pushed, {n_pull} pulled)\n"
            f"Pushed items come from the cached timeline ({ref.attrs['timeline_entries']} entries, "
            f"cap {ref.attrs['timeline_cap']}), pulled ones from followed celebrities' post lists at read "
            f"time; the merge orders them newest first, then the learned ranker reorders the page "
            f"(`moved` > 0: up). Posts and engagement are synthetic."
        )
        if mine is None:
            return _with_text(intro, self._page_table(ref))
        same = mine[["post_id", "ranked"]].equals(ref[["post_id", "ranked"]])
        verdict = (
            f"\n\n**Yours** ({', '.join(f'`{k}`' for k in mine.attrs['yours'])}): "
            f"timeline {mine.attrs['timeline_entries']} entries; "
            + ("the same page and order as the reference ✓" if same else "a different page or order ✗")
        )
        tabs = pn.Tabs(
            ("Yours", self._page_table(mine)), ("Reference", self._page_table(ref)), sizing_mode="stretch_width"
        )
        return _with_text(intro + verdict, tabs)

    def summary_table(self) -> pn.widgets.Tabulator:
        """The numbers behind the plots, one row per strategy, in the plots' units (ms, MB)."""
        frame = pn.bind(lambda run: ex.summary_in_units(self.summary()), self.param.run)
        return pn.widgets.Tabulator(frame, titles=ex.SUMMARY_HEADINGS, **TABLE)

    def controls(self) -> pn.Column:
        """The sidebar: fan-out policy, graph, traffic, and which of your functions are plugged in."""
        yours = ", ".join(f"`{k}`" for k in self.plugins if k in self.yours) or "none (pass them to `dashboard`)"
        return pn.Column(
            kit.controls(
                self,
                ["threshold"],
                title="Fan-out policy",
                widgets={"threshold": {"type": pn.widgets.DiscreteSlider, "options": list(THRESHOLDS)}},
            ),
            pn.pane.Markdown(
                "Authors with at least this many followers are pulled at read time; "
                "everyone else is pushed into followers' timelines.",
                margin=(0, 10),
            ),
            kit.controls(self, ["n_users", "mean_follows", "celebrity_boost"], title="Social graph (power law)"),
            kit.controls(
                self,
                ["read_ratio", "timeline_cap", "duration", "seed"],
                title="Traffic",
                widgets={"seed": pn.widgets.IntInput},
            ),
            pn.pane.Markdown(
                f"Posts arrive at {ex.WRITE_RATE:g}/s; service times are the simulator's "
                f"`CostModel` assumptions.\n\n**Yours:** {yours}",
                margin=(0, 10),
            ),
            self._progress,
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Errors, badges, the colour key, the five plots, the summary table and a reader's page."""
        keys = [k for k in COLORS if k != "yours" or "fanout_targets" in self.yours]
        return pn.Column(
            self.error_view,
            self.headline,
            kit.color_key(COLORS, keys),
            self._plots,
            self.summary_table(),
            self.feed_view,
            sizing_mode="stretch_width",
        )


Dashboard = FeedDashboard


def dashboard(**params: object) -> FeedDashboard:
    """The dashboard for a notebook, e.g. ``dashboard(threshold=1000, fanout_targets=fanout_targets)``."""
    return FeedDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
    return FeedDashboard.page()
