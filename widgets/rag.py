"""Retrieval-augmented answers over the course notes: BM25, dense, fused and reranked lists, cited answers.

Lab 06's dashboard, parameters and plots over ``lab_core.rag.experiments``: ``dashboard(chunker=...,
fusion=..., reranker=..., cite=..., ndcg=...)`` in a notebook, ``app()`` for ``syslab serve``. A
pipeline is built once per chunking and kept, so changing the question, the retrieval mode, the
fusion, k, the reranker or the citations only re-queries. The evaluation tab scores bm25, dense,
hybrid and hybrid + rerank on the labelled questions at the current chunking, first when it is opened.
The HTML it shows (the cited answer, the ranked lists, the tables) is written by ``widgets.rag_html``.
"""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import panel as pn
import param

from lab_core.rag import experiments as ex
from lab_core.rag.answer import cite
from lab_core.rag.chunking import CHUNKERS, ChunkConfig
from lab_core.rag.evaluation import ndcg_at_k
from lab_core.rag.fusion import rrf
from lab_core.rag.protocol import Chunker
from lab_core.rag.rerank import default_reranker
from widgets import kit
from widgets.rag_html import answer_html, html_table, ranked_list

YOURS = "yours"
DEFAULT_QUERY = "Why does a fixed window counter let a client send twice its limit?"
#: The parameter each plug-in's "yours" joins (``ndcg`` has none: it adds a column to the evaluation).
CHOOSES = {"chunker": "strategy", "fusion": "fusion", "reranker": "reranker", "cite": "citations"}
#: One colour per stage whatever the mode runs, so a stage keeps its colour from query to query.
STAGE_COLORS = dict(zip(ex.TIMED_STAGES, kit.PALETTE))


