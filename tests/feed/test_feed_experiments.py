"""Lab 03's experiments: the fan-out study over ``simulate.compare``, the reader's page through the
student seams, the seams' protocols, and the reference timeline write."""

from __future__ import annotations

import importlib
import inspect

import fakeredis
import numpy as np
import pandas as pd
import pytest

from lab_core.feed import experiments as ex
from lab_core.feed import grading, policy, protocol, ranker
from lab_core.feed.simulate import compare, simulate
from lab_core.feed.timeline import add_to_timeline, timeline_key

# The package re-exports a function named simulate; the module is what compare calls into.
simulate_module = importlib.import_module("lab_core.feed.simulate")
KW = {"duration": 0.5, "read_ratio": 5.0, "seed": 1}


@pytest.fixture(scope="module")
def g():
    return ex.graph(2_000, 10.0, 5.0, 1)


@pytest.fixture(scope="module")
def study(g):
    return ex.fanout_study(g, 100, **KW)


def test_study_is_compare_with_its_ratios(g, study):
    table = compare(g, [100], ("push", "pull"), **KW)
    pd.testing.assert_frame_equal(study.summary, table)
    assert list(study.sweep["strategy"]) == ["pull", "hybrid", "hybrid", "hybrid", "push"]
    assert list(study.sweep["threshold"])[1:4] == sorted(ex.SWEEP)
    assert study.row("hybrid")["threshold"] == 100 and study.row("yours") is None


def test_a_given_base_runs_only_hybrid_and_gives_the_same_numbers(g, study, monkeypatch):
    fresh = ex.fanout_study(g, 200, **KW)
    calls, heard = [], []
    real = simulate_module.simulate

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "simulate", counting)
    monkeypatch.setattr(simulate_module, "simulate", counting)
    again = ex.fanout_study(g, 200, base=study.base, progress=lambda *a: heard.append(a), **KW)
    assert calls == [("hybrid", 200)]
    assert heard[0] == (0, 1, "hybrid at 200") and heard[-1] == (1, 1, "done")
    pd.testing.assert_frame_equal(again.summary, fresh.summary)
    calls.clear()
    ex.fanout_study(g, 100, base=study.base, **KW)  # one of the sweep's: nothing to run
    assert calls == []


def test_with_yours_adds_a_row_with_ratios_to_push(g, study):
    def push_everyone(count, followers, active, threshold):
        return list(followers)

    mine = study.with_yours(ex.yours_run(g, 100, push_everyone, **KW))
    push, yours = mine.row("push"), mine.row("yours")
    assert yours["fanout_writes"] == push["fanout_writes"] and yours["writes_vs_push"] == pytest.approx(1.0)
    same = study.with_yours(ex.yours_run(g, 100, policy.fanout_targets, **KW)).row("yours")
    hybrid = study.row("hybrid")
    assert same["fanout_writes"] == hybrid["fanout_writes"] and same["read_p99"] == hybrid["read_p99"]


def test_simulate_and_compare_take_a_fanout_policy_and_report_progress(g):
    ref = simulate(g, "hybrid", 100, **KW).summary()
    pd.testing.assert_frame_equal(simulate(g, "hybrid", 100, fanout=policy.fanout_targets, **KW).summary(), ref)
    nobody = simulate(g, "hybrid", 100, fanout=lambda *a: [], **KW).summary()
    assert nobody["fanout_writes"].iloc[0] == 0 < ref["fanout_writes"].iloc[0]
    heard = []
    compare(g, [50], ("push",), progress=lambda *a: heard.append(a), **KW)
    assert heard == [(0, 2, "push"), (1, 2, "hybrid at 50"), (2, 2, "done")]


def test_reader_page_mixes_sources_and_keeps_the_cap(g):
    page = ex.reader_page(g, 100, timeline_cap=800, seed=1)
    counts = g.follower_counts()
    assert set(page["source"]) == {"push", "pull"} and len(page) == ex.PAGE
    assert all((counts[a] >= 100) == (s == "pull") for a, s in zip(page["author"], page["source"]))
    assert sorted(page["ranked"]) == list(range(1, ex.PAGE + 1))
    capped = ex.reader_page(g, 100, timeline_cap=10, seed=1)
    assert capped.attrs["timeline_entries"] == 10 < page.attrs["timeline_entries"]
    assert capped.attrs["viewer"] == page.attrs["viewer"]


def test_reader_page_goes_through_each_given_seam(g):
    ref = ex.reader_page(g, 100, timeline_cap=10, seed=1)
    same = ex.reader_page(
        g,
        100,
        timeline_cap=10,
        seed=1,
        merge_fn=policy.merge,
        timeline_write=add_to_timeline,
        features=ranker.features,
        ranker=ex.trained_ranker(ranker.features),
    )
    pd.testing.assert_frame_equal(same, ref)

    def never_trimmed(redis, user, post_id, created_at, length):
        redis.zadd(timeline_key(user), {f"{post_id:019d}": created_at})

    assert ex.reader_page(g, 100, timeline_cap=10, seed=1, timeline_write=never_trimmed).attrs["timeline_entries"] > 10

    def oldest_first(sources, *, limit, cursor=None):
        items = sorted({i.post_id: i for s in sources for i in s}.values(), key=lambda i: i.order)
        return policy.Page(items[:limit], None)

    old = ex.reader_page(g, 100, timeline_cap=10, seed=1, merge_fn=oldest_first)
    assert list(old["age_min"]) != list(ref["age_min"])

    def no_recency(item, viewer, stats):
        return np.array([0.0, *ranker.features(item, viewer, stats)[1:]])

    blind = ex.reader_page(g, 100, timeline_cap=10, seed=1, features=no_recency, ranker=ex.trained_ranker(no_recency))
    assert list(blind["post_id"]) == list(ref["post_id"]) and list(blind["ranked"]) != list(ref["ranked"])


def test_the_references_follow_their_protocols():
    pairs = [
        (protocol.FanoutPolicy, policy.fanout_targets),
        (protocol.Merge, policy.merge),
        (protocol.TimelineWrite, add_to_timeline),
        (protocol.Features, ranker.features),
    ]
    for seam, reference in pairs:
        want = list(inspect.signature(seam.__call__).parameters)[1:]
        got = list(inspect.signature(reference).parameters)
        assert got == want, (seam.__name__, got, want)


def test_the_reference_timeline_write_passes_the_notebooks_graders():
    grading.compare_timeline_write(add_to_timeline, max_examples=30)
    grading.check_timeline_transaction(add_to_timeline)
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    for post in range(1, 6):
        add_to_timeline(r, 9, post, float(post), 3)
    assert r.zrevrange(timeline_key(9), 0, -1) == [f"{p:019d}" for p in (5, 4, 3)]
