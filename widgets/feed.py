"""News feed fan-out: push, pull and hybrid on a power-law social graph, and one user's ranked feed.

Lab 03's dashboard: ``dashboard(**params)`` in a notebook, ``app()`` for ``syslab serve``.
Each session owns a :class:`FeedDashboard`. A change of graph or traffic reruns the fleet
simulator (``lab_core.feed.simulate``) for push, pull, hybrid and a sweep of celebrity
thresholds; moving only the threshold reruns hybrid alone (push, pull and the sweep are
cached). One reader's page is merged from pushed and pulled posts with ``policy.merge`` and
reordered by the learned ranker (``lab_core.feed.ranker``, trained once per process).
"""
from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass, field

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from lab_core.feed import (
    EngagementStats,
    FeedItem,
    Ranker,
    SocialGraph,
    merge,
    power_law_graph,
    simulate,
    simulate_engagement,
    train,
)
from lab_core.feed.simulate import SUMMARY_COLUMNS
from lab_core.sim import rng
from widgets import kit

STRATEGIES = ("push", "pull", "hybrid")
COLORS: dict[str, str] = {"push": "#1f77b4", "pull": "#ff7f0e", "hybrid": "#2ca02c"}
#: Threshold slider stops: a power-law graph needs log steps, not linear ones.
THRESHOLDS: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: Hybrid thresholds of the trade-off curve (push and pull are its two ends).
SWEEP: tuple[int, ...] = (20, 100, 500)
WRITE_RATE = 100.0  # posts per simulated second
PAGE = 20  # items on the user's feed page
#: Simulated events (posts + reads, all runs) past which the dashboard refuses instead of stalling (~10 s).
MAX_EVENTS = 600_000
#: The issue's targets.
WRITE_CUT_TARGET = 90.0  # hybrid cuts fan-out writes by at least this % vs push
READ_P99_RATIO_TARGET = 2.0  # hybrid read p99 at most this multiple of push's
FEED_HORIZON = 6 * 3600.0  # the page's posts were made over the last 6 h

FEED_COLUMNS = [
    "newest_first", "ranked", "moved", "source", "post_id", "author", "author_followers",
    "age_min", "likes", "replies", "affinity", "score",
]


@functools.lru_cache(maxsize=8)
def graph(n_users: int, mean_follows: float, celebrity_boost: float, seed: int) -> SocialGraph:
    """The power-law graph for these settings (immutable, so shared between sessions)."""
    return power_law_graph(n_users, mean_follows, seed=seed, celebrity_boost=celebrity_boost)


@functools.lru_cache(maxsize=1)
def ranker() -> Ranker:
    """The learned ranker: a small logistic regression trained once per process (about 0.3 s)."""
    return train(simulate_engagement(n_viewers=200, candidates=40, seed=0), epochs=4, seed=0)


@dataclass(frozen=True, eq=False)
class Run:
    """One recompute: a summary row per strategy, the threshold sweep, the settings, timing and errors."""

    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    sweep: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    threshold: int = 1
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    graph: SocialGraph | None = None

    def row(self, strategy: str) -> pd.Series | None:
        """The summary row of ``strategy``, or None when it was not computed."""
        rows = self.summary[self.summary["strategy"] == strategy]
        return rows.iloc[0] if len(rows) else None


