"""The learned linear reranker: features, fitting on synthetic data, save/load, cross-validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab_core.rag.documents import Chunk
from lab_core.rag.rerank import (
    DEFAULT_PATH,
    FEATURES,
    Example,
    LinearReranker,
    cross_validate,
    default_reranker,
    features,
    fit,
)
from lab_core.rag.retrieval import Hit


def hit(cid: str, text: str = "filler words here", title: str = "", **kw) -> Hit:
    return Hit(Chunk(cid, cid.split("#")[0], text, 0, len(text), title=title), kw.pop("score", 0.0), **kw)


def test_features_by_hand():
    hits = [
        hit("a#0", "A token bucket refills steadily.", "Token", dense=0.5, sparse=2.0, dense_rank=1, sparse_rank=3),
        hit("b#0", "Rings of servers.", "", dense=-0.2, sparse=4.0, dense_rank=0, sparse_rank=1),
    ]
    x = features("the token bucket", hits)
    assert x.shape == (2, len(FEATURES)) == (2, 7)
    np.testing.assert_allclose(x[0], [0.5, 0.5, 1 / 2, 1 / 4, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(x[1], [-0.2, 1.0, 0.0, 1 / 2, 0.0, 0.0, 0.0])
    assert features("query", []).shape == (0, 7)
    assert np.all(features("the of", hits)[:, 4:] == 0)  # a query of stopwords covers nothing
    assert np.all(features("token", [hit("c#0", sparse=0.0)])[:, 1] == 0)  # no BM25 anywhere: no division by zero


def test_feature_ranges_on_random_hits():
    rng = np.random.default_rng(1)
    words = ["token", "bucket", "ring", "cache", "queue", "shard", "burst"]
    hits = [
        hit(
            f"d{i}#0",
            " ".join(rng.choice(words, 6)),
            " ".join(rng.choice(words, 2)),
            dense=float(rng.uniform(-1, 1)),
            sparse=float(rng.uniform(0, 9)),
            dense_rank=int(rng.integers(0, 20)),
            sparse_rank=int(rng.integers(0, 20)),
        )
        for i in range(40)
    ]
    x = features("token bucket burst cache", hits)
    assert np.all((-1 <= x[:, 0]) & (x[:, 0] <= 1))
    assert np.all((0 <= x[:, 1:]) & (x[:, 1:] <= 1)) and x[:, 1].max() == 1.0
    assert np.all(x[:, 2:4] <= 0.5)


def synthetic_examples(n_queries: int = 12, seed: int = 3) -> list[Example]:
    """BM25 separates relevant from non-relevant; cosine is noise and misleads slightly."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n_queries):
        hits, relevant = [], {}
        for i in range(10):
            good = i % 4 == 0
            cid = f"q{q}d{i}#0"
            hits.append(
                hit(
                    cid,
                    dense=float(rng.uniform(0.2, 0.6) - (0.1 if good else 0)),
                    sparse=float(rng.uniform(6, 9) if good else rng.uniform(0, 4)),
                )
            )
            if good:
                relevant[cid] = 1
        rng.shuffle(hits)
        out.append(Example(f"unrelated query {q}", tuple(hits), relevant))
    return out


def test_fit_learns_the_separating_feature_and_ranks_relevant_first():
    examples = synthetic_examples()
    reranker = fit(examples)
    w = dict(zip(FEATURES, reranker.weights))
    assert w["bm25_scaled"] > 0 and w["bm25_scaled"] > abs(w["cosine"])
    assert fit(examples).weights == reranker.weights  # deterministic
    for ex in synthetic_examples(5, seed=99):  # and it generalises to new queries
        ranked = reranker(ex.query, ex.hits)
        n = len(ex.relevant)
        assert {h.chunk.chunk_id for h in ranked[:n]} == set(ex.relevant)
        assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    with pytest.raises(ValueError, match="nothing to fit"):
        fit([Example("q", (hit("a#0"), hit("b#0")), {})])
    with pytest.raises(ValueError, match="nothing to fit"):
        fit([])


def test_linear_reranker_reorders_only_the_head():
    r = LinearReranker((0, 1, 0, 0, 0, 0, 0), depth=3)
    hits = [hit(f"d{i}#0", sparse=float(s)) for i, s in enumerate([1, 3, 2, 9, 0])]
    out = r("q", hits)
    assert [h.chunk.chunk_id for h in out] == ["d1#0", "d2#0", "d0#0", "d3#0", "d4#0"]
    assert [h.score for h in out[:3]] == pytest.approx([3 / 3, 2 / 3, 1 / 3])
    assert out[3:] == hits[3:] and r("q", []) == []
    with pytest.raises(ValueError, match="weights must have 7 entries"):
        LinearReranker((1.0, 2.0))


def test_save_load_round_trip_and_refuse_other_features(tmp_path):
    r = LinearReranker(tuple(np.linspace(-1, 1, 7)), depth=20)
    r.save(tmp_path / "r.json")
    assert LinearReranker.load(tmp_path / "r.json") == r
    data = json.loads((tmp_path / "r.json").read_text())
    data["features"] = data["features"][:-1] + ["something_else"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="fitted on features"):
        LinearReranker.load(tmp_path / "bad.json")


def test_cross_validate_assigns_folds_by_position():
    examples = synthetic_examples(7)
    result = cross_validate(examples, folds=3)
    assert [f for f, _ in result] == [0, 1, 2, 0, 1, 2, 0]
    for fold in range(3):
        expected = fit([e for i, e in enumerate(examples) if i % 3 != fold])
        assert all(m == expected for f, m in result if f == fold)
    assert result[0][1] != result[1][1]
    with pytest.raises(ValueError, match="folds must be >= 2"):
        cross_validate(examples, folds=1)


def test_shipped_default_reranker_loads():
    r = default_reranker()
    assert DEFAULT_PATH.name == "reranker.json" and len(r.weights) == len(FEATURES) and r.depth >= 1
    assert all(np.isfinite(r.weights))
