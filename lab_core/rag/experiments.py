"""What Lab 06's dashboard runs, as data the notebook and benchmark can call too: pipelines over the
demo corpus kept per chunking, one question answered in a retrieval setting (each ranked list the
setting produces, milliseconds per stage), and the evaluation sweep over the labelled questions."""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from lab_core.rag.assess import COLUMNS, assess, summary
from lab_core.rag.chunking import ChunkConfig
from lab_core.rag.corpus import LabelledQuestion, load_questions
from lab_core.rag.documents import Chunk, Document
from lab_core.rag.fusion import rrf
from lab_core.rag.pipeline import QueryResult, RagPipeline, check_query
from lab_core.rag.protocol import Chunker, Cite, RankFusion, RankingMetric, Reranker
from lab_core.rag.retrieval import Fusion, Hit, Mode, RetrievalConfig
from lab_core.rag.system import build_pipeline
from lab_core.sim import Progress

DEFAULT_CHUNKING = ChunkConfig("recursive", 200, 40)
#: The demo corpus averages 17 words a sentence: the "sentences" chunker's window is the word size over it.
WORDS_PER_SENTENCE = 17
#: Questions scored under SYSLAB_FAST=1 (notebook runs in CI): enough to cover every document type.
FAST_QUESTIONS = 12
TIMED_STAGES = ("embed", "dense", "bm25", "fuse", "rerank", "answer")
LISTS = ("bm25", "dense", "fused", "reranked")
LIST_COLUMNS = ["rank", "chunk_id", "chunk", "score", "cited"]
#: Each ranked list's title and the name of its score; the fused list's depend on the fusion.
LIST_HEADINGS = {
    "bm25": ("BM25", "BM25 score"),
    "dense": ("Dense", "cosine"),
    "reranked": ("Reranked", "reranker score"),
}
SOURCE_COLUMNS = ["n", "place", "snippet"]
#: Characters of a cited chunk shown under its citation; longer chunks end in " …".
SNIPPET_CHARS = 400
METRICS = ("nDCG@10", "Recall@10", "MRR", "refusal_accuracy")
SUMMARY_COLUMNS = ["configuration", *METRICS, "citation_support", "latency_ms_p50"]
#: The column a student's nDCG fills beside the reference's, on the same ranked lists.
YOUR_NDCG = "nDCG@10 (yours)"


def chunk_config(strategy: str, size: int, overlap: int) -> ChunkConfig:
    """``strategy`` at ``size`` and ``overlap`` words (overlap capped below size); "sentences" counts
    its window in sentences of the corpus's average length."""
    if strategy == "sentences":
        window = max(1, round(size / WORDS_PER_SENTENCE))
        return ChunkConfig("sentences", window, min(round(overlap / WORDS_PER_SENTENCE), window - 1))
    return ChunkConfig(strategy, int(size), min(int(overlap), int(size) - 1))


def chunking_label(config: ChunkConfig) -> str:
    """The chunking in words a reader checks: "recursive, 200 words, overlap 40"."""
    unit = "sentences" if config.strategy == "sentences" else "words"
    return f"{config.strategy}, {config.size} {unit}, overlap {config.overlap}"


def reference_chunker(doc: Document) -> list[Chunk]:
    """The reference chunker at the default chunking (recursive, 200 words, overlap 40)."""
    return DEFAULT_CHUNKING.chunker()(doc)


def evaluation_questions() -> list[LabelledQuestion]:
    """The labelled questions an evaluation scores (the first few under ``SYSLAB_FAST=1``)."""
    questions = load_questions()
    return questions[:FAST_QUESTIONS] if os.environ.get("SYSLAB_FAST") == "1" else questions


class Pipelines:
    """Pipelines over the demo corpus, one per chunking, built on first use and kept. Embeddings are
    cached on disk by content, so a new chunking embeds only the chunks not seen before."""

    def __init__(self, embedder: str = "minilm") -> None:
        self.embedder = embedder
        self._built: dict[Hashable, RagPipeline] = {}
        # One build at a time: two quick slider moves must not embed the same chunking twice.
        self._lock = threading.Lock()

    def get(self, chunking: ChunkConfig | Chunker, progress: Progress | None = None) -> tuple[RagPipeline, float]:
        """The pipeline of ``chunking`` (a chunker function is kept by identity) and the seconds its
        build took (0 when kept); ``progress`` follows the chunks being embedded."""
        with self._lock:
            if chunking in self._built:
                return self._built[chunking], 0.0
            started = time.perf_counter()

            def embedded(done: int, total: int) -> None:
                if progress is not None:
                    progress(done, total, "embedding chunks")

            # The embedder reports only chunks missing from the disk cache: open and close the report here.
            embedded(0, 1)
            built = build_pipeline(self.embedder, chunking, progress=embedded)
            embedded(1, 1)
            self._built[chunking] = built
            return built, time.perf_counter() - started


