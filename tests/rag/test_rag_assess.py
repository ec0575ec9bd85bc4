"""Scoring a pipeline on labelled questions: section keys, the per-question table, its summary,
reranker training examples; and the shipped pipeline's scores on the demo questions."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_rag_retrieval import DOCS

from conftest import need
from lab_core.rag.assess import COLUMNS, assess, examples, ranked_sections, section_key, summary
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.corpus import LabelledQuestion, load_questions
from lab_core.rag.documents import Chunk
from lab_core.rag.embedding import HashEmbedder
from lab_core.rag.pipeline import RagPipeline
from lab_core.rag.retrieval import Hit

QUESTIONS = [
    LabelledQuestion("q1", "How does a token bucket handle a burst?", (("rate", "Token bucket"),), "saved tokens"),
    LabelledQuestion(
        "q2", "What does LRU eviction drop from the cache?", (("cache", "Eviction"),), "least recently used"
    ),
    LabelledQuestion("q3", "Who painted the Mona Lisa?", (), None),
]


def test_section_keys_and_ranked_sections_dedup():
    def h(cid, doc, section):
        return Hit(Chunk(cid, doc, "t", 0, 1, section=section), 0.0)

    hits = [h("a#0", "a", "S1"), h("b#0", "b", ""), h("a#1", "a", "S1"), h("a#2", "a", "S2"), h("b#1", "b", "")]
    assert section_key(hits[0].chunk) == "a § S1" and section_key(hits[1].chunk) == "b § "
    assert ranked_sections(hits) == ["a § S1", "b § ", "a § S2"]
    assert ranked_sections([]) == []


@pytest.fixture(scope="module")
def pipeline() -> RagPipeline:
    p = RagPipeline(HashEmbedder(256), ChunkConfig("recursive", 15, 0))
    p.answerer.min_score = 0.2
    p.ingest(DOCS)
    return p


def test_assess_table_on_small_corpus(pipeline):
    calls = []
    table = assess(pipeline, QUESTIONS, progress=lambda i, n: calls.append((i, n)))
    assert list(table.columns) == COLUMNS and list(table.id) == ["q1", "q2", "q3"]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    q1, q2, q3 = table.to_dict("records")
    assert q1["nDCG@10"] == 1.0 and q1["MRR"] == 1.0 and q1["Recall@10"] == 1.0  # the right section first
    assert q2["Recall@10"] == 1.0 and 0 < q2["nDCG@10"] <= 1
    assert math.isnan(q3["nDCG@10"]) and math.isnan(q3["MRR"]) and q3["should_refuse"] and q3["refused"]
    assert not q1["refused"] and not q1["should_refuse"] and q1["citation_support"] == 1.0
    assert (table.latency_ms > 0).all()
    retrieval_only = assess(pipeline, QUESTIONS, answer=False)
    assert not retrieval_only.refused.any() and retrieval_only.citation_support.isna().all()
    assert list(retrieval_only["nDCG@10"].fillna(-1)) == list(table["nDCG@10"].fillna(-1))


def test_summary_by_hand():
    table = pd.DataFrame(
        [
            {
                "id": "a",
                "question": "",
                "nDCG@10": 1.0,
                "Recall@10": 1.0,
                "MRR": 1.0,
                "refused": False,
                "should_refuse": False,
                "citation_support": 1.0,
                "latency_ms": 10.0,
            },
            {
                "id": "b",
                "question": "",
                "nDCG@10": 0.5,
                "Recall@10": 0.0,
                "MRR": 0.5,
                "refused": True,
                "should_refuse": False,
                "citation_support": 1.0,
                "latency_ms": 30.0,
            },
            {
                "id": "c",
                "question": "",
                "nDCG@10": float("nan"),
                "Recall@10": float("nan"),
                "MRR": float("nan"),
                "refused": False,
                "should_refuse": True,
                "citation_support": 0.5,
                "latency_ms": 20.0,
            },
        ],
        columns=COLUMNS,
    )
    s = summary(table)
    assert s == {
        "nDCG@10": 0.75,
        "Recall@10": 0.5,
        "MRR": 0.75,
        "refusal_accuracy": pytest.approx(1 / 3),
        "citation_support": 0.75,
        "latency_ms_p50": 20.0,
    }
    assert math.isnan(summary(table.assign(refused=True))["citation_support"])


def test_examples_mark_chunks_of_labelled_sections(pipeline):
    out = examples(pipeline, QUESTIONS, depth=10)
    assert [e.query for e in out] == [QUESTIONS[0].question, QUESTIONS[1].question]  # unanswerable skipped
    for ex, q in zip(out, QUESTIONS):
        assert 1 <= len(ex.hits) <= 10 and ex.relevant
        wanted = {f"{d} § {s}" for d, s in q.relevant}
        assert set(ex.relevant) == {h.chunk.chunk_id for h in ex.hits if section_key(h.chunk) in wanted}
        assert set(ex.relevant.values()) == {1}


@pytest.fixture(scope="module")
def demo_pipeline():
    need("tesseract", "the demo corpus includes an image that only OCR can read")
    from lab_core.rag.system import build_pipeline

    return build_pipeline()


@pytest.mark.slow
def test_demo_questions_score_well(demo_pipeline):
    questions = load_questions()
    table = assess(demo_pipeline, questions)
    s = summary(table)
    assert s["nDCG@10"] >= 0.9 and s["Recall@10"] >= 0.9 and s["MRR"] >= 0.9, s
    assert s["refusal_accuracy"] >= 0.9 and s["citation_support"] == 1.0, s
    plain = summary(assess(demo_pipeline, questions, rerank=False, answer=False))
    assert plain["nDCG@10"] >= 0.9, plain