class FeedDashboard(pn.viewable.Viewer):
    """Fan-out on write vs on read: writes per post, visibility delay, read latency, cache memory, a user's feed."""

    threshold = param.Integer(100, bounds=(1, 10_000), label="Celebrity threshold (followers)")
    n_users = param.Integer(10_000, bounds=(1_000, 50_000), step=1_000, label="Graph size (users)")
    mean_follows = param.Number(20.0, bounds=(2.0, 100.0), step=1.0, label="Mean follows per user")
    celebrity_boost = param.Number(1.0, bounds=(0.5, 50.0), step=0.5,
                                   label="Celebrity boost (× weight of the top 0.1%)")
    read_ratio = param.Number(50.0, bounds=(1.0, 200.0), step=1.0, label="Read:write ratio")
    timeline_cap = param.Integer(800, bounds=(20, 5_000), step=20, label="Timeline length (entries)")
    duration = param.Number(1.0, bounds=(0.2, 10.0), step=0.2, label="Duration (simulated s)")
    seed = param.Integer(1, bounds=(0, 2**31 - 1), label="Seed")
    run = param.ClassSelector(class_=Run, default=Run(), precedence=-1, doc="the latest recompute")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._progress = kit.progress_bar()
        self._runs = itertools.count()
        self._latest = -1
        self._base_key: tuple | None = None
        self._base: tuple[pd.DataFrame, pd.DataFrame] | None = None
        # linked_axes off: the strategy axes of plain and grouped bars must not be merged into one.
        panes = [pn.pane.HoloViews(hv.DynamicMap(view), linked_axes=False, sizing_mode="stretch_width",
                                   min_width=420, styles={"flex": "1 1 45%"})
                 for view in (self.writes_plot, self.visibility_plot, self.read_plot, self.memory_plot,
                              self.tradeoff_plot)]
        self._plots = pn.FlexBox(*panes, flex_wrap="wrap", sizing_mode="stretch_width")
        self.recompute()

    # ---- computing -------------------------------------------------------------------------

    def _kwargs(self) -> dict:
        return {"duration": float(self.duration), "write_rate": WRITE_RATE, "read_ratio": float(self.read_ratio),
                "timeline_cap": int(self.timeline_cap), "seed": int(self.seed)}

    @param.depends("threshold", "n_users", "mean_follows", "celebrity_boost", "read_ratio", "timeline_cap",
                   "duration", "seed", watch=True)
    def recompute(self) -> None:
        """Simulate hybrid at the threshold (and push, pull and the sweep unless cached); publish ``run``."""
        generation = self._latest = next(self._runs)
        started = time.perf_counter()
        errors: dict[str, str] = {}
        summary = sweep = pd.DataFrame(columns=SUMMARY_COLUMNS)
        g = None
        try:
            g = graph(int(self.n_users), float(self.mean_follows), float(self.celebrity_boost), int(self.seed))
            kwargs = self._kwargs()
            key = (int(self.n_users), float(self.mean_follows), float(self.celebrity_boost), *kwargs.values())
            cached = self._base if key == self._base_key else None
            runs = 1 if cached else 3 + len(set(SWEEP) - {int(self.threshold)})
            events = WRITE_RATE * float(self.duration) * (1.0 + float(self.read_ratio)) * runs
            if events > MAX_EVENTS:
                raise ValueError(f"{events:,.0f} simulated posts and reads is more than this dashboard runs "
                                 f"({MAX_EVENTS:,}); lower the duration or the read:write ratio.")
            jobs = [("hybrid", int(self.threshold))]
            if cached is None:
                jobs += [("push", None), ("pull", None), *(("hybrid", t) for t in SWEEP)]
                jobs = list(dict.fromkeys(jobs))  # the threshold may be one of the sweep's
            done: dict[tuple, pd.DataFrame] = {}
            with kit.loading(self._plots):
                for strategy, t in kit.track(jobs, self._progress):
                    done[(strategy, t)] = simulate(g, strategy, t, **kwargs).summary()
            if cached is None:
                ends = pd.concat([done[("push", None)], done[("pull", None)]], ignore_index=True)
                curve = pd.concat([done[("pull", None)], *(done[("hybrid", t)] for t in SWEEP),
                                   done[("push", None)]], ignore_index=True)
                cached = (ends, curve)
                self._base_key, self._base = key, cached
            ends, sweep = cached
            summary = pd.concat([ends, done[jobs[0]]], ignore_index=True)
            push = summary.iloc[0]
            for frame in (summary, sweep):
                frame["writes_vs_push"] = frame["writes_per_post"] / push["writes_per_post"] if push[
                    "writes_per_post"] else math.nan
                frame["read_p99_vs_push"] = frame["read_p99"] / push["read_p99"]
        except Exception as exc:  # show it in the page, keep the page alive
            errors["simulation"] = kit.describe(exc)
            summary = sweep = pd.DataFrame(columns=SUMMARY_COLUMNS)
        if generation != self._latest:
            return
        self.run = Run(summary, sweep, int(self.threshold), errors, time.perf_counter() - started, g)

    # ---- data behind the plots (tidy frames, also what the tests look at) ------------------

    def summary(self) -> pd.DataFrame:
        """One row per strategy (push, pull, hybrid at the threshold): ``SUMMARY_COLUMNS`` plus ratios to push."""
        return self.run.summary.copy()

    def sweep(self) -> pd.DataFrame:
        """The trade-off curve: pull, hybrid at each ``SWEEP`` threshold, push (same workload for all)."""
        return self.run.sweep.copy()

    @staticmethod
    def _plotted(frame: pd.DataFrame, strategies: tuple[str, ...] = STRATEGIES) -> pd.DataFrame:
        """``frame``, or zeros per strategy when the run failed, so every plot keeps its type and axes."""
        if len(frame):
            return frame
        zeros = pd.DataFrame(0.0, index=range(len(strategies)), columns=SUMMARY_COLUMNS)
        return zeros.assign(strategy=list(strategies), threshold=1)

    def visibility(self, plotting: bool = False) -> pd.DataFrame:
        """Visibility delay per strategy and percentile (ms): strategy, percentile, delay_ms."""
        s = self._plotted(self.run.summary) if plotting else self.summary()
        long = s.melt(id_vars="strategy", value_vars=["visibility_p50", "visibility_p99"],
                      var_name="percentile", value_name="delay_s")
        long["percentile"] = long["percentile"].str.removeprefix("visibility_")
        long["delay_ms"] = long["delay_s"].astype(float) * 1e3
        return long[["strategy", "percentile", "delay_ms"]]

    def latency(self, plotting: bool = False) -> pd.DataFrame:
        """Read latency percentiles per strategy in seconds, as ``kit.latency_plot`` takes them."""
        s = self._plotted(self.run.summary) if plotting else self.summary()
        cols = {"read_p50": "p50", "read_p90": "p90", "read_p99": "p99", "read_p99.9": "p99.9"}
        return s[["strategy", "reads", *cols]].rename(columns={**cols, "reads": "count"})

    def user_feed(self) -> pd.DataFrame:
        """One reader's first page at the threshold: each item's source and position before/after ranking.

        The reader follows at least one celebrity (pulled) and one ordinary author (pushed) when the
        graph has such a user. Posts and engagement are synthetic and seeded.
        """
        g = self.run.graph
        if g is None:
            return pd.DataFrame(columns=FEED_COLUMNS)
        threshold = int(self.threshold)
        counts = g.follower_counts()
        celeb = counts >= threshold
        n_celeb_followed = g.pulled_followees(threshold)
        n_followed = g.followee_counts()
        mixed = np.flatnonzero((n_celeb_followed >= 1) & (n_followed - n_celeb_followed >= 1))
        pool = mixed if mixed.size else np.arange(g.n_users)
        viewer = int(pool[np.argmax(n_followed[pool])])  # the busiest such reader: a full page
        followees = g.followees(viewer)
        r = rng(int(self.seed) + 7)
        per_author = 1 + r.poisson(1.0, size=followees.size)
        authors = np.repeat(followees, per_author)
        created = r.uniform(0.0, FEED_HORIZON, size=authors.size)
        items = [FeedItem(i + 1, int(a), float(c), "pull" if celeb[a] else "push")
                 for i, (a, c) in enumerate(zip(authors.tolist(), created.tolist()))]
        # Push: the reader's cached timeline (capped); pull: each celebrity's recent posts, a page each.
        pushed = sorted((i for i in items if i.source == "push"), key=lambda i: i.order, reverse=True)
        pushed = pushed[: int(self.timeline_cap)]
        pulled = [i for a in followees[celeb[followees]]
                  for i in sorted((i for i in items if i.author_id == a), key=lambda i: i.order,
                                  reverse=True)[: PAGE + 1]]
        page = merge([pushed, pulled], limit=PAGE).items
        if not page:
            return pd.DataFrame(columns=FEED_COLUMNS)
        age_h = (FEED_HORIZON - np.array([i.created_at for i in page])) / 3600.0
        pop = np.sqrt(1.0 + counts[[i.author_id for i in page]])
        likes = r.poisson(pop * np.minimum(age_h, 1.0) * r.lognormal(0.0, 0.7, len(page)))
        replies = r.binomial(likes, 0.15)
        inter = r.poisson(r.lognormal(-1.0, 1.5, len(page)))
        stats = EngagementStats(
            now=FEED_HORIZON,
            likes={i.post_id: int(k) for i, k in zip(page, likes)},
            replies={i.post_id: int(k) for i, k in zip(page, replies)},
            interactions={(viewer, i.author_id): int(k) for i, k in zip(page, inter)},
        )
        model = ranker()
        ranked = model.rank(page, viewer, stats)
        scores = dict(zip((i.post_id for i in page), model.score(page, viewer, stats)))
        after = {i.post_id: n + 1 for n, i in enumerate(ranked)}
        rows = []
        for n, item in enumerate(page, start=1):
            rows.append({
                "newest_first": n, "ranked": after[item.post_id], "moved": n - after[item.post_id],
                "source": item.source, "post_id": item.post_id, "author": item.author_id,
                "author_followers": int(counts[item.author_id]),
                "age_min": round((FEED_HORIZON - item.created_at) / 60.0, 1),
                "likes": stats.likes[item.post_id], "replies": stats.replies[item.post_id],
                "affinity": stats.interactions.get((viewer, item.author_id), 0),
                "score": round(float(scores[item.post_id]), 3),
            })
        out = pd.DataFrame(rows, columns=FEED_COLUMNS)
        out.attrs["viewer"] = viewer
        return out

    # ---- views -----------------------------------------------------------------------------

    def _labelled_bars(self, frame: pd.DataFrame, y: str, fmt: str, **kw) -> hv.Element:
        bars = kit.bar_plot(frame, "strategy", y, colors=COLORS, legend=False, **kw)
        labels = hv.Labels(frame.assign(text=[fmt.format(v) for v in frame[y]]), ["strategy", y], "text").opts(
            text_baseline="bottom", text_font_size="10pt", text_color="#333333", yoffset=0)
        return (bars * labels).opts(padding=(0.05, (0, 0.12)))

    @param.depends("run")
    def writes_plot(self) -> hv.Element:
        """Fan-out writes per post (write amplification) per strategy, each bar labelled."""
        s = self._plotted(self.run.summary)[["strategy", "writes_per_post", "fanout_writes", "posts"]]
        return self._labelled_bars(
            s, "writes_per_post", "{:,.1f}", title="Fan-out writes per post", xlabel="strategy",
            ylabel="timeline writes per post (ZADDs)", hover=["fanout_writes", "posts"])

    @param.depends("run")
    def visibility_plot(self) -> hv.Element:
        """How long until every follower can see a post: p50 and p99 per strategy."""
        title, ylabel = "Visibility delay (post → in every follower's feed)", "visibility delay (ms)"
        frame = self.visibility(plotting=True)
        return kit.bar_plot(frame, "strategy", "delay_ms", by="percentile",
                            colors={"p50": "#9467bd", "p99": "#8c564b"},
                            title=title, xlabel="strategy", ylabel=ylabel)

    @param.depends("run")
    def read_plot(self) -> hv.Element:
        """Feed read latency percentiles per strategy."""
        title = "Feed read latency (queueing + service)"
        frame = self.latency(plotting=True)
        return kit.latency_plot(frame, by="strategy", unit="ms", colors=COLORS, title=title)

    @param.depends("run")
    def memory_plot(self) -> hv.Element:
        """Timeline cache memory per strategy (MB)."""
        s = self._plotted(self.run.summary)
        s = s.assign(cache_mb=s["cache_bytes"].astype(float) / 1e6)[
            ["strategy", "cache_mb", "timeline_entries", "author_list_entries"]]
        return self._labelled_bars(s, "cache_mb", "{:.2f} MB", title="Timeline cache memory", xlabel="strategy",
                                   ylabel="cache memory (MB)", hover=["timeline_entries", "author_list_entries"])

    @param.depends("run")
    def tradeoff_plot(self) -> hv.Element:
        """Writes per post against read p99 over thresholds, the current threshold marked."""
        sweep = self._plotted(self.run.sweep, ("pull", *(["hybrid"] * len(SWEEP)), "push"))
        xlabel, ylabel = "fan-out writes per post (ZADDs)", "read p99 (ms)"
        title = "Threshold trade-off: write cost vs read p99"
        pts = pd.DataFrame({
            "writes": sweep["writes_per_post"].astype(float), "p99": sweep["read_p99"].astype(float) * 1e3,
            "label": [("pull (all)" if s == "pull" else "push (none)" if s == "push" else f"≥{t:,}")
                      for s, t in zip(sweep["strategy"], sweep["threshold"])],
        })
        curve = hv.Curve(pts, ("writes", xlabel), ("p99", ylabel)).opts(color="#7f7f7f", line_width=2)
        dots = hv.Scatter(pts, ("writes", xlabel), [("p99", ylabel), "label"]).opts(
            color="#7f7f7f", size=7, tools=["hover"])
        texts = hv.Labels(pts, ["writes", "p99"], "label").opts(
            text_font_size="9pt", text_color="#555555", text_baseline="bottom", text_align="left", xoffset=0)
        # The same layers every time (a DynamicMap must return one type): zeros when the run failed.
        now = self._plotted(self.run.summary).iloc[-1]
        cur = pd.DataFrame({"writes": [float(now["writes_per_post"])], "p99": [float(now["read_p99"]) * 1e3],
                            "label": [f"threshold {self.run.threshold:,}"]})
        marker = hv.Scatter(cur, ("writes", xlabel), [("p99", ylabel), "label"]).opts(
            color=kit.OVER, marker="star", size=18, tools=["hover"])
        marker_text = hv.Labels(cur, ["writes", "p99"], "label").opts(
            text_color=kit.OVER, text_font_style="bold", text_font_size="10pt", text_align="left",
            text_baseline="top")
        overlay = curve * dots * texts * marker * marker_text
        return overlay.opts(title=title, xlabel=xlabel, ylabel=ylabel, responsive=True, height=kit.PLOT_HEIGHT,
                            padding=0.1,
                            show_grid=True, framewise=True, toolbar="right")

    def badges(self) -> tuple[float, float]:
        """(% fewer fan-out writes of hybrid vs push, hybrid read p99 ÷ push read p99)."""
        push, hybrid = self.run.row("push"), self.run.row("hybrid")
        if push is None or hybrid is None:
            return math.nan, math.nan
        cut = 100.0 * (1.0 - hybrid["writes_per_post"] / push["writes_per_post"]) if push[
            "writes_per_post"] else math.nan
        return float(cut), float(hybrid["read_p99"] / push["read_p99"])

    @param.depends("run")
    def headline(self) -> pn.viewable.Viewable:
        """The two SLA badges and one sentence with the numbers behind them."""
        if self.run.errors:
            return pn.pane.Markdown("No results; see the error above.")
        cut, ratio = self.badges()
        push, hybrid = self.run.row("push"), self.run.row("hybrid")
        g = self.run.graph
        celebs = int((g.follower_counts() >= self.run.threshold).sum()) if g is not None else 0
        text = (f"**Hybrid at threshold {self.run.threshold:,}** pulls **{celebs:,}** celebrities: "
                f"**{hybrid['writes_per_post']:,.1f}** writes per post vs **{push['writes_per_post']:,.1f}** "
                f"for push, read p99 **{hybrid['read_p99'] * 1e3:.2f} ms** vs **{push['read_p99'] * 1e3:.2f} ms**. "
                f"{int(hybrid['posts']):,} posts and {int(hybrid['reads']):,} reads on {g.n_users:,} users "
                f"({g.n_edges:,} follows). Recomputed in {self.run.seconds * 1000:.0f} ms.")
        return pn.Column(
            pn.pane.Markdown(text, sizing_mode="stretch_width"),
            pn.FlexBox(kit.sla_badge("hybrid cuts fan-out writes vs push", cut, WRITE_CUT_TARGET, unit="%",
                                     higher_is_better=True),
                       kit.sla_badge("hybrid read p99 ÷ push read p99", ratio, READ_P99_RATIO_TARGET, unit="×")),
            sizing_mode="stretch_width")

    @param.depends("run")
    def error_view(self) -> pn.viewable.Viewable:
        """What went wrong, as text (bad settings never crash the page)."""
        lines = "\n".join(f"- **{k}**: `{v}`" for k, v in self.run.errors.items())
        return pn.pane.Alert(f"Could not simulate:\n\n{lines}", alert_type="danger",
                             visible=bool(self.run.errors), sizing_mode="stretch_width")

    @param.depends("run")
    def feed_view(self) -> pn.viewable.Viewable:
        """One reader's page: source of each item, its position newest-first and after the learned ranker."""
        try:
            frame = self.user_feed()
        except Exception as exc:
            return pn.pane.Alert(f"Could not build the user's feed: `{kit.describe(exc)}`", alert_type="danger")
        viewer = frame.attrs.get("viewer", "—")
        n_push, n_pull = int((frame["source"] == "push").sum()), int((frame["source"] == "pull").sum())
        intro = pn.pane.Markdown(
            f"#### User {viewer}'s feed page ({n_push} pushed, {n_pull} pulled)\n"
            f"Pushed items come from the cached timeline, pulled ones from followed celebrities' post lists at "
            f"read time; `policy.merge` orders them newest first, then the learned ranker reorders the page "
            f"(`moved` > 0: up). Posts and engagement are synthetic.", sizing_mode="stretch_width")
        titles = {"newest_first": "# newest first", "ranked": "# ranked", "author_followers": "author followers",
                  "age_min": "age (min)"}
        table = pn.widgets.Tabulator(frame, disabled=True, show_index=False, titles=titles, layout="fit_columns",
                                     sizing_mode="stretch_width", text_align={"source": "center"})
        table.style.map(lambda v: f"color:{COLORS['push'] if v == 'push' else COLORS['pull']};font-weight:bold",
                        subset=["source"])
        return pn.Column(intro, table, sizing_mode="stretch_width")

    def summary_table(self) -> pn.widgets.Tabulator:
        """The numbers behind the plots, one row per strategy."""
        cols = ["strategy", "threshold", "writes_per_post", "visibility_p50", "visibility_p99", "read_p50",
                "read_p99", "cache_bytes", "writes_vs_push", "read_p99_vs_push"]

        def table(run: Run) -> pd.DataFrame:
            s = run.summary
            return s[[c for c in cols if c in s.columns]].round(5) if len(s) else pd.DataFrame(columns=cols)

        titles = {"writes_per_post": "writes/post", "visibility_p50": "visible p50 (s)",
                  "visibility_p99": "visible p99 (s)", "read_p50": "read p50 (s)", "read_p99": "read p99 (s)",
                  "cache_bytes": "cache (bytes)", "writes_vs_push": "writes ÷ push",
                  "read_p99_vs_push": "read p99 ÷ push"}
        return pn.widgets.Tabulator(pn.bind(table, self.param.run), disabled=True, show_index=False,
                                    titles=titles, sizing_mode="stretch_width", layout="fit_columns")

    def controls(self) -> pn.Column:
        """The sidebar: fan-out policy, graph, traffic."""
        return pn.Column(
            kit.controls(self, ["threshold"], title="Fan-out policy",
                         widgets={"threshold": {"type": pn.widgets.DiscreteSlider, "options": list(THRESHOLDS)}}),
            pn.pane.Markdown("Authors with at least this many followers are pulled at read time; "
                             "everyone else is pushed into followers' timelines.", margin=(0, 10)),
            kit.controls(self, ["n_users", "mean_follows", "celebrity_boost"], title="Social graph (power law)"),
            kit.controls(self, ["read_ratio", "timeline_cap", "duration", "seed"], title="Traffic",
                         widgets={"seed": pn.widgets.IntInput}),
            pn.pane.Markdown(f"Posts arrive at {WRITE_RATE:g}/s; service times are the simulator's "
                             f"`CostModel` assumptions.", margin=(0, 10)),
            self._progress,
            sizing_mode="stretch_width",
        )

    def main(self) -> pn.Column:
        """Errors, badges, the legend, the five plots, the summary table and a user's feed."""
        return pn.Column(self.error_view, self.headline, kit.color_key(COLORS), self._plots, self.summary_table(),
                         self.feed_view, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(**params: object) -> FeedDashboard:
    """The dashboard for a notebook, e.g. ``dashboard(threshold=1000, n_users=20_000)``."""
    return FeedDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = FeedDashboard()
    return pn.template.FastListTemplate(
        title="Lab 03 · News feed",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
