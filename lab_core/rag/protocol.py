"""The seams of Lab 06: what a student's function (or the reference one) must be to plug into the
pipeline, the dashboard and the graders. Each is a plain callable; these Protocols only say its shape.

* ``Chunker``: Exercise 1's ``chunk_spans`` made into a chunker; reference ``chunking.recursive``.
* ``RankFusion``: Exercise 2's ``rrf``; reference ``fusion.rrf``.
* ``RankingMetric``: Exercise 3's ``ndcg_at_k``; reference ``evaluation.ndcg_at_k``.
* ``Cite``: Exercise 4's ``cite``, the answerer's ``cite=``; reference ``answer.cite``.
* ``Reranker``: no exercise, a student may write one; reference ``rerank.default_reranker()``.
* ``Answerer``: ``answer.ExtractiveAnswerer`` or ``answer.OpenAIAnswerer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from lab_core.rag.documents import Chunk, Document

if TYPE_CHECKING:  # the modules that take these seams import this one; only the checker needs theirs
    from lab_core.rag.answer import Answer, Citation, Sentence
    from lab_core.rag.retrieval import Hit


class Chunker(Protocol):
    """Splits one document into chunks, each an exact character span of it (``make_chunk`` builds one)."""

    def __call__(self, doc: Document) -> list[Chunk]: ...


class RankFusion(Protocol):
    """Fuses rankings (lists of chunk ids, best first; the index passes dense then BM25) into one list
    of ``(chunk_id, score)``, best first; ``k`` is reciprocal rank fusion's constant."""

    def __call__(self, rankings: Sequence[Sequence[str]], k: int) -> list[tuple[str, float]]: ...


class Reranker(Protocol):
    """Reorders the fused hits for ``query``, best first; each returned hit carries the reranker's score."""

    def __call__(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


class Answerer(Protocol):
    """Answers ``query`` from the top ``hits`` with citations, or refuses."""

    def __call__(self, query: str, hits: Sequence[Hit]) -> Answer: ...


class Cite(Protocol):
    """Joins the chosen sentences into the answer text with ``[n]`` after each, and one citation per
    chunk, numbered by first use."""

    def __call__(self, sentences: Sequence[Sentence]) -> tuple[str, list[Citation]]: ...


class RankingMetric(Protocol):
    """Scores a ranked list of ids against graded relevance (``{id: gain}``), over its top ``k``."""

    def __call__(self, ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float: ...