@dataclass(frozen=True)
class Setting:
    """How a question is answered on a built pipeline: the retrieval ``mode``; ``fusion``, "rrf",
    "weighted" (``weight`` = the dense share) or a function in RRF's place; the ``reranker`` (None: no
    reranking); the answerer's ``cite`` (None: the reference)."""

    mode: Mode = "hybrid"
    fusion: Fusion | RankFusion = "rrf"
    weight: float = 0.5
    reranker: Reranker | None = None
    cite: Cite | None = None

    def lists(self) -> tuple[str, ...]:
        """The ranked lists it produces: each retriever the mode uses, "fused" only when two lists are
        fused (one list "fused" alone is itself), "reranked" when it reranks."""
        used = {"hybrid": ("bm25", "dense", "fused"), "dense": ("dense",), "bm25": ("bm25",)}[self.mode]
        return (*used, "reranked") if self.reranker is not None else used

    def stages(self) -> tuple[str, ...]:
        """The stages it runs and times, in pipeline order."""
        runs = {
            "embed": self.mode != "bm25",
            "dense": self.mode != "bm25",
            "bm25": self.mode != "dense",
            "fuse": self.mode == "hybrid",
            "rerank": self.reranker is not None,
            "answer": True,
        }
        return tuple(stage for stage in TIMED_STAGES if runs[stage])

    def configure(self, base: RagPipeline) -> RagPipeline:
        """``base`` answering this way: a shallow copy sharing its index, so nothing is re-embedded."""
        variant = copy.copy(base)
        custom = callable(self.fusion)
        variant.retrieval = RetrievalConfig(
            mode=self.mode, fusion="rrf" if custom else self.fusion, weight=float(self.weight)
        )
        variant.rank_fusion = self.fusion if custom else rrf
        variant.reranker = self.reranker
        if self.cite is not None:
            variant.answerer = dataclasses.replace(base.answerer, cite=self.cite)
        return variant


def list_heading(stage: str, setting: Setting) -> tuple[str, str]:
    """A ranked list's title and the name of its score, as ``setting`` computes them."""
    if stage != "fused":
        return LIST_HEADINGS[stage]
    if callable(setting.fusion):
        return "Fused by your fusion", "your score"
    if setting.fusion == "rrf":
        return "Fused (reciprocal rank fusion)", "RRF score"
    return f"Fused (weighted, dense weight {setting.weight:g})", "weighted score (0–1)"


@dataclass(frozen=True, eq=False)
class Asked:
    """One question answered in ``setting``: the result, each list the setting produces (``LIST_COLUMNS``;
    ``cited`` is the citation number, 0 when not cited), the citation number of each cited chunk id,
    milliseconds per stage it ran, and what it cost."""

    result: QueryResult
    setting: Setting
    lists: dict[str, pd.DataFrame]
    cited: dict[str, int]
    timings: pd.DataFrame
    chunks: int
    build_seconds: float
    query_seconds: float
    min_score: float


def list_table(hits: Sequence[Hit], cited: dict[str, int]) -> pd.DataFrame:
    """One ranked list: rank, chunk id, "doc § section", the stage's own score, citation number (0: none)."""
    rows = [
        (
            i,
            h.chunk.chunk_id,
            f"{h.chunk.doc_id} § {h.chunk.section}" if h.chunk.section else h.chunk.doc_id,
            h.score,
            cited.get(h.chunk.chunk_id, 0),
        )
        for i, h in enumerate(hits, 1)
    ]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def ask(
    pipelines: Pipelines,
    chunking: ChunkConfig | Chunker,
    query: str,
    setting: Setting,
    k: int = 5,
    progress: Progress | None = None,
) -> Asked:
    """Answer ``query`` in ``setting`` over ``chunking``'s pipeline (built first if new, with ``progress``)."""
    query = check_query(query)
    base, build = pipelines.get(chunking, progress)
    started = time.perf_counter()
    result = setting.configure(base).query(query, k=k, rerank=setting.reranker is not None)
    seconds = time.perf_counter() - started
    cited = {c.chunk_id: c.n for c in result.answer.citations}
    lists = {stage: list_table(result.retrieval.stages.get(stage, []), cited) for stage in setting.lists()}
    ms = result.timings_ms
    timings = pd.DataFrame([(s, ms[s]) for s in setting.stages() if s in ms], columns=["stage", "ms"])
    min_score = getattr(base.answerer, "min_score", 0.0)
    return Asked(result, setting, lists, cited, timings, len(base.index), build, seconds, min_score)


