"""Lab 06 dashboard without a browser: it answers with citation badges, every control changes what it
shows, a mode shows only the lists and controls that apply to it, each stage keeps its colour, students'
chunkers, fusions, rerankers, citations and nDCG plug in as "yours", and the evaluation tab's numbers
are ``summary(assess(...))`` of the same configuration. The hash embedder keeps all but one test fast."""

from __future__ import annotations

import hashlib
import re
import time

import holoviews as hv
import pandas as pd
import panel as pn
import pytest

from lab_core.rag.answer import cite
from lab_core.rag.assess import assess, summary
from lab_core.rag.chunking import ChunkConfig, fixed_size
from lab_core.rag.documents import Chunk, Document
from lab_core.rag.experiments import LIST_COLUMNS, YOUR_NDCG, evaluation_questions
from lab_core.rag.retrieval import Hit, RetrievalConfig
from lab_core.rag.system import build_pipeline, demo_documents
from widgets.rag import STAGE_COLORS, YOURS, Dashboard, RagDashboard, app, dashboard
from widgets.rag_html import html_table, ranked_list

FRANCE = "What is the capital of France?"


def fast(**params: object) -> RagDashboard:
    return dashboard(embedder="hash", **params)


@pytest.fixture(scope="module")
def default() -> RagDashboard:
    return fast()


def table(dash: RagDashboard, stage: str) -> pd.DataFrame:
    """A list the query tab shows (empty when the setting has no such list)."""
    return dash.asked.lists.get(stage, pd.DataFrame(columns=LIST_COLUMNS))


def shown(dash: RagDashboard) -> str:
    """A digest of what the query tab shows: the answer, each stage's list and the stages timed."""
    h = hashlib.sha256()
    h.update((dash.asked.result.answer.text if dash.asked else str(dash.errors)).encode())
    for stage in ("bm25", "dense", "fused", "reranked"):
        h.update(table(dash, stage).to_csv().encode())
    h.update(",".join(dash.asked.timings["stage"]).encode())
    return h.hexdigest()


def titles(dash: RagDashboard) -> list[str]:
    """The titles of the lists on the page, in order."""
    return [re.search(r"<b>(.*?)</b>", box.object).group(1) for box in dash.stages_view().objects]


def timing_colors(dash: RagDashboard) -> dict[str, str]:
    """Stage -> bar colour of the drawn timing plot."""
    figure = hv.render(dash.timing_plot())
    mapper = next(r.glyph.fill_color.transform for r in figure.renderers if hasattr(r.glyph, "fill_color"))
    return dict(zip(mapper.factors, mapper.palette))


def test_builds_answers_with_citations_and_renders(default):
    assert default.errors == {} and not default.error_view().visible
    answer = default.asked.result.answer
    assert not answer.refused and answer.citations
    assert answer.citations[0].doc_id == "rate_limiter.md"
    html = default.answer_view().object
    assert html.count('class="rag-badge"') >= answer.text.count("[") + len(answer.citations)
    assert "[1]" not in html  # every marker became a badge
    assert "Citation check:" in html and "rate_limiter.md" in html and "characters" in html
    for stage in ("bm25", "dense", "fused", "reranked"):
        assert len(table(default, stage)) == default.k
    assert titles(default) == ["BM25", "Dense", "Fused (reciprocal rank fusion)", "Reranked"]
    hv.render(default.timing_plot())
    pn.panel(default).get_root()


def test_no_empty_plot_or_table_on_first_load(default):
    # The timing plot has the first answer's stages; the evaluation's plot and tables wait for an evaluation.
    assert default._timing.visible and set(default.asked.timings["stage"]) == set(STAGE_COLORS)
    assert default.evaluation.questions == 0 and not default._results.visible and default._eval_plot.object is None


def test_the_default_view_reads_as_healthy(default):
    answer = default.asked.result.answer
    assert default.errors == {} and not answer.refused and answer.check.rate == 1.0 and not answer.check.problems
    assert "Refused" not in default.answer_view().object and 'class="rag-refused"' not in default.answer_view().object


def test_every_reference_plugged_in_as_yours_answers_like_the_reference(default):
    dash = dashboard(embedder="hash", **{name: p.reference for name, p in Dashboard.plugins.items()})
    assert dash.errors == {}
    assert (dash.strategy, dash.fusion, dash.reranker, dash.citations) == (YOURS,) * 4
    assert dash.asked.result.answer == default.asked.result.answer
    for stage in ("bm25", "dense", "fused", "reranked"):
        assert table(dash, stage).equals(table(default, stage)), stage


