"""Grounded answers with citations, and the check that every cited sentence is in its source.

The default answerer is extractive: it picks the retrieved sentences closest to the question and
cites each one, so it cannot invent a fact; it refuses ("not found in the documents") when no
sentence is close enough. ``OpenAIAnswerer`` sends the same numbered context to any
OpenAI-compatible endpoint (the serving lab's gateway included) and its answer goes through the
same citation check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lab_core.rag.documents import Chunk
from lab_core.rag.embedding import Embedder
from lab_core.rag.protocol import Cite
from lab_core.rag.retrieval import Hit
from lab_core.rag.text import sentence_spans, terms

NOT_FOUND = "not found in the documents"
_MARK = re.compile(r"\s*\[(\d+)\]")
_LEADING_MARKS = re.compile(r"^(\s*\[\d+\])+")


@dataclass(frozen=True)
class Citation:
    """Citation ``n`` of an answer: the chunk it points at and where that chunk lies in its document."""

    n: int
    chunk_id: str
    doc_id: str
    source: str
    page: int
    section: str
    start: int
    end: int


@dataclass(frozen=True)
class Sentence:
    """A sentence taken from ``chunk`` (offsets into the chunk's text) with its relevance score."""

    text: str
    chunk: Chunk
    score: float = 0.0


@dataclass
class CitationCheck:
    """How many cited sentences their chunk supports; ``problems`` says which are not and why."""

    supported: int = 0
    cited: int = 0
    uncited: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Supported share of cited sentences (1.0 for an answer with none)."""
        return self.supported / self.cited if self.cited else 1.0


@dataclass
class Answer:
    """The answer text with ``[n]`` markers, its citations (n = 1, 2, ...) and the check's result."""

    text: str
    citations: list[Citation]
    refused: bool = False
    check: CitationCheck = field(default_factory=CitationCheck)


def citation_for(n: int, chunk: Chunk) -> Citation:
    """Citation number ``n`` pointing at ``chunk``."""
    return Citation(n, chunk.chunk_id, chunk.doc_id, chunk.source, chunk.page, chunk.section, chunk.start, chunk.end)


def cite(sentences: Sequence[Sentence]) -> tuple[str, list[Citation]]:
    """The sentences joined into one answer, each followed by ``[n]`` for its chunk; chunks are
    numbered 1, 2, ... in the order the answer first cites them, one citation per chunk."""
    numbers: dict[str, int] = {}
    citations: list[Citation] = []
    parts = []
    for s in sentences:
        if s.chunk.chunk_id not in numbers:
            numbers[s.chunk.chunk_id] = len(numbers) + 1
            citations.append(citation_for(numbers[s.chunk.chunk_id], s.chunk))
        parts.append(f"{s.text} [{numbers[s.chunk.chunk_id]}]")
    return " ".join(parts), citations


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def supports(chunk_text: str, sentence: str, min_recall: float = 0.8) -> bool:
    """True when ``sentence`` is in ``chunk_text`` word for word, or ``min_recall`` of its terms are."""
    if _normal(sentence) in _normal(chunk_text):
        return True
    words = set(terms(sentence))
    return bool(words) and len(words & set(terms(chunk_text))) / len(words) >= min_recall


def cited_sentences(text: str) -> list[tuple[str, list[int]]]:
    """The sentences of an answer with the citation numbers each carries. Markers written after the
    full stop ("... limit. [2]") open the next sentence to the splitter, so they move back."""
    out: list[tuple[str, list[int]]] = []
    for a, b in sentence_spans(text):
        sentence = text[a:b]
        lead = _LEADING_MARKS.match(sentence)
        if lead and out:
            out[-1] = (out[-1][0], out[-1][1] + [int(m) for m in _MARK.findall(lead.group())])
            sentence = sentence[lead.end() :]
        if sentence.strip():
            out.append((_MARK.sub("", sentence).strip(), [int(m) for m in _MARK.findall(sentence)]))
    return out


def check_citations(text: str, chunks: dict[int, Chunk], min_recall: float = 0.8) -> CitationCheck:
    """Each cited sentence of ``text`` must be supported by a chunk it cites."""
    result = CitationCheck()
    for bare, marks in cited_sentences(text):
        if not marks:
            result.uncited += bool(terms(bare))
            continue
        result.cited += 1
        unknown = [n for n in marks if n not in chunks]
        if unknown:
            result.problems.append(f"cites [{unknown[0]}], which is not a citation of this answer: {bare[:80]!r}")
        elif any(supports(chunks[n].text, bare, min_recall) for n in marks):
            result.supported += 1
        else:
            result.problems.append(f"[{marks[0]}] does not support {bare[:80]!r}")
    return result


@dataclass
class ExtractiveAnswerer:
    """Ranks the sentences of the top ``chunks`` hits by cosine to the question plus query-term
    coverage, keeps up to ``max_sentences`` within ``keep`` of the best, and refuses when the best
    scores under ``min_score`` (a threshold on the embedder's cosine scale: tune it per model).
    ``cite`` turns the chosen sentences into the answer text and its citations."""

    embedder: Embedder
    chunks: int = 4
    max_sentences: int = 3
    min_score: float = 0.33
    keep: float = 0.85
    coverage_weight: float = 0.3
    cite: Cite = cite  # a seam for the student's version

    def candidates(self, query: str, hits: Sequence[Hit]) -> list[Sentence]:
        """Every sentence of the top hits with its score, best first."""
        found, seen = [], set()
        for h in hits[: self.chunks]:
            for a, b in sentence_spans(h.chunk.text):
                text = h.chunk.text[a:b]
                # Overlapping chunks hold the same sentence: keep it once, from the better-ranked chunk.
                if len(text.split()) >= 4 and not text.lstrip().startswith("#") and _normal(text) not in seen:
                    seen.add(_normal(text))
                    found.append(Sentence(text, h.chunk))
        if not found:
            return []
        vectors = self.embedder.encode([query, *(s.text for s in found)])
        cos = vectors[1:] @ vectors[0]
        q = set(terms(query))
        cover = np.array([len(q & set(terms(s.text))) / len(q) if q else 0.0 for s in found])
        scores = (1 - self.coverage_weight) * cos + self.coverage_weight * cover
        order = np.argsort(-scores, kind="stable")
        return [Sentence(found[i].text, found[i].chunk, float(scores[i])) for i in order]

    def __call__(self, query: str, hits: Sequence[Hit]) -> Answer:
        """A cited answer from ``hits``, or a refusal."""
        ranked = self.candidates(query, hits)
        if not ranked or ranked[0].score < self.min_score:
            return Answer(NOT_FOUND, [], refused=True)
        chosen = [s for s in ranked[: self.max_sentences] if s.score >= self.keep * ranked[0].score]
        rank = {h.chunk.chunk_id: i for i, h in enumerate(hits)}
        chosen.sort(key=lambda s: (rank[s.chunk.chunk_id], s.chunk.text.find(s.text)))
        text, citations = self.cite(chosen)
        by_id = {s.chunk.chunk_id: s.chunk for s in chosen}
        return Answer(text, citations, check=check_citations(text, {c.n: by_id[c.chunk_id] for c in citations}))


@dataclass
class OpenAIAnswerer:
    """Asks an OpenAI-compatible ``/v1/chat/completions`` endpoint to answer from numbered context."""

    base_url: str
    model: str
    api_key: str = ""
    chunks: int = 5
    timeout: float = 60.0
    client: object | None = None

    PROMPT = (
        "Answer the question using only the numbered context passages. After every sentence, cite the "
        "passage it comes from as [n]. If the passages do not contain the answer, reply exactly: " + NOT_FOUND
    )

    def messages(self, query: str, hits: Sequence[Hit]) -> list[dict]:
        """The chat messages sent: instructions, numbered passages, then the question."""
        context = "\n\n".join(f"[{i}] {h.chunk.text}" for i, h in enumerate(hits[: self.chunks], 1))
        return [
            {"role": "system", "content": self.PROMPT},
            {"role": "user", "content": f"{context}\n\nQuestion: {query}"},
        ]

    def __call__(self, query: str, hits: Sequence[Hit]) -> Answer:
        """The endpoint's answer, its citations resolved to chunks and checked."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": self.messages(query, hits), "temperature": 0}
        url = f"{self.base_url.rstrip('/')}/v1/chat/completions"
        if self.client is not None:
            response = self.client.post(url, json=body, headers=headers)
        else:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.post(url, json=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{self.base_url} answered {response.status_code}: {response.text[:300]}")
        text = response.json()["choices"][0]["message"]["content"].strip()
        if NOT_FOUND in text.lower():
            return Answer(NOT_FOUND, [], refused=True)
        numbered = {i: h.chunk for i, h in enumerate(hits[: self.chunks], 1)}
        used = sorted({int(m) for m in _MARK.findall(text)} & set(numbered))
        citations = [citation_for(n, numbered[n]) for n in used]
        return Answer(text, citations, check=check_citations(text, numbered))
