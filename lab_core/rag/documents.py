"""Documents and chunks: the units every stage of the RAG pipeline passes along.

A ``Document`` is one source file's text with the regions it came from (page, section), so any
character span of it can be cited back to a page and a heading. A ``Chunk`` is a span of one
document: its text is always ``document.text[start:end]``.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Region:
    """Characters ``[start, end)`` of a document that came from ``page`` (1-based, 0 when the
    format has no pages) under the heading ``section`` ("" before the first heading)."""

    start: int
    end: int
    page: int = 0
    section: str = ""


@dataclass(frozen=True)
class Document:
    """A parsed source: ``doc_id`` is unique in a corpus, ``source`` names the file it came from."""

    doc_id: str
    text: str
    source: str = ""
    title: str = ""
    regions: tuple[Region, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.doc_id:
            raise ValueError("Document.doc_id must be a non-empty string")
        last = 0
        for r in self.regions:
            if not (last <= r.start <= r.end <= len(self.text)):
                raise ValueError(
                    f"Document {self.doc_id!r}: region {r} is out of order or past the text's end ({len(self.text)})"
                )
            last = r.start

    def locate(self, offset: int) -> tuple[int, str]:
        """The (page, section) of character ``offset``; (0, "") when no region covers it."""
        starts = [r.start for r in self.regions]
        i = bisect_right(starts, offset) - 1
        if i >= 0 and self.regions[i].start <= offset < max(self.regions[i].end, self.regions[i].start + 1):
            return self.regions[i].page, self.regions[i].section
        return 0, ""


@dataclass(frozen=True)
class Chunk:
    """Characters ``[start, end)`` of document ``doc_id``, with where they came from for citations."""

    chunk_id: str
    doc_id: str
    text: str
    start: int
    end: int
    page: int = 0
    section: str = ""
    source: str = ""
    title: str = ""

    @property
    def content_hash(self) -> str:
        """SHA-256 of the text: the embedding cache key."""
        return content_hash(self.text)

    def citation(self) -> str:
        """Where the chunk came from, for a reader: "source p.3 § Heading [120:480]"."""
        parts = [self.source or self.doc_id]
        if self.page:
            parts.append(f"p.{self.page}")
        if self.section:
            parts.append(f"§ {self.section}")
        parts.append(f"[{self.start}:{self.end}]")
        return " ".join(parts)


def content_hash(text: str) -> str:
    """SHA-256 hex digest of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_chunk(doc: Document, start: int, end: int, index: int) -> Chunk:
    """The chunk of ``doc`` covering ``[start, end)``, numbered ``index`` within the document."""
    if not (0 <= start < end <= len(doc.text)):
        raise ValueError(
            f"chunk [{start}:{end}] is empty or outside document {doc.doc_id!r} of {len(doc.text)} characters"
        )
    page, section = doc.locate(start)
    return Chunk(
        chunk_id=f"{doc.doc_id}#{index}",
        doc_id=doc.doc_id,
        text=doc.text[start:end],
        start=start,
        end=end,
        page=page,
        section=section,
        source=doc.source,
        title=doc.title,
    )