class RagDashboard(kit.LabDashboard):
    """A question answered from the course notes, with every retrieval stage, its timing and its evaluation."""

    lab = "rag"
    plugins = {
        "chunker": kit.Plugin(
            "chunker", "lab_core.rag.protocol.Chunker: Document -> list[Chunk]", ex.reference_chunker
        ),
        "fusion": kit.Plugin(
            "rank fusion", "lab_core.rag.protocol.RankFusion: (rankings, k) -> [(chunk_id, score)]", rrf
        ),
        "reranker": kit.Plugin("reranker", "lab_core.rag.protocol.Reranker: (query, hits) -> hits", default_reranker()),
        "cite": kit.Plugin("citation function", "lab_core.rag.protocol.Cite: sentences -> (text, citations)", cite),
        "ndcg": kit.Plugin(
            "ranking metric", "lab_core.rag.protocol.RankingMetric: (ranked, relevant, k) -> float", ndcg_at_k
        ),
    }

    query = param.String(DEFAULT_QUERY, label="Question")
    strategy = param.Selector(default="recursive", objects=list(CHUNKERS), label="Chunking strategy")
    size = param.Integer(200, bounds=(50, 400), step=10, label="Chunk size (words)")
    overlap = param.Integer(40, bounds=(0, 100), step=5, label="Overlap (words)")
    mode = param.Selector(default="hybrid", objects=["hybrid", "dense", "bm25"], label="Retrieval mode")
    fusion = param.Selector(default="rrf", objects=["rrf", "weighted"], label="Fusion of the two lists")
    weight = param.Number(0.5, bounds=(0.0, 1.0), step=0.05, label="Dense weight (share of the fused score)")
    k = param.Integer(5, bounds=(1, 20), label="Results per list (k)")
    reranker = param.Selector(default="reference", objects=["off", "reference"], label="Reranker")
    citations = param.Selector(default="reference", objects=["reference"], label="Citations (cite)")
    asked = param.ClassSelector(class_=ex.Asked, default=None, allow_None=True, precedence=-1, doc="the latest answer")
    evaluation = param.ClassSelector(
        class_=ex.Evaluation, default=ex.Evaluation(), precedence=-1, doc="the latest evaluation"
    )
    evaluation_error = param.String("", precedence=-1, doc="why the latest evaluation failed")

    def __init__(self, embedder: str = "minilm", **params: object) -> None:
        # A name picks a built-in choice (``dashboard(reranker="off")``); a function is the student's, "yours".
        chosen = {
            CHOOSES[name]: params.pop(name)
            for name in list(params)
            if name in CHOOSES and isinstance(params[name], str)
        }
        explicit = {name for name in params if name not in self.plugins}
        super().__init__(**params)
        for name, parameter in CHOOSES.items():
            if name in self.yours:
                self.param[parameter].objects = [*self.param[parameter].objects, YOURS]
                if parameter not in explicit:
                    chosen.setdefault(parameter, YOURS)
        with param.discard_events(self):
            self.param.update(chosen)
            self._limit_overlap()
        self._pipelines = ex.Pipelines(embedder)
        self._eval_progress = kit.progress_bar()
        self._ask = pn.widgets.Button(label="Ask", color="primary", sizing_mode="stretch_width")
        self._ask.on_click(lambda _e: self.requery())
        self._evaluate = pn.widgets.Button(label="Evaluate on the labelled questions", color="primary", width=320)
        self._evaluate.on_click(lambda _e: self.evaluate())
        # A DynamicMap updates the drawn figure's data in place, several times faster than redrawing it.
        self._timing = pn.pane.HoloViews(hv.DynamicMap(self.timing_plot), sizing_mode="stretch_width")
        # Drawn once an evaluation exists: never empty axes or tables.
        self._eval_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width")
        means, per_question = self.evaluation_tables()
        self._results = pn.Column(
            means,
            self._eval_plot,
            pn.pane.Markdown("#### The current configuration, question by question"),
            per_question,
            visible=False,
            sizing_mode="stretch_width",
        )
        self.requery()

    # ---- computing -------------------------------------------------------------------------

    def chunking(self) -> ChunkConfig | Chunker:
        """The chunk settings, or the student's chunker; "sentences" counts its window in sentences."""
        if self.strategy == YOURS:
            return self.yours["chunker"]
        return ex.chunk_config(self.strategy, self.size, self.overlap)

    def chunking_label(self) -> str:
        """The chunking in words a reader checks: "recursive, 200 words, overlap 40"."""
        config = self.chunking()
        return ex.chunking_label(config) if isinstance(config, ChunkConfig) else "your chunker"

    def setting(self) -> ex.Setting:
        """How the question is answered: mode, fusion, reranker and cite, each the reference's or yours."""
        rerankers = {"off": None, "reference": self.plugins["reranker"].reference, YOURS: self.yours.get("reranker")}
        fusion = self.yours["fusion"] if self.fusion == YOURS else self.fusion
        cite_fn = self.yours.get("cite") if self.citations == YOURS else None
        return ex.Setting(self.mode, fusion, float(self.weight), rerankers[self.reranker], cite_fn)

    @param.depends("size", watch=True)
    def _limit_overlap(self) -> None:
        """The overlap stays below the chunk size."""
        top = min(100, int(self.size) - 1)
        self.param.overlap.bounds = (0, top)
        if self.overlap > top:
            self.overlap = top  # triggers its own re-query; the one for this change follows, on the kept pipeline

    @param.depends(
        "query", "strategy", "size", "overlap", "mode", "fusion", "weight", "k", "reranker", "citations", watch=True
    )
    def requery(self) -> None:
        """Answer the question with the current settings (building the chunking's pipeline if new)."""
        token = self.begin()
        errors: dict[str, str] = {}
        asked = self.attempt(
            errors,
            "answer",
            ex.ask,
            self._pipelines,
            self.chunking(),
            self.query,
            self.setting(),
            int(self.k),
            progress=kit.reporter(self._progress),
        )
        if self.is_latest(token):
            self._timing.visible = asked is not None
            self.param.update(asked=asked, errors=errors)

    def evaluate(self) -> None:
        """Score each configuration on the labelled questions at the current chunking; publish ``evaluation``."""
        setting, bar, errors = self.setting(), kit.reporter(self._eval_progress), {}
        runs = ex.sweep(
            setting,
            self.plugins["reranker"].reference,
            "your fusion" if self.fusion == YOURS else self.fusion,
            "your" if self.reranker == YOURS else self.reranker,
        )
        current = next(label for label, s in runs if s == setting)

        def run() -> ex.Evaluation:
            base, _ = self._pipelines.get(self.chunking(), bar)
            return ex.evaluate(
                base, runs, current=current, chunking=self.chunking_label(), ndcg=self.yours.get("ndcg"), progress=bar
            )

        self._evaluate.disabled = True
        try:
            result = self.attempt(errors, "evaluation", run)
        finally:
            self._evaluate.disabled = False
            self._eval_progress.visible = False
        evaluation = result or ex.Evaluation()
        if evaluation.questions:
            self._eval_plot.object = self.evaluation_plot(evaluation)
        self._results.visible = bool(evaluation.questions)
        self.param.update(evaluation=evaluation, evaluation_error=errors.get("evaluation", ""))

    def _first_visit(self, event: param.parameterized.Event) -> None:
        # The evaluation takes seconds: run it when its tab is first opened, not on every page load.
        if event.new == 1 and not self.evaluation.questions and not self._evaluate.disabled:
            self.evaluate()

    # ---- views -----------------------------------------------------------------------------

    @param.depends("asked")
    def headline(self) -> pn.pane.Markdown:
        """What ran: the setting, the chunking and its chunk count, and how long the query (and any build) took."""
        a = self.asked
        if a is None:
            return pn.pane.Markdown("", margin=0)
        built = f"built in {a.build_seconds:.1f} s" if a.build_seconds else "kept"
        fusion = f", fusion **{self.fusion}**" if self.mode == "hybrid" else ""
        text = (
            f"**{self.mode}** retrieval{fusion}, reranker **{self.reranker}**, k = {self.k} · chunking "
            f"{self.chunking_label()} ({a.chunks} chunks, pipeline {built}) · answered in "
            f"**{a.query_seconds * 1000:.0f} ms**"
        )
        return pn.pane.Markdown(text, sizing_mode="stretch_width", margin=(0, 10))

    @param.depends("asked")
    def answer_view(self) -> pn.pane.HTML:
        """The answer with each [n] as a coloured badge, the citation check, and the cited chunks."""
        return pn.pane.HTML(answer_html(self.asked) if self.asked else "", sizing_mode="stretch_width")

    @param.depends("asked")
    def stages_view(self) -> pn.FlexBox:
        """The lists the mode produces side by side (BM25, dense, fused, reranked); cited chunks' rows tinted
        in their citation's colour. A mode's lists only: bm25 mode has no dense list and nothing to fuse."""
        lists = self.asked.lists if self.asked else {}
        # Two lists a row: four side by side would wrap every "doc § section" onto three lines.
        boxes = [
            pn.pane.HTML(
                ranked_list(stage, lists[stage], self.asked.setting),
                min_width=320,
                sizing_mode="stretch_width",
                styles={"flex": "1 1 45%"},
            )
            for stage in ex.LISTS
            if stage in lists
        ]
        return pn.FlexBox(*boxes, flex_wrap="wrap", sizing_mode="stretch_width")

    @param.depends("asked")
    def timing_plot(self) -> hv.Bars:
        """Milliseconds per stage of the current query, each stage in its own fixed colour."""
        frame = self.asked.timings if self.asked else pd.DataFrame({"stage": ["answer"], "ms": [0.0]})
        return kit.bar_plot(
            frame,
            "stage",
            "ms",
            title="Time per stage of this query (ms)",
            xlabel="stage",
            ylabel="time (ms)",
            colors=STAGE_COLORS,
            legend=False,
        )

    @staticmethod
    def evaluation_plot(evaluation: ex.Evaluation) -> hv.Bars:
        """nDCG@10 (and yours), Recall@10, MRR and refusal accuracy per configuration."""
        frame = evaluation.scores().replace({"metric": {"refusal_accuracy": "refusal accuracy"}})
        return kit.bar_plot(
            frame,
            "metric",
            "value",
            by="configuration",
            xlabel="metric",
            ylabel="score (0–1)",
            title="Retrieval quality and refusals on the labelled questions",
        ).opts(ylim=(0, 1.05), xrotation=0, legend_position="right")  # inside, the legend would hide the bars

    @param.depends("evaluation", "evaluation_error")
    def evaluation_note(self) -> pn.viewable.Viewable:
        """What the numbers were computed on, or the error."""
        e = self.evaluation
        if self.evaluation_error:
            return pn.pane.Alert(
                f"Could not evaluate: `{self.evaluation_error}`", alert_type="danger", sizing_mode="stretch_width"
            )
        if not e.questions:
            return pn.pane.Markdown(
                "Scores every retrieval setting on the labelled questions at the current "
                "chunking (a new chunking is embedded first).",
                margin=(0, 10),
            )
        return pn.pane.Markdown(
            f"{e.questions} labelled questions, chunking {e.chunking}; current configuration: "
            f"{e.current}; computed in {e.seconds:.1f} s. Change the sidebar and press again "
            "to compare.",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )

    def evaluation_tables(self) -> tuple[pn.pane.HTML, pn.pane.HTML]:
        """The means per configuration (``assess.summary``) and the current one's score on each question."""
        return tuple(
            pn.pane.HTML(
                pn.bind(lambda e, s=scroll: html_table(e.current_table if s else e.summary, s), self.param.evaluation),
                sizing_mode="stretch_width",
            )
            for scroll in (False, True)
        )

    def controls(self) -> pn.Column:
        """The sidebar: the question, chunking, retrieval and reranking (and citations when yours is given)."""
        return pn.Column(
            kit.controls(self, ["query"]),
            self._ask,
            kit.controls(self, ["strategy", "size", "overlap"], title="Chunking"),
            pn.pane.Markdown(
                f"“sentences” windows hold size ÷ {ex.WORDS_PER_SENTENCE} sentences (the corpus "
                "averages that many words a sentence).",
                margin=(0, 10),
            ),
            self._progress,
            self._retrieval_controls(),
            sizing_mode="stretch_width",
        )

    def _retrieval_controls(self) -> pn.Column:
        """Mode, fusion, weight, k, reranker: the fusion shows in hybrid mode only, the weight with weighted fusion."""
        names = ["mode", "fusion", "weight", "k", "reranker", *(["citations"] if "cite" in self.yours else [])]
        column = kit.controls(self, names, title="Retrieval")
        by_label = {w.name: w for w in column.select(pn.widgets.Widget)}
        fusion, weight = by_label[self.param.fusion.label], by_label[self.param.weight.label]

        def follow(*_events: object) -> None:
            fusion_applies = self.mode == "hybrid"
            weight_applies = fusion_applies and self.fusion == "weighted"
            fusion.param.update(visible=fusion_applies, disabled=not fusion_applies)
            weight.param.update(visible=weight_applies, disabled=not weight_applies)

        self.param.watch(follow, ["mode", "fusion"])
        follow()
        return column

    def main(self) -> pn.Tabs:
        """The query tab (answer, each list, timing) and the evaluation tab."""
        query = pn.Column(
            self.error_view,
            self.headline,
            self.answer_view,
            pn.pane.Markdown("#### Each list's top k (rows of cited chunks in their citation's colour)"),
            self.stages_view,
            self._timing,
            sizing_mode="stretch_width",
        )
        evaluation = pn.Column(
            self._evaluate, self._eval_progress, self.evaluation_note, self._results, sizing_mode="stretch_width"
        )
        tabs = pn.Tabs(("Answer", query), ("Evaluation", evaluation), sizing_mode="stretch_width", dynamic=False)
        tabs.param.watch(self._first_visit, "active")
        return tabs


Dashboard = RagDashboard


def dashboard(**params: object) -> RagDashboard:
    """The dashboard for a notebook. A ``chunker`` (``Document -> list[Chunk]``), ``fusion`` (``(rankings,
    k) -> [(chunk_id, score)]``), ``reranker`` (``(query, hits) -> hits``) or ``cite`` appears as "yours"
    and is chosen; an ``ndcg`` adds its column to the evaluation. ``embedder="hash"`` trades quality for speed."""
    return RagDashboard(**params)


def app() -> pn.template.FastListTemplate:
    """A fresh dashboard in the lab's page, one per browser session (``syslab serve``)."""
    return RagDashboard.page()