def test_app_is_a_servable_template():
    assert isinstance(app(), pn.template.FastListTemplate)


def test_cited_chunks_are_marked_in_every_list_that_holds_them(default):
    cited = default.asked.cited
    fused = table(default, "reranked")
    marked = fused[fused["cited"] > 0]
    assert set(marked["chunk_id"]) <= set(cited) and not marked.empty
    assert all(cited[c] == n for c, n in zip(marked["chunk_id"], marked["cited"]))
    html = ranked_list("reranked", fused, default.asked.setting)
    assert html.count('class="rag-badge"') == len(marked)


def test_bm25_mode_has_no_dense_list_and_nothing_fused():
    dash = fast(mode="bm25")
    assert table(dash, "dense").empty and not table(dash, "bm25").empty
    # One list "fused" alone is that list again: no Fused list, no fuse stage.
    assert set(dash.asked.lists) == {"bm25", "reranked"} and titles(dash) == ["BM25", "Reranked"]
    assert list(dash.asked.timings["stage"]) == ["bm25", "rerank", "answer"]
    dash.mode = "dense"
    assert titles(dash) == ["Dense", "Reranked"] and list(dash.asked.timings["stage"]) == [
        "embed",
        "dense",
        "rerank",
        "answer",
    ]
    dash.reranker = "off"
    assert titles(dash) == ["Dense"] and "rerank" not in set(dash.asked.timings["stage"])


def test_each_stage_keeps_its_colour_whatever_the_mode():
    dash = fast()
    hybrid = timing_colors(dash)
    assert {s: hybrid[s] for s in STAGE_COLORS} == STAGE_COLORS and len(set(STAGE_COLORS.values())) == 6
    for mode in ("bm25", "dense"):
        dash.mode = mode
        assert timing_colors(dash) == hybrid, mode


def test_chunk_size_changes_the_chunks():
    dash = fast(size=200)
    before, count = set(table(dash, "fused")["chunk_id"]), dash.asked.chunks
    dash.size = 60
    assert dash.asked.chunks > count
    assert set(table(dash, "fused")["chunk_id"]) != before
    assert dash.asked.build_seconds > 0
    dash.size = 200  # back to a kept pipeline: nothing is built
    assert dash.asked.build_seconds == 0.0 and set(table(dash, "fused")["chunk_id"]) == before


def test_overlap_stays_below_the_size():
    dash = fast(overlap=100, size=300)
    dash.size = 50
    assert dash.overlap == 49 and dash.param.overlap.bounds == (0, 49)
    assert dash.chunking() == ChunkConfig("recursive", 50, 49) and dash.errors == {}


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
    assert dash.errors == {}
    assert shown(dash) != before


def test_the_weight_moves_weighted_fusion_and_is_hidden_where_it_does_not_apply():
    dash = fast(fusion="weighted", weight=0.0, k=20)
    before = list(table(dash, "fused")["chunk_id"])
    dash.weight = 1.0
    assert list(table(dash, "fused")["chunk_id"]) != before
    assert titles(dash)[2] == "Fused (weighted, dense weight 1)"
    column = dash._retrieval_controls()
    widgets = {w.name: w for w in column.select(pn.widgets.Widget)}
    weight, fusion = widgets[dash.param.weight.label], widgets[dash.param.fusion.label]
    assert weight.visible and not weight.disabled and fusion.visible
    dash.fusion = "rrf"
    assert not weight.visible and weight.disabled and fusion.visible and not fusion.disabled
    dash.fusion = "weighted"
    dash.mode = "bm25"  # nothing is fused: neither the fusion nor its weight applies
    assert not fusion.visible and fusion.disabled and not weight.visible and weight.disabled
    dash.mode = "hybrid"
    assert fusion.visible and weight.visible


def test_every_control_is_in_the_sidebar(default):
    names = {w.name for w in default.controls().select(pn.widgets.Widget)}
    labels = {
        default.param[n].label
        for n in ("query", "strategy", "size", "overlap", "mode", "fusion", "weight", "k", "reranker")
    }
    assert labels <= names, labels - names


def test_a_students_chunker_appears_as_yours_and_is_used():
    seen: list[str] = []

    def halves(doc: Document) -> list[Chunk]:
        seen.append(doc.doc_id)
        return fixed_size(doc, 60, 0)

    dash = fast(chunker=halves)
    assert YOURS in dash.param.strategy.objects and dash.strategy == YOURS
    assert sorted(seen) == sorted(d.doc_id for d in demo_documents())
    assert dash.asked.chunks == sum(len(fixed_size(d, 60, 0)) for d in demo_documents())
    assert dash.chunking_label() == "your chunker" and "your chunker" in dash.headline().object
    assert YOURS not in fast().param.strategy.objects  # only the instance that was given one offers it


