"""The synthetic social graph: CSR consistency, a heavy tail of followers, seeds, scale."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.feed.graph import SocialGraph, power_law_graph, top_share


@pytest.fixture(scope="module")
def graph() -> SocialGraph:
    return power_law_graph(10_000, 20, 2.1, seed=1)


def test_sizes_and_csr_shapes(graph):
    n = graph.n_users
    assert n == 10_000
    assert graph.follower_ptr.shape == graph.followee_ptr.shape == (n + 1,)
    assert graph.follower_ptr[0] == graph.followee_ptr[0] == 0
    assert graph.follower_ptr[-1] == graph.followee_ptr[-1] == graph.n_edges
    assert graph.follower_counts().sum() == graph.followee_counts().sum() == graph.n_edges
    # Duplicates and self-follows are dropped, so the mean is a little under mean_follows.
    assert 0.8 * 20 <= graph.n_edges / n <= 20
    assert graph.followee_counts().min() >= 1


def test_both_directions_hold_the_same_edges(graph):
    owner = np.repeat(np.arange(graph.n_users), graph.followee_counts())
    out_edges = set(zip(owner.tolist(), graph.followee_idx.tolist()))
    target = np.repeat(np.arange(graph.n_users), graph.follower_counts())
    in_edges = set(zip(graph.follower_idx.tolist(), target.tolist()))
    assert out_edges == in_edges
    assert len(out_edges) == graph.n_edges  # no duplicates
    assert all(a != b for a, b in out_edges)  # no self-follows
    u = int(np.argmax(graph.follower_counts()))
    assert all(u in set(graph.followees(int(f)).tolist()) for f in graph.followers(u)[:50])


def test_heavy_tail_top_one_percent_holds_a_large_share(graph):
    counts = graph.follower_counts()
    assert top_share(counts, 0.01) > 0.25  # uniform popularity would give ~1-2%
    assert counts.max() > 50 * np.median(counts)
    flat = power_law_graph(10_000, 20, 50.0, seed=1)  # exponent -> near-uniform popularity
    assert top_share(flat.follower_counts(), 0.01) < 0.05


def test_celebrity_boost_makes_the_head_heavier():
    plain = power_law_graph(5_000, 15, 2.1, seed=4)
    boosted = power_law_graph(5_000, 15, 2.1, seed=4, celebrity_boost=5)
    assert top_share(boosted.follower_counts(), 0.002) > top_share(plain.follower_counts(), 0.002) + 0.05


def test_same_seed_same_graph_other_seed_other_graph():
    a, b = power_law_graph(3_000, 10, 2.2, seed=9), power_law_graph(3_000, 10, 2.2, seed=9)
    c = power_law_graph(3_000, 10, 2.2, seed=10)
    assert np.array_equal(a.follower_idx, b.follower_idx) and np.array_equal(a.followee_ptr, b.followee_ptr)
    assert not np.array_equal(a.follower_counts(), c.follower_counts())


def test_celebrities_are_exactly_those_at_or_over_the_threshold(graph):
    counts = graph.follower_counts()
    cel = graph.celebrities(100)
    assert np.array_equal(cel, np.sort(cel))
    assert set(cel.tolist()) == {u for u in range(graph.n_users) if counts[u] >= 100}
    assert 0 < cel.size < graph.n_users // 20
    assert graph.celebrities(graph.n_users).size == 0
    with pytest.raises(ValueError, match="threshold"):
        graph.celebrities(0)


def test_pulled_followees_counts_celebrities_followed(graph):
    counts = graph.follower_counts()
    pulled = graph.pulled_followees(100)
    for u in (0, 17, 4242, 9999):
        assert pulled[u] == sum(1 for v in graph.followees(u) if counts[v] >= 100)
    assert np.array_equal(graph.pulled_followees(1), graph.followee_counts())


def test_from_edges_drops_self_follows_and_duplicates():
    g = SocialGraph.from_edges(4, np.array([0, 0, 1, 2, 2, 3]), np.array([1, 1, 1, 1, 3, 0]))
    assert g.n_edges == 4
    assert g.followers(1).tolist() == [0, 2]
    assert g.followees(2).tolist() == [1, 3]
    assert g.follower_counts().tolist() == [1, 2, 0, 1]
    with pytest.raises(ValueError, match="user ids"):
        SocialGraph.from_edges(2, np.array([0]), np.array([5]))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_users": 1}, "n_users"),
        ({"exponent": 1.0}, "exponent"),
        ({"mean_follows": 0.5}, "mean_follows"),
        ({"celebrity_boost": 0}, "celebrity_boost"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        power_law_graph(**{"n_users": 100, **kwargs})


def test_scales_to_a_hundred_thousand_users_and_a_million_edges():
    g = power_law_graph(100_000, 10, 2.1, seed=2)
    assert g.n_users == 100_000
    assert g.n_edges > 900_000
    assert g.follower_counts().max() > 10_000  # celebrities with 10^4+ followers at this scale
