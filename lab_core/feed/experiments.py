"""What Lab 03's dashboard, notebook and benchmark run: the fan-out comparison and one reader's page.

* :func:`fanout_study` -- push, pull and hybrid at a threshold on one workload, plus the sweep of
  thresholds between pure pull and pure push (``simulate.compare``, with its ratios to push). The
  comparison without the threshold (``FanoutStudy.base``) can be passed back in, so moving only
  the threshold simulates one run. :meth:`FanoutStudy.with_yours` adds hybrid with another
  fan-out policy (a student's) as the row ``yours``.
* :func:`reader_page` -- one reader's first page, built the way the real read path builds it:
  pushed posts written into a cached timeline on fakeredis (``TimelineWrite``), read back,
  merged with the followed celebrities' posts (``Merge``) and reordered by a ranker trained on
  ``Features``; each seam can be a student's.
* The dashboard's data: :class:`StudyRun` (one recompute), :func:`check_size` (refuse runs too large to finish in seconds), and the
  tidy frames its plots and table draw from a study (:func:`visibility`, :func:`read_latency`,
  :func:`tradeoff_points`, :func:`current_point`, :func:`summary_in_units`, :func:`hybrid_gains`),
  and :func:`page_with`, the reader's page with whichever seams a student gave.

Posts, engagement and the graph are synthetic and seeded. Nothing here draws.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import numpy as np
import pandas as pd

from lab_core.feed.config import FeedConfig
from lab_core.feed.graph import SocialGraph, power_law_graph
from lab_core.feed.policy import FeedItem, merge
from lab_core.feed.protocol import FanoutPolicy, Features, Merge, TimelineWrite
from lab_core.feed.ranker import EngagementData, EngagementStats, Ranker, feature_matrix, simulate_engagement, train
from lab_core.feed.simulate import SUMMARY_COLUMNS, add_ratios, compare, simulate
from lab_core.feed.timeline import Timelines, add_to_timeline, timeline_key
from lab_core.sim import Progress, rng, steps

__all__ = [
    "FEED_COLUMNS",
    "FEED_HEADINGS",
    "MAX_EVENTS",
    "PAGE",
    "STRATEGIES",
    "SUMMARY_HEADINGS",
    "SWEEP",
    "WRITE_RATE",
    "FanoutStudy",
    "StudyRun",
    "check_size",
    "current_point",
    "fanout_study",
    "graph",
    "hybrid_gains",
    "page_with",
    "plotted",
    "read_latency",
    "reader_page",
    "reference_ranker",
    "summary_in_units",
    "tradeoff_points",
    "trained_ranker",
    "visibility",
    "yours_run",
]

#: Hybrid thresholds of the trade-off curve (push and pull are its two ends).
SWEEP: tuple[int, ...] = (20, 100, 500)
PAGE = 20  # items on the reader's page
FEED_HORIZON = 6 * 3600.0  # the page's posts were made over the last 6 h
#: One row per item of :func:`reader_page`.
FEED_COLUMNS = [
    "newest_first",
    "ranked",
    "moved",
    "source",
    "post_id",
    "author",
    "author_followers",
    "age_min",
    "likes",
    "replies",
    "affinity",
    "score",
]


@functools.lru_cache(maxsize=8)
def graph(n_users: int, mean_follows: float, celebrity_boost: float, seed: int) -> SocialGraph:
    """The power-law graph for these settings (immutable, so shared between callers)."""
    return power_law_graph(n_users, mean_follows, seed=seed, celebrity_boost=celebrity_boost)


@dataclass(frozen=True)
class FanoutStudy:
    """One workload under every strategy: ``summary`` has a row per strategy (push, pull, hybrid at
    ``threshold``, and ``yours`` when added), ``sweep`` runs pull, hybrid at ``SWEEP``, push."""

    threshold: int
    summary: pd.DataFrame  # SUMMARY_COLUMNS + writes_vs_push, read_p99_vs_push
    sweep: pd.DataFrame
    base: pd.DataFrame = field(repr=False)  # compare(push, pull, SWEEP): pass back to fanout_study

    def row(self, strategy: str) -> pd.Series | None:
        """The summary row of ``strategy``, or None when it was not run."""
        rows = self.summary[self.summary["strategy"] == strategy]
        return rows.iloc[0] if len(rows) else None

    def with_yours(self, run: pd.DataFrame) -> FanoutStudy:
        """This study plus ``run`` (one ``FeedSimResult.summary`` row) as the strategy ``yours``."""
        rows = pd.concat(
            [self.summary[self.summary["strategy"] != "yours"], run.assign(strategy="yours")], ignore_index=True
        )
        return FanoutStudy(self.threshold, add_ratios(rows[SUMMARY_COLUMNS]), self.sweep, self.base)


def fanout_study(
    g: SocialGraph,
    threshold: int,
    *,
    base: pd.DataFrame | None = None,
    sweep: tuple[int, ...] = SWEEP,
    progress: Progress | None = None,
    **kwargs: Any,
) -> FanoutStudy:
    """Push, pull and hybrid at ``threshold`` (and the ``sweep``) on ``g``; ``kwargs`` go to ``simulate``.

    ``base``: a previous study's ``base`` for the same graph and ``kwargs``, so only hybrid at
    ``threshold`` runs (and not even that when the threshold is one of the sweep's).
    """
    if base is None:
        base = compare(g, sweep, ("push", "pull"), progress=progress, **kwargs)
    hybrid = base[(base["strategy"] == "hybrid") & (base["threshold"] == int(threshold))]
    if hybrid.empty:
        for t in steps([int(threshold)], progress, lambda t: f"hybrid at {t:,}"):
            hybrid = simulate(g, "hybrid", t, **kwargs).summary()
    by = base.set_index("strategy", drop=False)
    summary = add_ratios(pd.concat([by.loc[["push", "pull"]], hybrid], ignore_index=True)[SUMMARY_COLUMNS])
    ends = base[base["strategy"] != "hybrid"].set_index("strategy", drop=False)
    curve = pd.concat(
        [ends.loc[["pull"]], base[base["strategy"] == "hybrid"].sort_values("threshold"), ends.loc[["push"]]],
        ignore_index=True,
    )
    return FanoutStudy(int(threshold), summary, curve, base)


def yours_run(g: SocialGraph, threshold: int, fanout: FanoutPolicy, **kwargs: Any) -> pd.DataFrame:
    """Hybrid at ``threshold`` deciding with ``fanout``: one summary row for :meth:`FanoutStudy.with_yours`."""
    return simulate(g, "hybrid", int(threshold), fanout=fanout, **kwargs).summary()


@functools.lru_cache(maxsize=1)
def reference_ranker() -> Ranker:
    """The learned ranker on the reference features, trained once per process (about 0.3 s)."""
    return trained_ranker(None)


def trained_ranker(features: Features | None) -> Ranker:
    """A ranker trained on simulated engagement seen through ``features`` (None: the reference's).

    The engagement labels come from the true model of the reference features: the world is the
    same, only what the ranker is shown changes.
    """
    data = simulate_engagement(n_viewers=200, candidates=40, seed=0)
    if features is not None:
        data = EngagementData(
            data.items,
            data.viewers,
            feature_matrix(data.items, data.viewers.tolist(), data.stats, using=features),
            data.y,
            data.stats,
        )
    return train(data, epochs=4, seed=0)


def _reader(g: SocialGraph, threshold: int) -> int:
    """The busiest reader following at least one celebrity and one pushed author (a full, mixed page)."""
    pulled, followed = g.pulled_followees(threshold), g.followee_counts()
    mixed = np.flatnonzero((pulled >= 1) & (followed - pulled >= 1))
    pool = mixed if mixed.size else np.arange(g.n_users)
    return int(pool[np.argmax(followed[pool])])


def reader_page(
    g: SocialGraph,
    threshold: int,
    *,
    timeline_cap: int,
    seed: int,
    merge_fn: Merge = merge,
    timeline_write: TimelineWrite = add_to_timeline,
    features: Features | None = None,
    ranker: Ranker | None = None,
) -> pd.DataFrame:
    """One reader's first page (``FEED_COLUMNS``): position newest first and after ranking, per item.

    The reader's followees post 1 + Poisson(1) times each over the last 6 h; pushed posts go
    through ``timeline_write`` into the reader's cached timeline (capped at ``timeline_cap``),
    pulled ones stay in their author's list; ``merge_fn`` makes the page and ``ranker`` (trained on
    ``features``; default the reference's) reorders it. ``attrs``: viewer, timeline entries, cap.
    """
    counts = g.follower_counts()
    viewer = _reader(g, threshold)
    followees = g.followees(viewer)
    r = rng(seed + 7)
    authors = np.repeat(followees, 1 + r.poisson(1.0, size=followees.size))
    created = r.uniform(0.0, FEED_HORIZON, size=authors.size)
    celeb = counts >= threshold
    items = sorted(
        (
            FeedItem(i + 1, int(a), float(c), "pull" if celeb[a] else "push")
            for i, (a, c) in enumerate(zip(authors.tolist(), created.tolist()))
        ),
        key=lambda i: i.order,
    )
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    author_of: dict[int, int] = {}
    for item in items:  # in the order they were posted, as the fan-out writes them
        if item.source == "push":
            timeline_write(client, viewer, item.post_id, item.created_at, int(timeline_cap))
            author_of[item.post_id] = item.author_id
    timeline = Timelines(client, FeedConfig(timeline_length=int(timeline_cap)))
    pushed = [FeedItem(p, author_of[p], c, "push") for p, c in timeline.read(viewer, PAGE) if p in author_of]
    newest = sorted(items, key=lambda i: i.order, reverse=True)
    pulled = [[i for i in newest if i.author_id == a][: PAGE + 1] for a in followees[celeb[followees]].tolist()]
    page = list(merge_fn([pushed, *pulled], limit=PAGE).items)
    out = _page_table(page, viewer, counts, r, features, ranker or reference_ranker())
    out.attrs.update(
        viewer=viewer, timeline_entries=int(client.zcard(timeline_key(viewer))), timeline_cap=int(timeline_cap)
    )
    return out


def _page_table(
    page: list[FeedItem],
    viewer: int,
    counts: np.ndarray,
    r: np.random.Generator,
    features: Features | None,
    model: Ranker,
) -> pd.DataFrame:
    """Synthetic engagement for ``page``, the ranker's scores, and the table of both orders."""
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
    scores = dict(zip((i.post_id for i in page), model.score(page, viewer, stats, features)))
    after = {item.post_id: rank for rank, item in enumerate(model.rank(page, viewer, stats, features), start=1)}
    rows = [
        {
            "newest_first": n,
            "ranked": after[item.post_id],
            "moved": n - after[item.post_id],
            "source": item.source,
            "post_id": item.post_id,
            "author": item.author_id,
            "author_followers": int(counts[item.author_id]),
            "age_min": round((FEED_HORIZON - item.created_at) / 60.0, 1),
            "likes": stats.likes[item.post_id],
            "replies": stats.replies[item.post_id],
            "affinity": stats.interactions.get((viewer, item.author_id), 0),
            "score": round(float(scores[item.post_id]), 3),
        }
        for n, item in enumerate(page, start=1)
    ]
    return pd.DataFrame(rows, columns=FEED_COLUMNS)


# --- what the dashboard draws: tidy frames from a study -----------------------------------------

#: Posts per simulated second in the dashboard's runs.
WRITE_RATE = 100.0
#: Simulated events (posts + reads, all runs) past which a run is refused instead of stalling (~10 s).
MAX_EVENTS = 600_000
STRATEGIES = ("push", "pull", "hybrid")
_MS = ["visibility_p50", "visibility_p99", "read_p50", "read_p99"]
#: Column -> heading (with its unit) of the summary table, in the order shown.
SUMMARY_HEADINGS = {
    "strategy": "strategy",
    "threshold": "authors pulled",
    "writes_per_post": "writes per post",
    "writes_vs_push": "writes ÷ push",
    "visibility_p50": "visible p50 (ms)",
    "visibility_p99": "visible p99 (ms)",
    "read_p50": "read p50 (ms)",
    "read_p99": "read p99 (ms)",
    "read_p99_vs_push": "read p99 ÷ push",
    "cache_bytes": "cache (MB)",
}
#: Headings of the reader's page columns whose names need words or a unit.
FEED_HEADINGS = {
    "newest_first": "# newest first",
    "ranked": "# ranked",
    "moved": "moved (places up)",
    "post_id": "post id",
    "author_followers": "author followers",
    "age_min": "age (min)",
    "affinity": "affinity (count)",
    "score": "score (logit)",
}


@dataclass(frozen=True, eq=False)
class StudyRun:
    """One dashboard recompute: the fan-out study, the reader's page per side (reference, yours), timing."""

    study: FanoutStudy | None = None
    pages: dict[str, pd.DataFrame] = field(default_factory=dict)
    graph: SocialGraph | None = None
    seconds: float = 0.0

    def row(self, strategy: str) -> pd.Series | None:
        """The summary row of ``strategy``, or None when it was not computed."""
        return self.study.row(strategy) if self.study is not None else None

    def table(self, name: str) -> pd.DataFrame:
        """A copy of the study's ``summary`` or ``sweep``; empty, with ``SUMMARY_COLUMNS``, without a study."""
        return getattr(self.study, name).copy() if self.study is not None else pd.DataFrame(columns=SUMMARY_COLUMNS)


def check_size(duration: float, read_ratio: float, runs: int) -> None:
    """Raise ValueError, naming what to lower, when ``runs`` runs would simulate more than ``MAX_EVENTS``."""
    events = WRITE_RATE * duration * (1.0 + read_ratio) * runs
    if events > MAX_EVENTS:
        raise ValueError(
            f"{events:,.0f} simulated posts and reads is more than this dashboard runs "
            f"({MAX_EVENTS:,}); lower the duration or the read:write ratio."
        )


def plotted(frame: pd.DataFrame, strategies: tuple[str, ...] = STRATEGIES) -> pd.DataFrame:
    """``frame``, or zeros per strategy when it is empty (a failed run), so plots keep their type."""
    if len(frame):
        return frame
    zeros = pd.DataFrame(0.0, index=range(len(strategies)), columns=SUMMARY_COLUMNS)
    return zeros.assign(strategy=list(strategies), threshold=1)


def visibility(summary: pd.DataFrame) -> pd.DataFrame:
    """Visibility delay per strategy and percentile (ms): strategy, percentile, delay_ms."""
    long = summary.melt(
        id_vars="strategy", value_vars=["visibility_p50", "visibility_p99"], var_name="percentile", value_name="delay_s"
    )
    long["percentile"] = long["percentile"].str.removeprefix("visibility_")
    long["delay_ms"] = long["delay_s"].astype(float) * 1e3
    return long[["strategy", "percentile", "delay_ms"]]


def read_latency(summary: pd.DataFrame) -> pd.DataFrame:
    """Read latency percentiles per strategy in seconds: strategy, count, p50, p90, p99, p99.9."""
    cols = {"read_p50": "p50", "read_p90": "p90", "read_p99": "p99", "read_p99.9": "p99.9"}
    return summary[["strategy", "reads", *cols]].rename(columns={**cols, "reads": "count"})


def hybrid_gains(hybrid: pd.Series | None) -> tuple[float, float]:
    """(% fewer fan-out writes of hybrid vs push, hybrid read p99 ÷ push read p99); NaNs without a run."""
    if hybrid is None:
        return float("nan"), float("nan")
    return 100.0 * (1.0 - float(hybrid["writes_vs_push"])), float(hybrid["read_p99_vs_push"])


def _sweep_label(strategy: str, threshold: int, current: int) -> str:
    if strategy in ("pull", "push"):
        return f"{strategy} ({'all' if strategy == 'pull' else 'none'})"
    # The current threshold's point is labelled by its own marker, which would cover this label.
    return "" if threshold == current else f"≥{threshold:,}"


def tradeoff_points(sweep: pd.DataFrame, current: int) -> pd.DataFrame:
    """The trade-off curve's points: writes per post, read p99 (ms) and a label per sweep run."""
    return pd.DataFrame(
        {
            "writes": sweep["writes_per_post"].astype(float),
            "p99": sweep["read_p99"].astype(float) * 1e3,
            "label": [_sweep_label(s, t, current) for s, t in zip(sweep["strategy"], sweep["threshold"])],
        }
    )


def current_point(hybrid: pd.Series | None, threshold: int) -> pd.DataFrame:
    """Hybrid at the current threshold as one trade-off point (zeros without a run, labelled all the same)."""
    return pd.DataFrame(
        {
            "writes": [float(hybrid["writes_per_post"]) if hybrid is not None else 0.0],
            "p99": [float(hybrid["read_p99"]) * 1e3 if hybrid is not None else 0.0],
            "label": [f"threshold {int(hybrid['threshold'] if hybrid is not None else threshold):,}"],
        }
    )


def summary_in_units(summary: pd.DataFrame) -> pd.DataFrame:
    """The ``SUMMARY_HEADINGS`` columns in the plots' units (ms, MB), the threshold as who is pulled, rounded."""
    columns = list(SUMMARY_HEADINGS)
    if summary.empty:
        return pd.DataFrame(columns=columns)
    pulled = {"push": "none", "pull": "all"}
    s = summary.assign(
        **{c: summary[c].astype(float) * 1e3 for c in _MS},
        cache_bytes=summary["cache_bytes"] / 1e6,
        threshold=[pulled.get(k, f"≥ {t:,}") for k, t in zip(summary["strategy"], summary["threshold"])],
    )
    return s[columns].round(3)


def page_with(
    g: SocialGraph, threshold: int, timeline_cap: int, seed: int, given: dict[str, Any], ranker: Ranker | None
) -> pd.DataFrame:
    """:func:`reader_page` with the student's ``given`` seams (``merge``, ``add_to_timeline``, ``features``
    with its trained ``ranker``) and the reference for the rest; ``attrs["yours"]`` names them."""
    page = reader_page(
        g,
        threshold,
        timeline_cap=timeline_cap,
        seed=seed,
        merge_fn=given.get("merge", merge),
        timeline_write=given.get("add_to_timeline", add_to_timeline),
        features=given.get("features"),
        ranker=ranker if "features" in given else None,
    )
    page.attrs["yours"] = list(given)
    return page