def sources(asked: Asked) -> pd.DataFrame:
    """The answer's citations in number order (``SOURCE_COLUMNS``): where each cited chunk is
    ("doc · page 3 · § section · characters a–b") and the start of its text."""
    texts = {h.chunk.chunk_id: h.chunk.text for h in asked.result.hits}
    rows = []
    for c in asked.result.answer.citations:
        place = [c.doc_id, f"page {c.page}" if c.page else "", f"§ {c.section}" if c.section else ""]
        text = texts.get(c.chunk_id, "")
        snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + " …"
        rows.append((c.n, " · ".join(p for p in [*place, f"characters {c.start}–{c.end}"] if p), snippet))
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


def sweep(current: Setting, reference: Reranker, fusion_name: str, reranker_name: str) -> list[tuple[str, Setting]]:
    """(label, setting) of what an evaluation scores: bm25, dense, hybrid and hybrid + rerank with
    ``current``'s fusion, cite and reranker (``reference`` when it has none), then ``current`` itself
    when it is none of those. The names label the fusion and the reranker ("reference", "your")."""
    rerank = current.reranker or reference
    named = "rerank" if current.reranker is None or reranker_name == "reference" else f"{reranker_name} rerank"
    runs = [
        ("bm25", dataclasses.replace(current, mode="bm25", reranker=None)),
        ("dense", dataclasses.replace(current, mode="dense", reranker=None)),
        (f"hybrid ({fusion_name})", dataclasses.replace(current, mode="hybrid", reranker=None)),
        (f"hybrid ({fusion_name}) + {named}", dataclasses.replace(current, mode="hybrid", reranker=rerank)),
    ]
    if all(setting != current for _, setting in runs):
        runs.append((f"current: {current.mode} + {reranker_name} rerank", current))
    return runs


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Scores on the labelled questions: one row per configuration (``SUMMARY_COLUMNS``, then
    ``YOUR_NDCG`` when a student's metric ran), each configuration's per-question table, which of
    them is the ``current`` one, the ``chunking`` it ran on, and its cost."""

    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    current: str = ""
    chunking: str = ""
    questions: int = 0
    seconds: float = 0.0

    @property
    def current_table(self) -> pd.DataFrame:
        """The current configuration's score on each question."""
        return self.tables.get(self.current, pd.DataFrame(columns=COLUMNS))

    def scores(self) -> pd.DataFrame:
        """The summary in long form: configuration, metric, value (a student's nDCG beside the reference's)."""
        metrics = [m for m in (*METRICS[:1], YOUR_NDCG, *METRICS[1:]) if m in self.summary.columns]
        long = self.summary.melt("configuration", metrics, var_name="metric", value_name="value")
        # Configuration-major, as the table reads.
        order = {c: i for i, c in enumerate(self.summary["configuration"])}
        return long.sort_values("configuration", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def evaluate(
    pipeline: RagPipeline,
    runs: Sequence[tuple[str, Setting]],
    questions: Sequence[LabelledQuestion] | None = None,
    *,
    current: str = "",
    chunking: str = "",
    ndcg: RankingMetric | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Score each of ``runs`` on ``questions`` (``evaluation_questions()`` by default) with
    ``assess``; ``ndcg``, a student's metric, adds a column beside the reference nDCG."""
    questions = list(evaluation_questions() if questions is None else questions)
    started = time.perf_counter()
    total = len(runs) * len(questions)
    rows, tables = [], {}
    for i, (label, setting) in enumerate(runs):

        def tick(done: int, _of: int, offset: int = i * len(questions), label: str = label) -> None:
            if progress is not None:
                progress(offset + done, total, label)

        table = assess(
            setting.configure(pipeline),
            questions,
            rerank=setting.reranker is not None,
            progress=tick,
            extra={YOUR_NDCG: ndcg} if ndcg is not None else None,
        )
        tables[label] = table
        rows.append({"configuration": label, **summary(table)})
    columns = [*SUMMARY_COLUMNS, *([YOUR_NDCG] if ndcg is not None else [])]
    return Evaluation(
        pd.DataFrame(rows, columns=columns), tables, current, chunking, len(questions), time.perf_counter() - started
    )
