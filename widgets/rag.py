"""Retrieval-augmented answers over the course notes: BM25, dense, fused and reranked lists, cited answers.

Lab 06's dashboard: ``dashboard(chunker=..., fusion=..., reranker=...)`` in a notebook, ``app()`` for
``syslab serve``. Each session owns a :class:`RagDashboard`. A pipeline is built once per chunking
and kept (the embeddings themselves are cached on disk by ``lab_core.rag.system``, so a new chunking
embeds only the chunks not seen before, behind a progress bar); changing the question, the
retrieval mode, the fusion, k or the reranker only re-queries. The evaluation tab scores bm25,
dense, hybrid and hybrid + rerank on the labelled questions at the current chunking when asked.
"""
from __future__ import annotations

import copy
import html
import itertools
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.rag.assess import COLUMNS, assess, summary
from lab_core.rag.chunking import CHUNKERS, ChunkConfig, Chunker
from lab_core.rag.corpus import LabelledQuestion, load_questions
from lab_core.rag.documents import Chunk
from lab_core.rag.pipeline import QueryResult, RagPipeline, Reranker, check_query
from lab_core.rag.retrieval import Hit, RankFusion, RetrievalConfig
from lab_core.rag.system import build_pipeline
from widgets import kit

YOURS = "yours"
DEFAULT_QUERY = "Why does a fixed window counter let a client send twice its limit?"
STAGES: dict[str, str] = {"bm25": "BM25", "dense": "Dense (cosine)", "fused": "Fused", "reranked": "Reranked"}
TIMED_STAGES = ("embed", "dense", "bm25", "fuse", "rerank", "answer")
#: The demo corpus averages 17 words a sentence: the "sentences" chunker's window is the word size over it.
WORDS_PER_SENTENCE = 17
#: Questions scored under SYSLAB_FAST=1 (notebook runs in CI): enough to cover every document type.
FAST_QUESTIONS = 12
METRICS = ("nDCG@10", "Recall@10", "MRR", "refusal_accuracy")
SUMMARY_COLUMNS = ["configuration", *METRICS, "citation_support", "latency_ms_p50"]
STAGE_COLUMNS = ["rank", "chunk_id", "chunk", "score", "cited"]

_CSS = """
.rag-badge { display:inline-block; min-width:1.4em; padding:0 0.35em; margin:0 0.15em; border-radius:0.7em;
  color:white; font-size:0.8em; font-weight:600; text-align:center; line-height:1.4em; vertical-align:middle; }
.rag-answer { font-size:1.1em; line-height:1.7; }
.rag-refused { background:#fdecea; border-left:4px solid #d62728; padding:0.6em 1em; }
.rag-source { margin:0.5em 0; padding:0.4em 0.8em; border-left:4px solid; background:#fafafa; }
.rag-source blockquote { margin:0.3em 0 0; color:#444; font-size:0.9em; }
.rag-table { border-collapse:collapse; width:100%; font-size:0.85em; }
.rag-table th, .rag-table td { padding:0.25em 0.4em; border-bottom:1px solid #e5e5e5; text-align:left; }
.rag-table td.num, .rag-table th.num { text-align:right; font-variant-numeric:tabular-nums; }
.rag-table .id { color:#888; font-size:0.85em; }
"""


@dataclass(frozen=True, eq=False)
class Shown:
    """One query: its result (None when it failed), the chunking it ran on, how long it took, what went wrong."""

    result: QueryResult | None = None
    chunking: str = ""
    chunks: int = 0
    build_seconds: float = 0.0
    query_seconds: float = 0.0
    min_score: float = 0.0
    error: str = ""


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Scores on the labelled questions: one row per configuration, and the current one's per-question table."""

    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    current: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    setting: str = ""
    questions: int = 0
    seconds: float = 0.0
    error: str = ""


def citation_color(n: int) -> str:
    """The colour of citation ``n`` (1-based): its badge, its source box and its rows in the lists."""
    return kit.PALETTE[(n - 1) % len(kit.PALETTE)]


def badge(n: int) -> str:
    """Citation ``n`` as a coloured pill."""
    return f'<span class="rag-badge" style="background:{citation_color(n)}">{n}</span>'


def chunk_label(chunk: Chunk) -> str:
    """How a reader finds a chunk: "doc § section"."""
    return f"{chunk.doc_id} § {chunk.section}" if chunk.section else chunk.doc_id


