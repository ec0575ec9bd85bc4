"""The faiss-backed vector index: add/search/delete/compact for every kind, save/load that refuses
another vector space, errors that change nothing, and approximate recall against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.rag.vectordb import IndexConfig, IndexMismatch, VectorIndex

KINDS = ["flat", "ivf", "hnsw"]
DIM = 32


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(7)
    return [f"c{i}" for i in range(300)], unit(rng.normal(size=(300, DIM)))


def build(kind: str, ids, vectors) -> VectorIndex:
    index = VectorIndex("model-a", DIM, IndexConfig(kind=kind))
    index.add(ids, vectors)
    return index


@pytest.mark.parametrize("kind", KINDS)
def test_search_finds_each_vector_itself_first(kind, data):
    ids, vectors = data
    index = build(kind, ids[:150], vectors[:150])
    index.add(ids[150:], vectors[150:])  # incremental add
    assert len(index) == 300 and "c7" in index and "zzz" not in index
    results = index.search(vectors[::10], k=5)
    for i, hits in zip(range(0, 300, 10), results):
        assert hits[0][0] == ids[i] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 5 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    np.testing.assert_array_equal(index.vector("c3"), vectors[3])
    assert index.search(vectors[0], k=1000)[0][0][0] == "c0"  # k above the size is fine
    if kind != "hnsw":  # HNSW is approximate: a search for k >= n need not reach every node
        assert len(index.search(vectors[0], k=1000)[0]) == 300


@pytest.mark.parametrize("kind", KINDS)
def test_delete_removes_and_compact_keeps_results(kind, data):
    ids, vectors = data
    index = build(kind, ids, vectors)
    gone = ids[:100:2]
    index.delete(gone)
    assert len(index) == 250 and "c0" not in index and "c1" in index
    results = index.search(vectors[:100], k=10)
    for i, hits in enumerate(results):
        assert not {h for h, _ in hits} & set(gone)
        assert len(hits) == 10
        if i % 2:
            assert hits[0][0] == ids[i]
    index.compact()
    assert len(index) == 250
    after = index.search(vectors[:100], k=10)
    if kind == "flat":
        assert after == results
    for i, hits in enumerate(after):
        assert not {h for h, _ in hits} & set(gone)
        if i % 2:
            assert hits[0][0] == ids[i]
    index.add(["c0"], vectors[:1])  # a deleted id can come back
    assert index.search(vectors[0], k=1)[0][0][0] == "c0"


def test_empty_index_and_bad_queries():
    index = VectorIndex("m", DIM)
    assert index.search(np.ones((2, DIM), np.float32), 3) == [[], []]
    with pytest.raises(ValueError, match="dimension 5"):
        index.search(np.ones(5, np.float32), 3)
    for k in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            index.search(np.ones(DIM, np.float32), k)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_add_and_delete_change_nothing(kind, data):
    ids, vectors = data
    index = build(kind, ids[:50], vectors[:50])
    before = index.search(vectors[:5], 5)
    with pytest.raises(ValueError, match="expected 2 vectors of dimension 32"):
        index.add(["n1", "n2"], vectors[:3])
    with pytest.raises(ValueError, match="expected 1 vectors of dimension 32"):
        index.add(["n1"], np.ones((1, 16), np.float32))
    with pytest.raises(ValueError, match="'c3' is already in the index"):
        index.add(["n1", "c3"], vectors[60:62])
    with pytest.raises(ValueError, match="'n1' is already in the index"):
        index.add(["n1", "n1"], vectors[60:62])
    with pytest.raises(KeyError, match="'nope'"):
        index.delete(["c1", "nope"])
    assert len(index) == 50 and "n1" not in index and "c1" in index
    assert index.search(vectors[:5], 5) == before


@pytest.mark.parametrize("kind", KINDS)
def test_delete_with_a_repeated_id(kind, data):
    """Deleting ["c1", "c1"] either removes c1 once or raises with nothing removed; either way the
    index's length, membership and search results must agree."""
    ids, vectors = data
    index = build(kind, ids[:20], vectors[:20])
    try:
        index.delete(["c1", "c1"])
    except KeyError:
        assert len(index) == 20 and "c1" in index
        assert index.search(vectors[1], 1)[0][0][0] == "c1"
    else:
        assert len(index) == 19 and "c1" not in index
        assert "c1" not in {h for h, _ in index.search(vectors[1], 20)[0]}


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, data, tmp_path):
    ids, vectors = data
    index = build(kind, ids, vectors)
    index.delete(ids[:30])
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", "model-a", DIM)
    assert loaded.config == index.config and len(loaded) == 270 and "c0" not in loaded
    queries = vectors[::7]
    expected, got = index.search(queries, 10), loaded.search(queries, 10)
    if kind == "hnsw":  # the graph is rebuilt; the exact top result and its score must agree
        assert [h[0][0] for h in got] == [h[0][0] for h in expected]
        # The rebuilt graph may sum the same distance in another order: equal to float32 rounding.
        np.testing.assert_allclose([h[0][1] for h in got], [h[0][1] for h in expected], rtol=1e-5)
        assert np.mean([len({a for a, _ in x} & {a for a, _ in y}) / 10 for x, y in zip(got, expected)]) >= 0.95
    else:
        assert [[a for a, _ in h] for h in got] == [[a for a, _ in h] for h in expected]
        np.testing.assert_allclose([[s for _, s in h] for h in got], [[s for _, s in h] for h in expected], atol=1e-6)


