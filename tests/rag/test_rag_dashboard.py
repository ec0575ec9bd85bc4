"""Lab 06 dashboard without a browser: it answers with citation badges, every control changes what it
shows, students' chunkers, fusions and rerankers plug in as "yours", and the evaluation tab's numbers
are ``summary(assess(...))`` of the same configuration. The hash embedder keeps all but one test fast."""
from __future__ import annotations

import hashlib
import time

import holoviews as hv
import panel as pn
import pytest

from lab_core.rag.assess import assess, summary
from lab_core.rag.chunking import ChunkConfig, fixed_size
from lab_core.rag.documents import Chunk, Document
from lab_core.rag.retrieval import Hit, RetrievalConfig
from lab_core.rag.system import build_pipeline, demo_documents
from widgets.rag import YOURS, RagDashboard, app, dashboard

FRANCE = "What is the capital of France?"


def fast(**params: object) -> RagDashboard:
    return dashboard(embedder="hash", **params)


@pytest.fixture(scope="module")
def default() -> RagDashboard:
    return fast()


def shown(dash: RagDashboard) -> str:
    """A digest of what the query tab shows: the answer, each stage's list and the stages timed."""
    h = hashlib.sha256()
    result = dash.shown.result
    h.update((result.answer.text if result else dash.shown.error).encode())
    for stage in ("bm25", "dense", "fused", "reranked"):
        h.update(dash.stage_table(stage).to_csv().encode())
    h.update(",".join(dash.timings()["stage"]).encode())
    return h.hexdigest()


def test_builds_answers_with_citations_and_renders(default):
    assert default.shown.error == ""
    answer = default.shown.result.answer
    assert not answer.refused and answer.citations
    assert answer.citations[0].doc_id == "rate_limiter.md"
    html = default.answer_view().object
    assert html.count('class="rag-badge"') >= answer.text.count("[") + len(answer.citations)
    assert "[1]" not in html  # every marker became a badge
    assert "Citation check:" in html and "rate_limiter.md" in html and "characters" in html
    for stage in ("bm25", "dense", "fused", "reranked"):
        assert len(default.stage_table(stage)) == default.k
    hv.render(default.timing_plot())
    hv.render(default.evaluation_plot())
    pn.panel(default).get_root()


def test_app_is_a_servable_template():
    assert isinstance(app(), pn.template.FastListTemplate)


def test_cited_chunks_are_marked_in_every_list_that_holds_them(default):
    cited = default.cited()
    fused = default.stage_table("reranked")
    marked = fused[fused["cited"] > 0]
    assert set(marked["chunk_id"]) <= set(cited) and not marked.empty
    assert all(cited[c] == n for c, n in zip(marked["chunk_id"], marked["cited"]))
    html = default._stage_html("reranked", "Reranked", default.shown.result)
    assert html.count('class="rag-badge"') == len(marked)


def test_bm25_mode_has_no_dense_list():
    dash = fast(mode="bm25")
    assert dash.stage_table("dense").empty and not dash.stage_table("bm25").empty
    assert "embed" not in set(dash.timings()["stage"])
    assert "not used in bm25 mode" in dash.stages_view().objects[1].object


def test_chunk_size_changes_the_chunks():
    dash = fast(size=200)
    before, count = set(dash.stage_table("fused")["chunk_id"]), dash.shown.chunks
    dash.size = 60
    assert dash.shown.chunks > count
    assert set(dash.stage_table("fused")["chunk_id"]) != before
    assert dash.shown.build_seconds > 0
    dash.size = 200  # back to a cached pipeline: nothing is built
    assert dash.shown.build_seconds == 0.0 and set(dash.stage_table("fused")["chunk_id"]) == before


def test_overlap_stays_below_the_size():
    dash = fast(overlap=100, size=300)
    dash.size = 50
    assert dash.overlap == 49 and dash.param.overlap.bounds == (0, 49)
    assert dash.chunking() == ChunkConfig("recursive", 50, 49) and dash.shown.error == ""


