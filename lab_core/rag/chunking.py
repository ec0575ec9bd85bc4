"""Chunkers: split a document into spans that are small enough to embed and to cite.

Sizes are counted in words (runs of non-space characters), the unit a student can check by eye;
every chunk keeps its character span, so ``chunk.text == doc.text[chunk.start:chunk.end]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lab_core.rag.documents import Chunk, Document, make_chunk
from lab_core.rag.protocol import Chunker
from lab_core.rag.text import sentence_spans

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

Strategy = Literal["fixed", "recursive", "sentences"]


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of the words of ``text[start:end]``."""
    return [m.span() for m in _WORD.finditer(text, start, len(text) if end is None else end)]


def window_spans(words: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of windows of ``size`` words, each sharing ``overlap`` words with the one
    before; the last window ends at the last word, and no window lies inside the one before it."""
    _check_size(size, overlap)
    step = size - overlap
    spans = []
    for first in range(0, len(words), step):
        last = min(first + size, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans


def _check_size(size: int, overlap: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a whole number of words >= 1, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ValueError(f"overlap must be a whole number of words with 0 <= overlap < size ({size}), got {overlap!r}")


def fixed_size(doc: Document, size: int = 200, overlap: int = 40) -> list[Chunk]:
    """Windows of ``size`` words sliding by ``size - overlap`` words over the whole document."""
    spans = window_spans(word_spans(doc.text), size, overlap)
    return [make_chunk(doc, a, b, i) for i, (a, b) in enumerate(spans)]


def _pieces(text: str, start: int, end: int, size: int, level: int) -> list[tuple[int, int]]:
    """Spans of at most ``size`` words, splitting by paragraph, then sentence, then word windows."""
    words = word_spans(text, start, end)
    if not words:
        return []
    if len(words) <= size:
        return [(words[0][0], words[-1][1])]
    if level == 0:
        parts, pos = [], start
        for m in _PARAGRAPH_BREAK.finditer(text, start, end):
            parts.append((pos, m.start()))
            pos = m.end()
        parts.append((pos, end))
    elif level == 1:
        parts = sentence_spans(text, start, end)
    else:
        return window_spans(words, size, 0)
    if len(parts) == 1:
        return _pieces(text, start, end, size, level + 1)
    return [p for a, b in parts for p in _pieces(text, a, b, size, level + 1)]


def recursive(doc: Document, size: int = 200, overlap: int = 0) -> list[Chunk]:
    """Chunks that follow the document's structure: never across a section, split by paragraph,
    then sentence, then words, and neighbouring pieces merged while they fit in ``size`` words (a
    piece under a tenth of ``size``, such as a heading line, always joins the next). ``overlap`` words of the previous chunk are repeated at the start of the next one in a section."""
    _check_size(size, overlap)
    sections = [(r.start, r.end) for r in doc.regions] or [(0, len(doc.text))]
    spans: list[tuple[int, int]] = []
    for s_start, s_end in sections:
        merged: list[tuple[int, int]] = []
        count = 0
        for a, b in _pieces(doc.text, s_start, s_end, size, 0):
            n = len(word_spans(doc.text, a, b))
            if merged and (count + n <= size or count < size / 10):
                merged[-1] = (merged[-1][0], b)
                count += n
            else:
                merged.append((a, b))
                count = n
        for i, (a, b) in enumerate(merged):
            if i and overlap:
                previous = word_spans(doc.text, *merged[i - 1])
                a = previous[max(0, len(previous) - overlap)][0]
            spans.append((a, b))
    return [make_chunk(doc, a, b, i) for i, (a, b) in enumerate(spans)]


def sentence_windows(doc: Document, window: int = 3, overlap: int = 1) -> list[Chunk]:
    """Windows of ``window`` sentences sliding by ``window - overlap`` sentences, within sections."""
    _check_size(window, overlap)
    sections = [(r.start, r.end) for r in doc.regions] or [(0, len(doc.text))]
    spans = []
    for s_start, s_end in sections:
        sentences = sentence_spans(doc.text, s_start, s_end)
        spans.extend(window_spans(sentences, window, overlap) if sentences else [])
    return [make_chunk(doc, a, b, i) for i, (a, b) in enumerate(spans)]


@dataclass(frozen=True)
class ChunkConfig:
    """Which chunker and its size: words for "fixed" and "recursive", sentences for "sentences"."""

    strategy: Strategy = "recursive"
    size: int = 200
    overlap: int = 40

    def __post_init__(self) -> None:
        if self.strategy not in CHUNKERS:
            raise ValueError(f"strategy must be one of {', '.join(CHUNKERS)}, got {self.strategy!r}")
        _check_size(self.size, self.overlap)

    def chunker(self) -> Chunker:
        """The configured chunker as a one-argument function."""
        fn = CHUNKERS[self.strategy]
        return lambda doc: fn(doc, self.size, self.overlap)


CHUNKERS: dict[str, Callable[..., list[Chunk]]] = {
    "fixed": fixed_size,
    "recursive": recursive,
    "sentences": sentence_windows,
}


def chunk_all(docs: list[Document], chunker: Chunker) -> list[Chunk]:
    """Every chunk of every document, in document order."""
    return [c for d in docs for c in chunker(d)]