def test_load_refuses_another_space_and_reports_missing(data, tmp_path):
    ids, vectors = data
    build("flat", ids[:10], vectors[:10]).save(tmp_path / "idx")
    with pytest.raises(IndexMismatch) as info:
        VectorIndex.load(tmp_path / "idx", "model-b", DIM)
    assert "model-a" in str(info.value) and "model-b" in str(info.value)
    with pytest.raises(IndexMismatch) as info:
        VectorIndex.load(tmp_path / "idx", "model-a", 64)
    assert "32 dimensions" in str(info.value) and "64 dimensions" in str(info.value)
    assert issubclass(IndexMismatch, ValueError)
    with pytest.raises(FileNotFoundError, match="no saved vector index"):
        VectorIndex.load(tmp_path / "nothing", "model-a", DIM)


def test_index_config_validation():
    with pytest.raises(ValueError, match="kind must be"):
        IndexConfig(kind="annoy")  # type: ignore[arg-type]
    for field in ("nlist", "nprobe", "m", "ef_construction", "ef_search"):
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match=f"^{field} must"):
                IndexConfig(**{field: bad})


def recall_at_10(index: VectorIndex, exact: VectorIndex, queries: np.ndarray) -> float:
    got, want = index.search(queries, 10), exact.search(queries, 10)
    return float(np.mean([len({a for a, _ in g} & {a for a, _ in w}) / 10 for g, w in zip(got, want)]))


def test_approximate_recall_against_flat():
    """HNSW at its defaults finds the true top 10 on random unit vectors. IVF on uniformly random
    vectors (no clusters) needs more probes: at nprobe=8 of 51 lists its recall is
    about 0.5, so it is measured at nprobe=32 there, and at its defaults on clustered vectors."""
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(2000)]
    x, q = unit(rng.normal(size=(2000, 64))), unit(rng.normal(size=(100, 64)))
    centres = unit(rng.normal(size=(32, 64)))
    xc = unit(centres[rng.integers(0, 32, 2000)] + 0.05 * rng.normal(size=(2000, 64)))
    qc = unit(centres[rng.integers(0, 32, 100)] + 0.05 * rng.normal(size=(100, 64)))
    for points, queries, configs in [
        (x, q, [IndexConfig("hnsw"), IndexConfig("ivf", nprobe=32)]),
        (xc, qc, [IndexConfig("hnsw"), IndexConfig("ivf")]),
    ]:
        exact = VectorIndex("m", 64)
        exact.add(ids, points)
        for config in configs:
            index = VectorIndex("m", 64, config)
            index.add(ids, points)
            assert recall_at_10(index, exact, queries) >= 0.9, config
