"""What the RAG dashboard runs, without the dashboard: pipelines kept per chunking, the lists and stages
each retrieval setting produces, a configured copy that leaves its base alone, the evaluation sweep and
its progress reports. The hash embedder keeps them fast."""

from __future__ import annotations

import pytest

from lab_core.rag.answer import cite
from lab_core.rag.assess import assess, summary
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.experiments import (
    DEFAULT_CHUNKING,
    FAST_QUESTIONS,
    LIST_COLUMNS,
    SNIPPET_CHARS,
    SOURCE_COLUMNS,
    Pipelines,
    Setting,
    ask,
    chunk_config,
    chunking_label,
    evaluate,
    evaluation_questions,
    list_heading,
    reference_chunker,
    sources,
    sweep,
)
from lab_core.rag.fusion import rrf
from lab_core.rag.rerank import default_reranker
from lab_core.rag.system import demo_documents

QUESTION = "Why does a fixed window counter let a client send twice its limit?"
RERANKER = default_reranker()


@pytest.fixture(scope="module")
def pipelines() -> Pipelines:
    return Pipelines("hash")


def test_pipelines_are_built_once_per_chunking_with_progress(pipelines):
    reports: list[tuple[int, int, str]] = []
    first, seconds = pipelines.get(ChunkConfig("fixed", 90, 10), lambda *r: reports.append(r))
    assert seconds > 0 and reports[0] == (0, 1, "embedding chunks") and reports[-1] == (1, 1, "embedding chunks")
    again, seconds = pipelines.get(ChunkConfig("fixed", 90, 10), lambda *r: reports.append(r))
    assert again is first and seconds == 0.0


def test_chunk_config_counts_sentences_and_keeps_overlap_below_size():
    assert chunk_config("recursive", 200, 40) == DEFAULT_CHUNKING
    assert chunk_config("fixed", 50, 80) == ChunkConfig("fixed", 50, 49)
    assert chunk_config("sentences", 170, 34) == ChunkConfig("sentences", 10, 2)
    assert chunking_label(ChunkConfig("sentences", 10, 2)) == "sentences, 10 sentences, overlap 2"
    doc = demo_documents()[0]
    assert reference_chunker(doc) == DEFAULT_CHUNKING.chunker()(doc)


@pytest.mark.parametrize(
    ("mode", "reranked", "lists", "stages"),
    [
        (
            "hybrid",
            True,
            ["bm25", "dense", "fused", "reranked"],
            ["embed", "dense", "bm25", "fuse", "rerank", "answer"],
        ),
        ("hybrid", False, ["bm25", "dense", "fused"], ["embed", "dense", "bm25", "fuse", "answer"]),
        ("dense", True, ["dense", "reranked"], ["embed", "dense", "rerank", "answer"]),
        ("bm25", True, ["bm25", "reranked"], ["bm25", "rerank", "answer"]),
        ("bm25", False, ["bm25"], ["bm25", "answer"]),
    ],
)
def test_a_setting_shows_the_lists_and_stages_it_runs(pipelines, mode, reranked, lists, stages):
    setting = Setting(mode, reranker=RERANKER if reranked else None)
    asked = ask(pipelines, DEFAULT_CHUNKING, QUESTION, setting, k=4)
    assert list(asked.lists) == lists == list(setting.lists())
    assert list(asked.timings["stage"]) == stages == list(setting.stages())
    for table in asked.lists.values():
        assert list(table.columns) == LIST_COLUMNS and list(table["rank"]) == [1, 2, 3, 4]
    cited = {c.chunk_id: c.n for c in asked.result.answer.citations}
    assert asked.cited == cited and asked.setting is setting
    final = asked.lists[lists[-1]]
    assert dict(zip(final["chunk_id"], final["cited"])) == {c: cited.get(c, 0) for c in final["chunk_id"]}
    assert asked.chunks > 0 and asked.query_seconds > 0


def test_each_list_is_titled_by_its_stage_and_the_fusion_that_made_it():
    assert list_heading("bm25", Setting()) == ("BM25", "BM25 score")
    assert list_heading("dense", Setting("dense")) == ("Dense", "cosine")
    assert list_heading("reranked", Setting(reranker=RERANKER)) == ("Reranked", "reranker score")
    assert list_heading("fused", Setting()) == ("Fused (reciprocal rank fusion)", "RRF score")
    weighted = Setting(fusion="weighted", weight=0.25)
    assert list_heading("fused", weighted) == ("Fused (weighted, dense weight 0.25)", "weighted score (0–1)")
    assert list_heading("fused", Setting(fusion=rrf)) == ("Fused by your fusion", "your score")