CHANGES = [
    ("query", "What does time to first token measure?"),
    ("strategy", "fixed"),
    ("strategy", "sentences"),
    ("size", 150),
    ("overlap", 0),
    ("mode", "dense"),
    ("fusion", "weighted"),
    ("k", 12),
    ("reranker", "off"),
]


@pytest.mark.parametrize(("name", "value"), CHANGES, ids=[f"{n}={v}" for n, v in CHANGES])
def test_every_control_changes_what_is_shown(name, value):
    # 60-word chunks: most sections of the notes are shorter than the default 200 words, and a section
    # that fits in one chunk is the same chunk whatever the overlap or strategy.
    dash = fast(size=60)
    before = shown(dash)
    setattr(dash, name, value)
    assert dash.shown.error == ""
    assert shown(dash) != before


def test_the_weight_moves_weighted_fusion_and_is_greyed_out_otherwise():
    dash = fast(fusion="weighted", weight=0.0, k=20)
    before = list(dash.stage_table("fused")["chunk_id"])
    dash.weight = 1.0
    assert list(dash.stage_table("fused")["chunk_id"]) != before
    column = dash._retrieval_controls()
    widgets = {w.name: w for w in column.select(pn.widgets.Widget)}
    weight, fusion = widgets[dash.param.weight.label], widgets[dash.param.fusion.label]
    assert not weight.disabled
    dash.fusion = "rrf"
    assert weight.disabled and not fusion.disabled
    dash.mode = "bm25"
    assert fusion.disabled


def test_every_control_is_in_the_sidebar(default):
    names = {w.name for w in default.controls().select(pn.widgets.Widget)}
    labels = {default.param[n].label for n in ("query", "strategy", "size", "overlap", "mode", "fusion", "weight",
                                                "k", "reranker")}
    assert labels <= names, labels - names


def test_a_students_chunker_appears_as_yours_and_is_used():
    seen: list[str] = []

    def halves(doc: Document) -> list[Chunk]:
        seen.append(doc.doc_id)
        return fixed_size(doc, 60, 0)

    dash = fast(chunker=halves)
    assert YOURS in dash.param.strategy.objects and dash.strategy == YOURS
    assert sorted(seen) == sorted(d.doc_id for d in demo_documents())
    assert dash.shown.chunks == sum(len(fixed_size(d, 60, 0)) for d in demo_documents())
    assert dash.shown.chunking == "your chunker"
    assert YOURS not in fast().param.strategy.objects  # only the instance that was given one offers it


def test_a_students_fusion_replaces_rrf():
    calls: list[tuple[int, int]] = []

    def bm25_only(rankings: list[list[str]], k: int) -> list[tuple[str, float]]:
        calls.append((len(rankings), k))
        return [(d, 1.0 / (k + r)) for r, d in enumerate(rankings[1], 1)]

    dash = fast(fusion=bm25_only, reranker="off")
    assert dash.fusion == YOURS and calls == [(2, 60)]
    assert list(dash.stage_table("fused")["chunk_id"]) == list(dash.stage_table("bm25")["chunk_id"])
    assert len(dash.stage_table("dense")) == dash.k
    dash.fusion = "rrf"
    reference = build_pipeline("hash").query(dash.query, k=dash.k, rerank=False)
    assert list(dash.stage_table("fused")["chunk_id"]) == [h.chunk.chunk_id for h in reference.hits]


def test_a_students_broken_fusion_is_reported_not_raised():
    def broken(rankings: list[list[str]], k: int) -> list[tuple[str, float]]:
        return [("no-such-chunk", 1.0)]

    dash = fast(fusion=broken)
    assert "no-such-chunk" in dash.shown.error and dash.error_view().visible
    dash.fusion = "rrf"
    assert dash.shown.error == "" and not dash.error_view().visible


