"""Rank fusion: reciprocal rank fusion by hand, ties, validation; the min-max weighted sum."""

from __future__ import annotations

import pytest

from lab_core.rag.fusion import min_max, rrf, weighted_sum


def test_rrf_hand_example():
    fused = dict(rrf([["a", "b", "c"], ["x", "y", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert fused["b"] == pytest.approx(1 / 62) and fused["y"] == pytest.approx(1 / 62)
    assert [d for d, _ in rrf([["a", "b", "c"], ["x", "y", "a"]], k=60)] == ["a", "x", "b", "y", "c"]
    assert rrf([["a", "b"], ["b", "a"], ["b"]], k=0) == [
        ("b", pytest.approx(1 / 2 + 1 + 1)),
        ("a", pytest.approx(1 + 1 / 2)),
    ]
    assert rrf([]) == [] and rrf([[], []]) == []


def test_rrf_ties_keep_first_appearance():
    assert [d for d, _ in rrf([["p", "q"], ["q", "p"]])] == ["p", "q"]
    assert [d for d, _ in rrf([["q", "p"], ["p", "q"]])] == ["q", "p"]
    assert [d for d, _ in rrf([["a"], ["b"], ["c"]])] == ["a", "b", "c"]


@pytest.mark.parametrize("k", [-1, -0.5, "60", None, True])
def test_rrf_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        rrf([["a"]], k=k)


def test_min_max():
    assert min_max([("a", 3.0), ("b", 1.0), ("c", 2.0)]) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max([("a", 5.0), ("b", 5.0)]) == {"a": 1.0, "b": 1.0}
    assert min_max([]) == {}


def test_weighted_sum_scales_and_handles_missing_docs():
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    sparse = [("c", 12.0), ("d", 6.0), ("a", 0.0)]
    fused = dict(weighted_sum(dense, sparse, 0.5))
    assert fused == pytest.approx(
        {"a": 0.5 * 1.0 + 0.5 * 0.0, "b": 0.5 * 0.5, "c": 0.5 * 0.0 + 0.5 * 1.0, "d": 0.5 * 0.5}
    )
    ordered = weighted_sum(dense, sparse, 0.5)
    assert [d for d, _ in ordered] == ["a", "c", "b", "d"]  # ties in first appearance, dense list first
    fused = dict(weighted_sum(dense, sparse, 0.8))
    assert fused["b"] == pytest.approx(0.8 * 0.5) and fused["d"] == pytest.approx(0.2 * 0.5)
    assert weighted_sum([], [], 0.3) == []
    assert weighted_sum([], [("x", 2.0)], 0.3) == [("x", pytest.approx(0.7))]


def test_weight_one_is_dense_order_and_zero_is_sparse_order():
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.4), ("d", 0.2)]
    sparse = [("d", 9.0), ("e", 5.0), ("b", 3.0), ("f", 1.0)]
    ones = [d for d, _ in weighted_sum(dense, sparse, 1.0)]
    assert ones[:4] == ["a", "b", "c", "d"]
    zeros = [d for d, _ in weighted_sum(dense, sparse, 0.0)]
    assert zeros[:3] == ["d", "e", "b"] and [d for d in zeros if d in dict(sparse)] == ["d", "e", "b", "f"]


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_weighted_sum_rejects_bad_weight(weight):
    with pytest.raises(ValueError, match="weight must be between 0 and 1"):
        weighted_sum([("a", 1.0)], [("a", 1.0)], weight)
