"""The feed ranker: the features seam, simulated engagement, deterministic training, held-out quality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab_core.feed.policy import FeedItem
from lab_core.feed.ranker import (
    EVAL_COLUMNS,
    FEATURE_NAMES,
    NUM_FEATURES,
    EngagementStats,
    Ranker,
    auc,
    evaluate,
    feature_matrix,
    features,
    ndcg_at_k,
    simulate_engagement,
    split,
    train,
)


@pytest.fixture(scope="module")
def data():
    return simulate_engagement(400, 50, seed=1)


@pytest.fixture(scope="module")
def halves(data):
    return split(data, 0.3, seed=2)


@pytest.fixture(scope="module")
def ranker(halves):
    return train(halves[0], seed=0)


STATS = EngagementStats(
    now=10_000.0,
    likes={1: 9, 2: 0},
    replies={1: 3},
    interactions={(7, 100): 4},
    half_life=3600.0,
)


def test_features_have_the_documented_order_shape_and_values():
    assert FEATURE_NAMES == ("recency", "likes", "replies", "affinity") and NUM_FEATURES == 4
    x = features(FeedItem(1, 100, 10_000.0 - 3600.0), 7, STATS)
    assert x.shape == (NUM_FEATURES,) and x.dtype == np.float64
    assert x == pytest.approx([0.5, math.log1p(9), math.log1p(3), math.log1p(4)])
    # Unknown post, unknown pair, brand-new post: zeros and full recency.
    assert features(FeedItem(3, 5, 10_000.0), 7, STATS).tolist() == [1.0, 0.0, 0.0, 0.0]
    # Affinity is per viewer: another viewer of the same author has none.
    assert features(FeedItem(1, 100, 0.0), 8, STATS)[3] == 0.0
    # A post stamped after `now` (clock skew) counts as brand new, never above 1.
    assert features(FeedItem(2, 5, 20_000.0), 7, STATS)[0] == 1.0


def test_features_are_pure_and_deterministic():
    item = FeedItem(1, 100, 5_000.0)
    a, b = features(item, 7, STATS), features(item, 7, STATS)
    assert np.array_equal(a, b)
    assert STATS.likes == {1: 9, 2: 0}  # inputs untouched
    older = features(FeedItem(1, 100, 1_000.0), 7, STATS)
    assert older[0] < a[0]  # recency falls with age


def test_simulated_data_rows_are_the_features_seam(data):
    assert data.X.shape == (len(data), NUM_FEATURES)
    assert set(np.unique(data.y).tolist()) == {0.0, 1.0}
    assert 0.05 < data.y.mean() < 0.5
    for i in (0, 123, len(data) - 1):
        assert np.array_equal(data.X[i], features(data.items[i], int(data.viewers[i]), data.stats))
    again = simulate_engagement(400, 50, seed=1)
    assert np.array_equal(again.X, data.X) and np.array_equal(again.y, data.y)
    other = simulate_engagement(400, 50, seed=3)
    assert not np.array_equal(other.y, data.y)


def test_split_holds_out_whole_viewers(data, halves):
    train_part, test_part = halves
    assert len(train_part) + len(test_part) == len(data)
    assert not set(train_part.viewers.tolist()) & set(test_part.viewers.tolist())
    assert len(np.unique(test_part.viewers)) == 120  # 30% of 400


def test_learned_ranker_beats_recency_on_held_out_engagement(ranker, halves):
    table = evaluate(ranker, halves[1], k=10)
    assert list(table.columns) == EVAL_COLUMNS
    by = table.set_index("model")
    assert by.loc["learned", "auc"] >= by.loc["recency", "auc"] + 0.10
    assert by.loc["learned", "ndcg"] >= by.loc["recency", "ndcg"] + 0.15
    assert by.loc["learned", "auc"] > 0.75
    # Every true weight is positive, and a fitted model recovers the signs.
    assert (ranker.weights > 0).all()


def test_training_is_deterministic_and_learns(halves, ranker):
    again = train(halves[0], seed=0)
    assert np.array_equal(again.weights, ranker.weights) and again.bias == ranker.bias
    assert again.losses == ranker.losses
    assert ranker.losses[-1] < ranker.losses[0]
    other = train(halves[0], seed=1)
    assert not np.array_equal(other.weights, ranker.weights)


def test_rank_orders_by_score_and_prefers_affinity(ranker):
    stats = EngagementStats(now=1_000.0, interactions={(7, 100): 20})
    close = FeedItem(1, 100, 500.0)
    stranger = FeedItem(2, 200, 500.0)
    fresh_stranger = FeedItem(3, 300, 999.0)
    ranked = ranker.rank([stranger, fresh_stranger, close], 7, stats)
    assert ranked[0] == close
    assert ranked.index(fresh_stranger) < ranked.index(stranger)
    scores = ranker.score(ranked, 7, stats)
    assert (np.diff(scores) <= 0).all()
    assert ranker.probability([close], 7, stats)[0] == pytest.approx(1 / (1 + math.exp(-scores[0])))


def test_score_features_matches_score_and_rejects_bad_shapes(ranker, halves):
    part = halves[1]
    rows = np.flatnonzero(part.viewers == part.viewers[0])
    items = [part.items[i] for i in rows]
    assert np.allclose(ranker.score(items, int(part.viewers[0]), part.stats), ranker.score_features(part.X[rows]))
    with pytest.raises(ValueError, match="shape"):
        ranker.score_features(np.zeros((3, NUM_FEATURES + 1)))
    assert feature_matrix([], 1, STATS).shape == (0, NUM_FEATURES)


def test_auc_and_ndcg_on_known_cases():
    y = np.array([0, 0, 1, 1])
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert auc(np.zeros(4), y) == 0.5
    assert math.isnan(auc(np.ones(3), np.ones(3)))
    groups = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([1, 0, 0, 0, 0, 1])
    perfect = np.array([3, 2, 1, 1, 2, 3])
    assert ndcg_at_k(perfect, labels, groups, k=2) == 1.0
    worst = np.array([1, 2, 3, 3, 2, 1])
    assert ndcg_at_k(worst, labels, groups, k=3) == pytest.approx(0.5)  # 1/log2(4)
    assert ndcg_at_k(worst, labels, groups, k=2) == 0.0


def test_ranker_is_a_plain_value():
    r = Ranker(weights=np.ones(NUM_FEATURES), bias=0.0, mean=np.zeros(NUM_FEATURES), std=np.ones(NUM_FEATURES))
    assert r.score_features(np.eye(NUM_FEATURES)).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_hook_plugs_into_the_service_signature(ranker):
    stats = EngagementStats(now=1_000.0, interactions={(7, 100): 20})
    items = [FeedItem(2, 200, 500.0), FeedItem(1, 100, 500.0)]
    hook = ranker.hook(stats)
    assert hook(7, list(items)) == ranker.rank(items, 7, stats)
    assert hook(7, list(items))[0].post_id == 1
    fresh = ranker.hook(lambda: stats)
    assert fresh(7, list(items)) == hook(7, list(items))