def test_a_students_fusion_replaces_rrf():
    calls: list[tuple[int, int]] = []

    def bm25_only(rankings: list[list[str]], k: int) -> list[tuple[str, float]]:
        calls.append((len(rankings), k))
        return [(d, 1.0 / (k + r)) for r, d in enumerate(rankings[1], 1)]

    dash = fast(fusion=bm25_only, reranker="off")
    assert dash.fusion == YOURS and calls == [(2, 60)]
    assert list(table(dash, "fused")["chunk_id"]) == list(table(dash, "bm25")["chunk_id"])
    assert len(table(dash, "dense")) == dash.k and titles(dash)[2] == "Fused by your fusion"
    dash.fusion = "rrf"
    reference = build_pipeline("hash").query(dash.query, k=dash.k, rerank=False)
    assert list(table(dash, "fused")["chunk_id"]) == [h.chunk.chunk_id for h in reference.hits]


def test_a_students_broken_fusion_is_reported_not_raised():
    def broken(rankings: list[list[str]], k: int) -> list[tuple[str, float]]:
        return [("no-such-chunk", 1.0)]

    dash = fast(fusion=broken)
    assert "no-such-chunk" in dash.errors["answer"] and dash.error_view().visible
    assert dash.asked is None and not dash._timing.visible  # no stale lists or empty plot under the error
    dash.fusion = "rrf"
    assert dash.errors == {} and not dash.error_view().visible and dash._timing.visible


def test_a_students_reranker_is_used():
    def backwards(query: str, hits: list[Hit]) -> list[Hit]:
        return list(reversed(hits))

    dash = fast(reranker=backwards)
    assert dash.reranker == YOURS
    reference = build_pipeline("hash").retrieve(dash.query, k=dash.k, rerank=False)[0].stages["fused"]
    assert list(table(dash, "reranked")["chunk_id"]) != [h.chunk.chunk_id for h in reference]
    assert list(table(dash, "fused")["chunk_id"]) == [h.chunk.chunk_id for h in reference]


def test_a_students_cite_writes_the_answer_and_its_citations():
    calls: list[int] = []

    def numbered_twice(sentences):
        calls.append(len(sentences))
        text, citations = cite(sentences)
        return text.replace("[1]", "[1] [1]"), citations

    dash = fast(cite=numbered_twice)
    assert dash.citations == YOURS and calls and dash.errors == {}
    assert "[1] [1]" in dash.asked.result.answer.text
    controls = {w.name for w in dash.controls().select(pn.widgets.Widget)}
    assert dash.param.citations.label in controls
    dash.citations = "reference"
    assert "[1] [1]" not in dash.asked.result.answer.text
    assert dash.param.citations.label not in {w.name for w in fast().controls().select(pn.widgets.Widget)}


def test_refusal_is_shown():
    dash = fast(query=FRANCE)
    assert dash.asked.result.answer.refused
    html = dash.answer_view().object
    assert "Refused: not found in the documents" in html and 'class="rag-badge"' not in html
    # No word of the question is in the notes: BM25 is in use but finds nothing, and says so.
    assert table(dash, "bm25").empty
    assert "no chunk shares a term" in dash.stages_view().objects[0].object


def test_an_empty_question_is_an_error_not_a_crash():
    dash = fast()
    dash.query = "   "
    assert "query is empty" in dash.errors["answer"] and dash.error_view().visible


def test_evaluation_equals_summary_of_assess_for_the_same_configuration():
    dash = fast(size=150, overlap=20)
    dash.evaluate()
    e = dash.evaluation
    assert dash.evaluation_error == "" and e.questions == len(evaluation_questions()) == 40
    assert dash._results.visible and dash._eval_plot.object is not None
    table = e.summary.set_index("configuration")
    assert list(table.index) == ["bm25", "dense", "hybrid (rrf)", "hybrid (rrf) + rerank"]
    questions = evaluation_questions()
    for label, mode, rerank in (
        ("bm25", "bm25", False),
        ("dense", "dense", False),
        ("hybrid (rrf)", "hybrid", False),
        ("hybrid (rrf) + rerank", "hybrid", True),
    ):
        pipeline = build_pipeline("hash", ChunkConfig("recursive", 150, 20), RetrievalConfig(mode=mode))
        expected = summary(assess(pipeline, questions, rerank=rerank))
        for metric in ("nDCG@10", "Recall@10", "MRR", "refusal_accuracy", "citation_support"):
            assert table.loc[label, metric] == pytest.approx(expected[metric]), (label, metric)
    # The current configuration (hybrid, reference reranker) is the last row, question by question.
    assert e.current == "hybrid (rrf) + rerank"
    assert list(e.current_table["id"]) == [q.id for q in questions]
    assert summary(e.current_table)["nDCG@10"] == pytest.approx(table.loc["hybrid (rrf) + rerank", "nDCG@10"])
    assert set(e.scores()["metric"]) == {"nDCG@10", "Recall@10", "MRR", "refusal_accuracy"}
    hv.render(dash._eval_plot.object)