def test_a_students_reranker_is_used():
    def backwards(query: str, hits: list[Hit]) -> list[Hit]:
        return list(reversed(hits))

    dash = fast(reranker=backwards)
    assert dash.reranker == YOURS
    reference = build_pipeline("hash").retrieve(dash.query, k=dash.k, rerank=False)[0].stages["fused"]
    assert list(dash.stage_table("reranked")["chunk_id"]) != [h.chunk.chunk_id for h in reference]
    assert list(dash.stage_table("fused")["chunk_id"]) == [h.chunk.chunk_id for h in reference]


def test_refusal_is_shown():
    dash = fast(query=FRANCE)
    assert dash.shown.result.answer.refused
    html = dash.answer_view().object
    assert "Refused: not found in the documents" in html and 'class="rag-badge"' not in html
    # No word of the question is in the notes: BM25 is in use but finds nothing, and says so.
    assert dash.stage_table("bm25").empty
    assert "no chunk shares a term" in dash.stages_view().objects[0].object


def test_an_empty_question_is_an_error_not_a_crash():
    dash = fast()
    dash.query = "   "
    assert "query is empty" in dash.shown.error and dash.error_view().visible


def test_evaluation_equals_summary_of_assess_for_the_same_configuration():
    dash = fast(size=150, overlap=20)
    dash.evaluate()
    e = dash.evaluation
    assert e.error == "" and e.questions == len(dash.questions()) == 40
    table = e.summary.set_index("configuration")
    assert list(table.index) == ["bm25", "dense", "hybrid (rrf)", "hybrid (rrf) + rerank"]
    questions = dash.questions()
    for label, mode, rerank in (("bm25", "bm25", False), ("dense", "dense", False),
                                ("hybrid (rrf)", "hybrid", False), ("hybrid (rrf) + rerank", "hybrid", True)):
        pipeline = build_pipeline("hash", ChunkConfig("recursive", 150, 20), RetrievalConfig(mode=mode))
        expected = summary(assess(pipeline, questions, rerank=rerank))
        for metric in ("nDCG@10", "Recall@10", "MRR", "refusal_accuracy", "citation_support"):
            assert table.loc[label, metric] == pytest.approx(expected[metric]), (label, metric)
    # The current configuration (hybrid, reference reranker) is the last row, question by question.
    assert list(e.current["id"]) == [q.id for q in questions]
    assert summary(e.current)["nDCG@10"] == pytest.approx(table.loc["hybrid (rrf) + rerank", "nDCG@10"])
    assert set(dash.scores()["metric"]) == {"nDCG@10", "Recall@10", "MRR", "refusal_accuracy"}
    hv.render(dash.evaluation_plot())


def test_evaluation_adds_the_current_configuration_when_it_is_not_a_reference_one(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    dash = fast(mode="dense", reranker="reference")
    dash.evaluate()
    e = dash.evaluation
    assert e.questions == 12 == len(e.current)
    assert list(e.summary["configuration"])[-1] == "current: dense + reference rerank"
    assert "current configuration: current: dense + reference rerank" in e.setting


@pytest.mark.slow
def test_minilm_requeries_in_under_a_second_once_embedded(record_property):
    dash = dashboard()  # the default MiniLM embedder
    answer = dash.shown.result.answer
    assert not answer.refused and answer.citations[0].doc_id == "rate_limiter.md"
    dash.size = 120  # a new chunking: embedded (or read from the disk cache) once
    record_property("build_s_new_chunking", dash.shown.build_seconds)
    for name, value in [("mode", "bm25"), ("mode", "hybrid"), ("fusion", "weighted"), ("k", 10),
                        ("reranker", "off"), ("query", "What does time to first token measure?"), ("size", 200)]:
        started = time.perf_counter()
        setattr(dash, name, value)
        dash.answer_view(), dash.stages_view(), hv.render(dash.timing_plot())
        seconds = time.perf_counter() - started
        record_property(f"redraw_s_{name}={value}", seconds)
        assert dash.shown.error == "" and dash.shown.build_seconds == 0.0
        assert seconds < 1.0, f"{name}={value} took {seconds:.2f} s"
    dash.query = FRANCE
    assert dash.shown.result.answer.refused