class RagDashboard(pn.viewable.Viewer):
    """A question answered from the course notes, with every retrieval stage, its timing and its evaluation."""

    query = param.String(DEFAULT_QUERY, label="Question")
    strategy = param.Selector(default="recursive", objects=list(CHUNKERS), label="Chunking strategy")
    size = param.Integer(200, bounds=(50, 400), step=10, label="Chunk size (words)")
    overlap = param.Integer(40, bounds=(0, 100), step=5, label="Overlap (words)")
    mode = param.Selector(default="hybrid", objects=["hybrid", "dense", "bm25"], label="Retrieval mode")
    fusion = param.Selector(default="rrf", objects=["rrf", "weighted"], label="Fusion (hybrid mode)")
    weight = param.Number(0.5, bounds=(0.0, 1.0), step=0.05, label="Dense weight (weighted fusion)")
    k = param.Integer(5, bounds=(1, 20), label="Results per list (k)")
    reranker = param.Selector(default="reference", objects=["off", "reference"], label="Reranker")
    shown = param.ClassSelector(class_=Shown, default=Shown(), precedence=-1, doc="the latest query")
    evaluation = param.ClassSelector(class_=Evaluation, default=Evaluation(), precedence=-1,
                                     doc="the latest evaluation")

    def __init__(
        self,
        chunker: Chunker | None = None,
        fusion: RankFusion | None = None,
        reranker: Reranker | None = None,
        embedder: str = "minilm",
        **params: object,
    ) -> None:
        # A name picks a built-in choice (``dashboard(reranker="off")``); a callable is the student's, "yours".
        seams = {"strategy": chunker, "fusion": fusion, "reranker": reranker}
        for name, value in list(seams.items()):
            if isinstance(value, str):
                params[name], seams[name] = value, None
        self._chunker, self._fusion, self._reranker = seams.values()
        self.embedder = embedder
        chosen = {name: params.pop(name, YOURS if fn is not None else None) for name, fn in seams.items()}
        super().__init__(**params)
        # "yours" is a valid choice only once this instance's objects include it.
        for name, fn in seams.items():
            if fn is not None:
                self.param[name].objects = [*self.param[name].objects, YOURS]
        with param.discard_events(self):
            self.param.update({k: v for k, v in chosen.items() if v is not None})
            self._limit_overlap()
        self._pipelines: dict[object, RagPipeline] = {}
        # One build at a time: two quick slider moves must not embed the same chunking twice.
        self._build_lock = threading.Lock()
        self._progress = kit.progress_bar()
        self._eval_progress = kit.progress_bar()
        # Typing or dragging can start overlapping queries on a threaded server; only the newest one publishes.
        self._runs = itertools.count()
        self._latest = -1
        self._ask = pn.widgets.Button(label="Ask", color="primary", sizing_mode="stretch_width")
        self._ask.on_click(lambda _e: self.requery())
        self._evaluate = pn.widgets.Button(label="Evaluate on the labelled questions", color="primary",
                                           width=320)
        self._evaluate.on_click(lambda _e: self.evaluate())
        # DynamicMaps update the drawn figures' data in place, several times faster than redrawing them.
        self._timing = pn.pane.HoloViews(hv.DynamicMap(self.timing_plot), sizing_mode="stretch_width")
        self._eval_plot = pn.pane.HoloViews(hv.DynamicMap(self.evaluation_plot), sizing_mode="stretch_width")
        self.requery()

    # ---- computing -------------------------------------------------------------------------

    def chunking(self) -> ChunkConfig | None:
        """The chunk settings (None for the student's chunker); "sentences" counts its window in sentences."""
        if self.strategy == YOURS:
            return None
        if self.strategy == "sentences":
            window = max(1, round(self.size / WORDS_PER_SENTENCE))
            return ChunkConfig("sentences", window, min(round(self.overlap / WORDS_PER_SENTENCE), window - 1))
        return ChunkConfig(self.strategy, int(self.size), min(int(self.overlap), int(self.size) - 1))

    def chunking_label(self) -> str:
        """The chunking in words a reader checks: "recursive, 200 words, overlap 40"."""
        config = self.chunking()
        if config is None:
            return "your chunker"
        unit = "sentences" if config.strategy == "sentences" else "words"
        return f"{config.strategy}, {config.size} {unit}, overlap {config.overlap}"

    def questions(self) -> list[LabelledQuestion]:
        """The labelled questions the evaluation scores (the first few under ``SYSLAB_FAST=1``)."""
        questions = load_questions()
        return questions[:FAST_QUESTIONS] if os.environ.get("SYSLAB_FAST") == "1" else questions

    @param.depends("size", watch=True)
    def _limit_overlap(self) -> None:
        """The overlap stays below the chunk size."""
        top = min(100, int(self.size) - 1)
        self.param.overlap.bounds = (0, top)
        if self.overlap > top:
            self.overlap = top  # triggers its own re-query; the one for this change follows, on the cached pipeline

    def pipeline(self) -> tuple[RagPipeline, float]:
        """The pipeline of the current chunking and the seconds spent building it (0 when cached)."""
        config = self.chunking()
        key = YOURS if config is None else config
        with self._build_lock:
            if key in self._pipelines:
                return self._pipelines[key], 0.0
            started = time.perf_counter()
            # Indeterminate until the embedder reports; it reports only for chunks not in the disk cache.
            self._progress.param.update(value=-1, max=100, visible=True)
            try:
                built = build_pipeline(self.embedder, self._chunker if config is None else config,
                                       progress=self._report)
            finally:
                self._progress.visible = False
            self._pipelines[key] = built
            return built, time.perf_counter() - started

    def _report(self, done: int, total: int) -> None:
        # Two assignments: Progress re-bounds ``value`` only after ``max`` has been set.
        self._progress.max = max(total, 1)
        self._progress.value = done

    def configured(self, base: RagPipeline, mode: str, reranker: str) -> RagPipeline:
        """``base`` searching in ``mode`` with the current fusion, reranking with ``reranker``'s choice.

        A shallow copy: it shares the index, so no configuration re-embeds anything."""
        variant = copy.copy(base)
        # The student's fusion takes RRF's place: the same (rankings, k) -> [(id, score)] seam.
        fusion = "rrf" if self.fusion == YOURS else self.fusion
        variant.retrieval = RetrievalConfig(mode=mode, fusion=fusion, weight=float(self.weight))
        if self.fusion == YOURS:
            variant.rank_fusion = self._fusion
        if reranker == YOURS:
            variant.reranker = self._reranker
        return variant

    @param.depends("query", "strategy", "size", "overlap", "mode", "fusion", "weight", "k", "reranker", watch=True)
    def requery(self) -> None:
        """Answer the question with the current settings (building the chunking's pipeline if new); publish ``shown``."""
        generation = self._latest = next(self._runs)
        result, build, chunks, min_score, error = None, 0.0, 0, 0.0, ""
        started = time.perf_counter()
        try:
            query = check_query(self.query)
            base, build = self.pipeline()
            chunks, min_score = len(base.index), getattr(base.answerer, "min_score", 0.0)
            started = time.perf_counter()
            pipeline = self.configured(base, self.mode, self.reranker)
            result = pipeline.query(query, k=int(self.k), rerank=self.reranker != "off")
        except Exception as exc:  # the student's code (or a bad question) may raise anything; show it
            error = kit.describe(exc)
        if generation != self._latest:
            return
        self.shown = Shown(result, self.chunking_label(), chunks, build, time.perf_counter() - started, min_score,
                           error)

    def _settings(self) -> list[tuple[str, str, str]]:
        """(label, mode, reranker) of each scored configuration: the four references, and the current one if other."""
        fusion = "your fusion" if self.fusion == YOURS else self.fusion
        rerank = self.reranker if self.reranker != "off" else "reference"
        runs = [("bm25", "bm25", "off"), ("dense", "dense", "off"), (f"hybrid ({fusion})", "hybrid", "off"),
                (f"hybrid ({fusion}) + {'your ' if rerank == YOURS else ''}rerank", "hybrid", rerank)]
        if (self.mode, self.reranker) not in {(m, r) for _, m, r in runs}:
            runs.append((f"current: {self.mode} + {self.reranker} rerank", self.mode, self.reranker))
        return runs

    def evaluate(self) -> None:
        """Score each configuration on the labelled questions at the current chunking; publish ``evaluation``."""
        started = time.perf_counter()
        questions = self.questions()
        runs = self._settings()
        current = next(label for label, m, r in runs if (m, r) == (self.mode, self.reranker))
        rows, tables, error = [], {}, ""
        self._eval_progress.param.update(value=0, max=len(runs) * len(questions), visible=True)
        try:
            with kit.loading(self._eval_plot):
                base, _ = self.pipeline()
                for i, (label, mode, reranker) in enumerate(runs):
                    def tick(done: int, _total: int, offset: int = i * len(questions)) -> None:
                        self._eval_progress.value = offset + done

                    table = assess(self.configured(base, mode, reranker), questions, rerank=reranker != "off",
                                   progress=tick)
                    tables[label] = table
                    rows.append({"configuration": label, **summary(table)})
        except Exception as exc:  # the student's chunker, fusion or reranker may raise anything; show it
            error = kit.describe(exc)
        finally:
            self._eval_progress.visible = False
        setting = f"{self.chunking_label()}; current configuration: {current}"
        self.evaluation = Evaluation(pd.DataFrame(rows, columns=SUMMARY_COLUMNS),
                                     tables.get(current, pd.DataFrame(columns=COLUMNS)), setting, len(questions),
                                     time.perf_counter() - started, error)

    # ---- data behind the views (tidy frames, also what the tests look at) ------------------

    def cited(self) -> dict[str, int]:
        """Citation number per cited chunk id of the current answer."""
        r = self.shown.result
        return {c.chunk_id: c.n for c in r.answer.citations} if r is not None else {}

    def stage_table(self, stage: str) -> pd.DataFrame:
        """One stage's list: rank, chunk id, "doc § section", the stage's own score, citation number (0: not cited)."""
        r = self.shown.result
        hits: Sequence[Hit] = r.retrieval.stages.get(stage, []) if r is not None else []
        cited = self.cited()
        return pd.DataFrame(
            [(i, h.chunk.chunk_id, chunk_label(h.chunk), h.score, cited.get(h.chunk.chunk_id, 0))
             for i, h in enumerate(hits, 1)],
            columns=STAGE_COLUMNS,
        )

    def timings(self) -> pd.DataFrame:
        """Milliseconds per stage of the current query (stages the mode skips are absent)."""
        r = self.shown.result
        ms = r.timings_ms if r is not None else {}
        return pd.DataFrame([(s, ms[s]) for s in TIMED_STAGES if s in ms], columns=["stage", "ms"])

    def scores(self) -> pd.DataFrame:
        """The evaluation in long form: configuration, metric, value."""
        rows = [(row["configuration"], m, row[m]) for _, row in self.evaluation.summary.iterrows() for m in METRICS]
        return pd.DataFrame(rows, columns=["configuration", "metric", "value"])

    # ---- views -----------------------------------------------------------------------------

    @param.depends("shown")
    def headline(self) -> pn.pane.Markdown:
        """What ran: the chunking, its chunk count, and how long the query (and any build) took."""
        s = self.shown
        built = f"built in {s.build_seconds:.1f} s" if s.build_seconds else "cached"
        text = (f"**{self.mode}** retrieval, fusion **{self.fusion}**, reranker **{self.reranker}**, k = {self.k} · "
                f"chunking {s.chunking or '—'} ({s.chunks} chunks, pipeline {built}) · "
                f"answered in **{s.query_seconds * 1000:.0f} ms**")
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("shown")
    def error_view(self) -> pn.pane.Alert:
        """What went wrong (your code's exceptions land here instead of crashing the page)."""
        return pn.pane.Alert(f"Could not answer: `{self.shown.error}`", alert_type="danger",
                             visible=bool(self.shown.error), sizing_mode="stretch_width")

    @param.depends("shown")
    def answer_view(self) -> pn.pane.HTML:
        """The answer with each [n] as a coloured badge, the citation check, and the cited chunks."""
        r = self.shown.result
        if r is None:
            return pn.pane.HTML("", sizing_mode="stretch_width")
        a = r.answer
        if a.refused:
            body = (f'<div class="rag-refused"><b>Refused: {html.escape(a.text)}.</b> No retrieved sentence scores '
                    f"above the answerer's threshold ({self.shown.min_score:g}), so it says so instead of "
                    "guessing.</div>")
        else:
            marked = re.sub(r"\s*\[(\d+)\]", lambda m: badge(int(m.group(1))), html.escape(a.text))
            check = a.check
            problems = "".join(f"<li>{html.escape(p)}</li>" for p in check.problems)
            body = (f'<div class="rag-answer">{marked}</div>'
                    f"<p><b>Citation check:</b> {check.supported} of {check.cited} cited sentences supported by "
                    f"the chunk they cite ({check.rate:.0%})</p>" + (f"<ul>{problems}</ul>" if problems else ""))
        texts = {h.chunk.chunk_id: h.chunk.text for h in r.hits}
        sources = "".join(self._source(c.n, c.doc_id, c.page, c.section, c.start, c.end, texts.get(c.chunk_id, ""))
                          for c in a.citations)
        return pn.pane.HTML(f"<style>{_CSS}</style>{body}{sources}", sizing_mode="stretch_width")

    @staticmethod
    def _source(n: int, doc: str, page: int, section: str, start: int, end: int, text: str) -> str:
        where = " · ".join(p for p in (html.escape(doc), f"page {page}" if page else "",
                                       f"§ {html.escape(section)}" if section else "", f"characters {start}–{end}") if p)
        snippet = html.escape(text if len(text) <= 400 else text[:400] + " …")
        return (f'<div class="rag-source" style="border-color:{citation_color(n)}">{badge(n)} {where}'
                f"<blockquote>{snippet}</blockquote></div>")

    @param.depends("shown")
    def stages_view(self) -> pn.FlexBox:
        """BM25, dense, fused and reranked lists side by side; rows of cited chunks tinted in their citation's colour."""
        r = self.shown.result
        # Two lists a row: four side by side would wrap every "doc § section" onto three lines.
        boxes = [pn.pane.HTML(self._stage_html(stage, title, r), min_width=320, sizing_mode="stretch_width",
                              styles={"flex": "1 1 45%"})
                 for stage, title in STAGES.items()]
        return pn.FlexBox(*boxes, flex_wrap="wrap", sizing_mode="stretch_width")

    def _stage_html(self, stage: str, title: str, r: QueryResult | None) -> str:
        table = self.stage_table(stage)
        head = f"<style>{_CSS}</style><b>{title}</b>"
        if table.empty:
            why = "no query" if r is None else self._empty_reason(stage)
            return f'{head}<p style="color:#888">— {why}</p>'
        rows = []
        for row in table.itertuples():
            tint = f' style="background:{citation_color(row.cited)}33"' if row.cited else ""
            mark = badge(row.cited) if row.cited else ""
            rows.append(f"<tr{tint}><td class=num>{row.rank}</td><td>{html.escape(row.chunk)} "
                        f"<span class=id>#{html.escape(row.chunk_id.rsplit('#', 1)[-1])}</span></td>"
                        f"<td class=num>{row.score:.4g}</td><td>{mark}</td></tr>")
        return (f'{head}<table class="rag-table"><tr><th class=num>#</th><th>chunk (doc § section)</th>'
                f"<th class=num>score</th><th>cited</th></tr>{''.join(rows)}</table>")

    def _empty_reason(self, stage: str) -> str:
        # BM25 finds nothing when no query term is in the corpus ("capital of France"): not the mode's doing.
        if stage == "reranked" and self.reranker == "off":
            return "reranker off"
        if stage in ("bm25", "dense") and self.mode not in (stage, "hybrid"):
            return f"not used in {self.mode} mode"
        return "no chunk shares a term with the question" if stage == "bm25" else "nothing retrieved"

    @param.depends("shown")
    def timing_plot(self) -> hv.Bars:
        """Milliseconds per stage of the current query."""
        frame = self.timings()
        if frame.empty:
            frame = pd.DataFrame({"stage": ["answer"], "ms": [0.0]})
        return kit.bar_plot(frame, "stage", "ms", title="Time per stage of this query", xlabel="stage",
                            ylabel="time (ms)", legend=False)

    @param.depends("evaluation")
    def evaluation_plot(self) -> hv.Bars:
        """nDCG@10, Recall@10, MRR and refusal accuracy per configuration."""
        frame = self.scores()
        if frame.empty:
            frame = pd.DataFrame({"metric": list(METRICS), "value": 0.0, "configuration": "not evaluated yet"})
        return kit.bar_plot(frame, "metric", "value", by="configuration", xlabel="metric", ylabel="score (0–1)",
                            title="Retrieval quality and refusals on the labelled questions").opts(
            ylim=(0, 1.05), xrotation=0, legend_position="right")  # inside, the legend would hide the bars

    @param.depends("evaluation")
    def evaluation_note(self) -> pn.viewable.Viewable:
        """What the numbers were computed on, or the error."""
        e = self.evaluation
        if e.error:
            return pn.pane.Alert(f"Could not evaluate: `{e.error}`", alert_type="danger", sizing_mode="stretch_width")
        if not e.questions:
            return pn.pane.Markdown("Press the button to score the current chunking (the first run of a new chunking "
                                    "embeds it; later runs hit the cache).", margin=(0, 10))
        return pn.pane.Markdown(f"{e.questions} labelled questions, chunking {e.setting}; computed in "
                                f"{e.seconds:.1f} s. Change the sidebar and press again to compare.",
                                sizing_mode="stretch_width", margin=(0, 10))

    def evaluation_table(self) -> pn.widgets.Tabulator:
        """One row per configuration: the means ``lab_core.rag.assess.summary`` computes."""
        return pn.widgets.Tabulator(pn.bind(lambda e: e.summary.round(3), self.param.evaluation), disabled=True,
                                    show_index=False, sizing_mode="stretch_width", layout="fit_columns",
                                    widths={"configuration": 220}, titles={"refusal_accuracy": "refusal acc.", "citation_support": "citation support",
                                            "latency_ms_p50": "p50 (ms)"})

    def questions_table(self) -> pn.widgets.Tabulator:
        """The current configuration's score on each question."""
        return pn.widgets.Tabulator(pn.bind(lambda e: e.current.round(3), self.param.evaluation), disabled=True,
                                    show_index=False, sizing_mode="stretch_width", layout="fit_columns",
                                    pagination="local", page_size=12, widths={"id": 60, "question": 380},
                                    formatters={"question": {"type": "textarea"}},  # wrapped, not cut off
                                    titles={"nDCG@10": "nDCG", "Recall@10": "recall", "should_refuse": "refuse?",
                                            "citation_support": "support", "latency_ms": "ms"})

    def controls(self) -> pn.Column:
        """The sidebar: the question, chunking, retrieval and reranking."""
        return pn.Column(
            kit.controls(self, ["query"]),
            self._ask,
            kit.controls(self, ["strategy", "size", "overlap"], title="Chunking"),
            pn.pane.Markdown(f"“sentences” windows hold size ÷ {WORDS_PER_SENTENCE} sentences (the corpus "
                             "averages that many words a sentence).", margin=(0, 10)),
            self._progress,
            self._retrieval_controls(),
            sizing_mode="stretch_width",
        )

    def _retrieval_controls(self) -> pn.Column:
        """Mode, fusion, weight, k, reranker; fusion is greyed out unless hybrid, the weight unless weighted."""
        column = kit.controls(self, ["mode", "fusion", "weight", "k", "reranker"], title="Retrieval")
        by_label = {w.name: w for w in column.select(pn.widgets.Widget)}
        fusion, weight = by_label[self.param.fusion.label], by_label[self.param.weight.label]

        def follow(*_events: object) -> None:
            fusion.disabled = self.mode != "hybrid"
            weight.disabled = self.mode != "hybrid" or self.fusion != "weighted"

        self.param.watch(follow, ["mode", "fusion"])
        follow()
        return column

    def main(self) -> pn.Tabs:
        """The query tab (answer, stage lists, timing) and the evaluation tab."""
        query = pn.Column(self.error_view, self.headline, self.answer_view,
                          pn.pane.Markdown("#### Each stage's top k (rows of cited chunks in their citation's colour)"),
                          self.stages_view, self._timing, sizing_mode="stretch_width")
        evaluation = pn.Column(self._evaluate, self._eval_progress, self.evaluation_note, self.evaluation_table(),
                               self._eval_plot, pn.pane.Markdown("#### The current configuration, question by question"),
                               self.questions_table(), sizing_mode="stretch_width")
        return pn.Tabs(("Answer", query), ("Evaluation", evaluation), sizing_mode="stretch_width", dynamic=False)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls(), width=320), self.main(), sizing_mode="stretch_width")


def dashboard(
    chunker: Chunker | None = None,
    fusion: RankFusion | None = None,
    reranker: Reranker | None = None,
    **params: object,
) -> RagDashboard:
    """The dashboard for a notebook. A ``chunker`` (``Document -> list[Chunk]``), ``fusion``
    (``(rankings, k) -> [(chunk_id, score)]``) or ``reranker`` (``(query, hits) -> hits``) appears as
    "yours" and is chosen; ``embedder="hash"`` trades answer quality for speed."""
    return RagDashboard(chunker=chunker, fusion=fusion, reranker=reranker, **params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in a page template, one per browser session (``syslab serve``)."""
    dash = RagDashboard()
    return pn.template.FastListTemplate(
        title="Lab 06 · RAG",
        sidebar=[dash.controls()],
        main=[dash.main()],
        sidebar_width=340,
        accent="#1f77b4",
    )