def test_sources_say_where_each_citation_is_and_quote_its_chunk(pipelines):
    asked = ask(pipelines, DEFAULT_CHUNKING, QUESTION, Setting(reranker=RERANKER))
    table = sources(asked)
    citations = asked.result.answer.citations
    assert list(table.columns) == SOURCE_COLUMNS and len(table) == len(citations) > 0
    assert list(table["n"]) == list(range(1, len(citations) + 1))
    chunks = {h.chunk.chunk_id: h.chunk for h in asked.result.hits}
    for row, c in zip(table.itertuples(), citations):
        section = f" · § {c.section}" if c.section else ""
        page = f" · page {c.page}" if c.page else ""
        assert row.place == f"{c.doc_id}{page}{section} · characters {c.start}–{c.end}"
        text = chunks[c.chunk_id].text
        assert row.snippet == (text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + " …")
    assert any(s.endswith(" …") and len(s) == SNIPPET_CHARS + 2 for s in table["snippet"]), "no long chunk cited"
    refused = ask(pipelines, DEFAULT_CHUNKING, "What is the capital of France?", Setting())
    assert refused.result.answer.refused and sources(refused).empty and list(sources(refused).columns) == SOURCE_COLUMNS


def test_configure_copies_and_leaves_the_base_alone(pipelines):
    base, _ = pipelines.get(DEFAULT_CHUNKING)
    before = (base.retrieval, base.rank_fusion, base.reranker, base.answerer)

    def yours(sentences):
        return cite(sentences)

    variant = Setting("hybrid", fusion=lambda rankings, k: rrf(rankings, k), weight=0.3, cite=yours).configure(base)
    assert variant.index is base.index and variant.answerer.cite is yours and variant.retrieval.fusion == "rrf"
    assert (base.retrieval, base.rank_fusion, base.reranker, base.answerer) == before
    weighted = Setting("hybrid", fusion="weighted", weight=0.3).configure(base)
    assert weighted.retrieval.fusion == "weighted" and weighted.retrieval.weight == 0.3 and weighted.reranker is None


def test_sweep_scores_four_references_and_the_current_setting_when_it_is_none_of_them():
    labels = [label for label, _ in sweep(Setting("hybrid", reranker=RERANKER), RERANKER, "rrf", "reference")]
    assert labels == ["bm25", "dense", "hybrid (rrf)", "hybrid (rrf) + rerank"]
    runs = sweep(Setting("dense", reranker=RERANKER), RERANKER, "rrf", "reference")
    assert runs[-1] == ("current: dense + reference rerank", Setting("dense", reranker=RERANKER))
    off = sweep(Setting("hybrid", fusion="weighted"), RERANKER, "weighted", "off")
    assert [label for label, _ in off][-1] == "hybrid (weighted) + rerank" and off[-1][1].reranker is RERANKER
    assert len(off) == 4


def test_evaluate_is_summary_of_assess_and_reports_progress(pipelines, monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    questions = evaluation_questions()
    assert len(questions) == FAST_QUESTIONS
    base, _ = pipelines.get(DEFAULT_CHUNKING)
    runs = sweep(Setting("hybrid", reranker=RERANKER), RERANKER, "rrf", "reference")[1:3]
    reports: list[tuple[int, int, str]] = []
    result = evaluate(base, runs, current="dense", progress=lambda *r: reports.append(r))
    total = len(runs) * len(questions)
    assert [done for done, _, _ in reports] == list(range(1, total + 1)) and {t for _, t, _ in reports} == {total}
    assert reports[0][2] == "dense" and reports[-1][2] == "hybrid (rrf)"
    assert result.questions == len(questions) and list(result.current_table["id"]) == [q.id for q in questions]
    expected = summary(assess(runs[0][1].configure(base), questions, rerank=False))
    assert result.summary.iloc[0]["nDCG@10"] == pytest.approx(expected["nDCG@10"])
    assert list(result.scores()["configuration"].unique()) == ["dense", "hybrid (rrf)"]
