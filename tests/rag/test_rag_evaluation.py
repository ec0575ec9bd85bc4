"""Ranking metrics against pytrec_eval and by hand; the BEIR loader on small files and on scifact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import need
from lab_core.rag.evaluation import (
    evaluate,
    load_beir,
    mrr,
    ndcg_at_k,
    per_query,
    precision_at_k,
    recall_at_k,
)

DOC_POOL = [f"d{i}" for i in range(30)]


@st.composite
def runs_and_qrels(draw) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """Up to 6 queries, each judged on some pool documents (graded 0-2) and ranked over a sample of the pool."""
    qrels, run = {}, {}
    for q in range(draw(st.integers(1, 6))):
        judged = draw(st.lists(st.sampled_from(DOC_POOL), min_size=1, max_size=12, unique=True))
        qrels[f"q{q}"] = {d: draw(st.integers(0, 2)) for d in judged}
        if draw(st.booleans()) or q == 0:
            run[f"q{q}"] = draw(st.permutations(DOC_POOL))[: draw(st.integers(0, len(DOC_POOL)))]
    return run, qrels


@settings(max_examples=200, deadline=None)
@given(runs_and_qrels())
def test_metrics_match_pytrec_eval(data) -> None:
    run, qrels = data
    # Distinct descending scores, so pytrec_eval's tie-breaking (docid descending) never applies.
    scored = {q: {d: float(len(ranked) - i) for i, d in enumerate(ranked)} for q, ranked in run.items() if ranked}
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100", "recip_rank", "P_10"}).evaluate(
        scored
    )
    for qid, expected in reference.items():
        ranked, relevant = run[qid], qrels[qid]
        assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)
        assert recall_at_k(ranked, relevant, 100) == pytest.approx(expected["recall_100"], abs=1e-9)
        assert mrr(ranked, relevant) == pytest.approx(expected["recip_rank"], abs=1e-9)
        assert precision_at_k(ranked, relevant, 10) == pytest.approx(expected["P_10"], abs=1e-9)


def test_ndcg_by_hand() -> None:
    relevant = {"a": 1, "b": 1}
    # Relevant at ranks 1 and 3 of 2 relevant: gains 1/log2(2) + 1/log2(4) against ideal 1/log2(2) + 1/log2(3).
    assert ndcg_at_k(["a", "x", "b"], relevant) == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["a", "b"], relevant) == 1.0
    # Graded: the grade-2 document belongs first.
    graded = {"a": 2, "b": 1}
    assert ndcg_at_k(["b", "a"], graded) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["x", "a"], relevant, k=1) == 0.0  # the cut-off hides rank 2
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0 and ndcg_at_k([], relevant) == 0.0


def test_recall_precision_mrr_by_hand() -> None:
    ranked, relevant = ["x", "a", "y", "b", "z"], {"a": 1, "b": 2, "c": 1, "x": 0}
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 100) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, relevant, 4) == 0.5
    assert precision_at_k(ranked, relevant, 10) == 0.2  # a short list still divides by k
    assert mrr(ranked, relevant) == 0.5 and mrr(ranked, relevant, k=1) == 0.0
    assert recall_at_k(ranked, {}, 10) == 0.0 and mrr([], relevant) == 0.0


@pytest.mark.parametrize("metric", [ndcg_at_k, recall_at_k, precision_at_k, mrr])
def test_k_must_be_positive_and_ids_unique(metric) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        metric(["a"], {"a": 1}, 0)
    with pytest.raises(ValueError, match="twice"):
        metric(["a", "a"], {"a": 1}, 10)


def test_evaluate_averages_over_qrels_and_missing_runs_score_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": ["a", "x"], "q3": ["b"]}  # q2 has no run; q3 has no qrels and is ignored
    figures = evaluate(run, qrels, ks=(1, 10))
    assert set(figures) == {f"{m}@{k}" for m in ("nDCG", "Recall", "P", "MRR") for k in (1, 10)}
    assert figures["nDCG@10"] == 0.5 and figures["Recall@1"] == 0.5 and figures["MRR@10"] == 0.5
    assert figures["P@10"] == pytest.approx(0.05)
    assert per_query(run, qrels, "nDCG", 10) == {"q1": 1.0, "q2": 0.0}
    with pytest.raises(ValueError, match="unknown metric 'AP'"):
        per_query(run, qrels, "AP", 10)
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate(run, qrels, ks=(0,))
    with pytest.raises(ValueError, match="empty"):
        evaluate(run, {})


def write_beir(folder: Path, qrels_text: str, corpus_lines: list[str] | None = None, newline: str = "\n") -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = corpus_lines or [
        json.dumps({"_id": "d1", "title": "T1", "text": "one"}),
        json.dumps({"_id": 2, "text": "two, untitled"}),
    ]
    queries = [json.dumps({"_id": "q1", "text": "first?"}), json.dumps({"_id": "q2", "text": "unjudged"})]
    (folder / "corpus.jsonl").write_bytes(newline.join(corpus).encode() + newline.encode())
    (folder / "queries.jsonl").write_bytes(newline.join(queries).encode())
    (folder / "qrels" / "train.tsv").write_bytes(qrels_text.replace("\n", newline).encode())
    return folder


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore\n", ""])
def test_load_beir_small_files(tmp_path: Path, newline: str, header: str) -> None:
    data = load_beir(write_beir(tmp_path, header + "q1\td1\t1\nq1\t2\t2\n\n", newline=newline))
    assert data.corpus == {"d1": ("T1", "one"), "2": ("", "two, untitled")}
    assert data.queries == {"q1": "first?"}  # q2 has no judgments in this split
    assert data.qrels == {"q1": {"d1": 1, "2": 2}}


def test_load_beir_names_the_bad_line(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "a", "q1\td1\t1\n", [json.dumps({"_id": "d1", "text": "x"}), "{not json"])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: not valid JSON"):
        load_beir(folder)
    folder = write_beir(tmp_path / "b", "q1\td1\t1\n", [json.dumps({"_id": "d1", "title": "no text"})])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:1: expected a JSON object"):
        load_beir(folder)
    folder = write_beir(tmp_path / "c", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d1 1\n")
    with pytest.raises(ValueError, match=r"train\.tsv:3: expected 3 tab-separated fields, got 1"):
        load_beir(folder)
    folder = write_beir(tmp_path / "d", "q1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(ValueError, match=r"train\.tsv:2: score 'high'"):
        load_beir(folder)


def test_load_beir_names_the_missing_file(tmp_path: Path) -> None:
    folder = write_beir(tmp_path, "q1\td1\t1\n")
    with pytest.raises(FileNotFoundError, match=r"qrels/test\.tsv"):
        load_beir(folder, split="test")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl"):
        load_beir(folder)


def test_load_beir_scifact(shared_data: Path) -> None:
    data = load_beir(Path(need(shared_data / "scifact", "the BEIR scifact set checks the loader's counts")))
    assert len(data.corpus) == 5183 and len(data.queries) == 809
    assert sum(len(judged) for judged in data.qrels.values()) == 919
    assert set(data.queries) == set(data.qrels)
