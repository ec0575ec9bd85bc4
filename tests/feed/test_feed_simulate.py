"""The feed simulator: write amplification, visibility, read latency and cache per strategy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lab_core.feed.graph import SocialGraph, power_law_graph
from lab_core.feed.simulate import (
    POST_COLUMNS,
    READ_COLUMNS,
    SUMMARY_COLUMNS,
    CostModel,
    compare,
    simulate,
)


@pytest.fixture(scope="module")
def celebrity_heavy() -> SocialGraph:
    return power_law_graph(10_000, 20, 2.1, seed=2, celebrity_boost=5)


@pytest.fixture(scope="module")
def small() -> SocialGraph:
    return power_law_graph(2_000, 15, 2.1, seed=5)


@pytest.fixture(scope="module")
def runs(small):
    return {
        s: simulate(small, s, 50 if s == "hybrid" else None, seed=7, duration=1.0) for s in ("push", "pull", "hybrid")
    }


def test_hybrid_cuts_fanout_writes_by_ninety_percent_vs_push(celebrity_heavy):
    # Reads do not change the posts drawn, so keep them few here: this test is about writes.
    table = compare(celebrity_heavy, [100], seed=1, duration=5.0, read_ratio=2.0)
    by = table.set_index("strategy")
    assert by.loc["push", "posts"] > 400
    assert by.loc["hybrid", "writes_per_post"] <= 0.10 * by.loc["push", "writes_per_post"]
    assert by.loc["hybrid", "writes_vs_push"] <= 0.10
    assert by.loc["pull", "fanout_writes"] == 0


def test_push_writes_every_follower_and_pulls_nothing(runs, small):
    r = runs["push"]
    counts = small.follower_counts()
    assert (r.posts["fanout_writes"] == counts[r.posts["author"].to_numpy()]).all()
    assert not r.posts["celebrity"].any()
    assert (r.reads["pulled"] == 0).all()
    assert r.author_list_entries == 0
    assert r.timeline_entries == r.posts["fanout_writes"].sum()  # no timeline reached the cap


def test_pull_has_zero_fanout_writes_and_pulls_every_followee(runs):
    r = runs["pull"]
    assert r.posts["fanout_writes"].sum() == 0
    assert (r.posts["batches"] == 0).all()
    assert np.allclose(r.posts["visibility_delay"], r.cost.post_write)  # visible once stored
    assert (r.reads["pulled"] == r.reads["followees"]).all()
    assert r.timeline_entries == 0 and r.author_list_entries > 0


def test_hybrid_pushes_normal_authors_and_pulls_celebrities(runs):
    p = runs["hybrid"].posts
    assert p["celebrity"].any() and (~p["celebrity"]).any()
    assert (p.loc[p["celebrity"], "fanout_writes"] == 0).all()
    assert (p.loc[p["celebrity"], "followers"] >= 50).all()
    normal = p[~p["celebrity"]]
    assert (normal["fanout_writes"] == normal["followers"]).all()
    assert (normal["followers"] < 50).all()


def test_reads_arrive_at_the_read_write_ratio(runs):
    r = runs["push"]
    ratio = len(r.reads) / len(r.posts)
    assert 35 <= ratio <= 70  # 50 expected; Poisson counts around 100 posts


def test_same_seed_same_run_other_seed_other_run(small):
    a = simulate(small, "hybrid", 50, seed=11, duration=0.5)
    b = simulate(small, "hybrid", 50, seed=11, duration=0.5)
    c = simulate(small, "hybrid", 50, seed=12, duration=0.5)
    pd.testing.assert_frame_equal(a.posts, b.posts)
    pd.testing.assert_frame_equal(a.reads, b.reads)
    pd.testing.assert_frame_equal(a.summary(), b.summary())
    assert not a.posts[["t", "author"]].equals(c.posts[["t", "author"]])


def test_strategies_see_the_same_workload(runs):
    base = runs["push"]
    for s in ("pull", "hybrid"):
        assert np.array_equal(runs[s].posts["author"], base.posts["author"])
        assert np.array_equal(runs[s].reads["reader"], base.reads["reader"])


def test_tables_have_the_documented_columns(runs, small):
    r = runs["hybrid"]
    assert list(r.posts.columns) == POST_COLUMNS
    assert list(r.reads.columns) == READ_COLUMNS
    assert list(r.summary().columns) == SUMMARY_COLUMNS
    table = compare(small, [20, 200], seed=7, duration=0.3)
    assert list(table.columns) == [*SUMMARY_COLUMNS, "writes_vs_push", "read_p99_vs_push"]
    assert table["strategy"].tolist() == ["push", "pull", "hybrid", "hybrid"]
    assert table["threshold"].tolist() == [small.n_users + 1, 1, 20, 200]
    assert table["writes_vs_push"].iloc[0] == 1.0 and table["writes_vs_push"].iloc[1] == 0.0
    # A lower threshold pulls more authors, so it pushes fewer writes.
    assert table["fanout_writes"].iloc[2] <= table["fanout_writes"].iloc[3] <= table["fanout_writes"].iloc[0]


def test_visibility_delay_grows_with_fanout(celebrity_heavy):
    cost = CostModel()
    r = simulate(celebrity_heavy, "push", seed=3, duration=2.0, read_ratio=1.0, cost=cost)
    p = r.posts
    # No post is visible before it is stored and its pipelines could have run on all workers.
    work = p["batches"] * cost.fanout_batch_overhead + p["fanout_writes"] * cost.zadd
    lower = cost.post_write + work / cost.fanout_workers
    assert (p["visibility_delay"] >= lower - 1e-12).all()
    assert np.allclose(p.loc[p["fanout_writes"] == 0, "visibility_delay"], cost.post_write)
    big = p[p["fanout_writes"] >= 2_000]["visibility_delay"]
    tiny = p[p["fanout_writes"] <= 100]["visibility_delay"]
    assert len(big) and len(tiny)
    assert big.min() > tiny.max()
    assert p["fanout_writes"].rank().corr(p["visibility_delay"].rank()) > 0.5  # Spearman


def test_fewer_fanout_workers_delay_visibility(celebrity_heavy):
    kw = dict(seed=3, duration=1.0, read_ratio=1.0)
    many = simulate(celebrity_heavy, "push", cost=CostModel(fanout_workers=16), **kw).summary()
    one = simulate(celebrity_heavy, "push", cost=CostModel(fanout_workers=1), **kw).summary()
    assert one["visibility_max"].iloc[0] > 4 * many["visibility_max"].iloc[0]


def test_read_latency_reflects_pulls_and_queueing(runs):
    push, pull, hybrid = (runs[s].reads for s in ("push", "pull", "hybrid"))
    for reads in (push, pull, hybrid):
        assert (reads["latency"] >= reads["service"] - 1e-12).all()
    p99 = {s: runs[s].summary()["read_p99"].iloc[0] for s in runs}
    assert p99["push"] < p99["hybrid"] < p99["pull"]
    # A hybrid read pays for exactly the celebrity lists it pulls.
    cost = runs["hybrid"].cost
    expected = (
        cost.timeline_read + cost.celebrity_pull * hybrid["pulled"] + cost.merge_per_item * hybrid["items_merged"]
    )
    assert np.allclose(hybrid["service"], expected)


def test_too_few_read_workers_queue_reads(small):
    kw = dict(seed=7, duration=0.5)
    plenty = simulate(small, "push", cost=CostModel(read_workers=32), **kw).summary()
    starved = simulate(small, "push", cost=CostModel(read_workers=1), **kw).summary()
    assert starved["read_p99"].iloc[0] > 5 * plenty["read_p99"].iloc[0]


def test_cache_memory_counts_entries_and_respects_the_cap(runs, small):
    push, hybrid = runs["push"], runs["hybrid"]
    assert push.cache_bytes == push.timeline_entries * push.cost.bytes_per_entry
    assert push.summary()["cache_bytes"].iloc[0] == push.cache_bytes
    assert hybrid.cache_bytes < push.cache_bytes
    capped = simulate(small, "push", seed=7, duration=1.0, timeline_cap=1)
    assert capped.timeline_entries <= small.n_users
    assert capped.timeline_entries < push.timeline_entries


@pytest.mark.parametrize(
    "strategy, threshold, match",
    [("hybrid", None, "threshold"), ("hybrid", 0, "threshold"), ("fanout", None, "strategy")],
)
def test_bad_strategy_or_threshold_is_refused(small, strategy, threshold, match):
    with pytest.raises(ValueError, match=match):
        simulate(small, strategy, threshold, duration=0.1)


def test_bad_cost_model_names_the_field():
    with pytest.raises(ValueError, match="zadd"):
        CostModel(zadd=-1.0)
    with pytest.raises(ValueError, match="fanout_workers"):
        CostModel(fanout_workers=0)
    with pytest.raises(ValueError, match="read_ratio"):
        simulate(power_law_graph(100, 5, seed=1), "push", read_ratio=math.nan)