def test_evaluation_adds_the_current_configuration_when_it_is_not_a_reference_one(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    dash = fast(mode="dense", reranker="reference")
    dash.evaluate()
    e = dash.evaluation
    assert e.questions == 12 == len(e.current_table)
    assert list(e.summary["configuration"])[-1] == e.current == "current: dense + reference rerank"
    assert "current configuration: current: dense + reference rerank" in dash.evaluation_note().object


def test_the_evaluation_runs_when_its_tab_is_first_opened(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    dash = fast()
    tabs = dash.main()
    assert dash.evaluation.questions == 0
    tabs.active = 1
    assert dash.evaluation.questions == 12 and dash._results.visible and not dash._evaluate.disabled
    first = dash.evaluation
    tabs.active, tabs.active = 0, 1  # later visits keep it: the button re-runs it
    assert dash.evaluation is first


def test_a_students_ndcg_is_scored_beside_the_reference(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    dash = fast(ndcg=lambda ranked, relevant, k=10: 0.25)
    dash.evaluate()
    summary_table = dash.evaluation.summary
    assert list(summary_table[YOUR_NDCG]) == [0.25] * len(summary_table)
    assert (summary_table["nDCG@10"] > 0.5).all()  # the reference's column is untouched
    assert YOUR_NDCG in set(dash.evaluation.scores()["metric"]) and YOUR_NDCG in dash.evaluation.current_table


def test_a_students_broken_ndcg_is_reported_in_the_evaluation_tab(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")

    def broken(ranked, relevant, k=10):
        raise ZeroDivisionError("ideal DCG")

    dash = fast(ndcg=broken)
    dash.evaluate()
    assert "ideal DCG" in dash.evaluation_error and "ideal DCG" in dash.evaluation_note().object
    assert not dash._results.visible and dash.errors == {}


@pytest.mark.slow
@pytest.mark.timed  # a wall-clock bound: alone in make test's second pass, not beside a busy worker
def test_minilm_requeries_in_under_a_second_once_embedded(record_property):
    dash = dashboard()  # the default MiniLM embedder
    answer = dash.asked.result.answer
    assert not answer.refused and answer.citations[0].doc_id == "rate_limiter.md"
    dash.size = 120  # a new chunking: embedded (or read from the disk cache) once
    record_property("build_s_new_chunking", dash.asked.build_seconds)
    for name, value in [
        ("mode", "bm25"),
        ("mode", "hybrid"),
        ("fusion", "weighted"),
        ("k", 10),
        ("reranker", "off"),
        ("query", "What does time to first token measure?"),
        ("size", 200),
    ]:
        started = time.perf_counter()
        setattr(dash, name, value)
        dash.answer_view(), dash.stages_view(), hv.render(dash.timing_plot())
        seconds = time.perf_counter() - started
        record_property(f"redraw_s_{name}={value}", seconds)
        assert dash.errors == {} and dash.asked.build_seconds == 0.0
        assert seconds < 1.0, f"{name}={value} took {seconds:.2f} s"
    dash.query = FRANCE
    assert dash.asked.result.answer.refused


def test_evaluation_tables_have_whole_headers_with_units(monkeypatch):
    monkeypatch.setenv("SYSLAB_FAST", "1")
    dash = fast()
    dash.evaluate()
    means = html_table(dash.evaluation.summary)
    per_question = html_table(dash.evaluation.current_table, scroll=True)
    for header in ("configuration", "nDCG@10", "refusal accuracy", "citation support", "median latency (ms)"):
        assert f">{header}</th>" in means, header
    for header in ("question", "should refuse", "latency (ms)"):
        assert f">{header}</th>" in per_question, header
    assert "overflow-y:auto" in per_question and "…" not in means + per_question
    # An unanswerable question has no retrieval score: a dash, not "nan"; booleans read yes / no.
    unanswerable = html_table(pd.DataFrame({"nDCG@10": [float("nan")], "refused": [True]}))
    assert "<td class=num>–</td>" in unanswerable and "nan" not in unanswerable and "<td>yes</td>" in unanswerable
