"""Documents, regions and chunks: validation, locating an offset, and a chunk's citation."""

from __future__ import annotations

import hashlib

import pytest

from lab_core.rag.documents import Chunk, Document, Region, content_hash, make_chunk

TEXT = "# Intro\nHello world.\n# Usage\nRun it twice."
REGIONS = (Region(0, 21, page=1, section="Intro"), Region(21, len(TEXT), page=2, section="Usage"))


def test_document_validates_id_and_regions():
    with pytest.raises(ValueError, match="doc_id"):
        Document("", "text")
    with pytest.raises(ValueError, match="out of order or past"):
        Document("d", "abc", regions=(Region(0, 4),))
    with pytest.raises(ValueError, match="out of order or past"):
        Document("d", "abcdef", regions=(Region(3, 5), Region(1, 2)))
    with pytest.raises(ValueError, match="out of order or past"):
        Document("d", "abcdef", regions=(Region(4, 2),))
    Document("d", "abcdef", regions=(Region(0, 3), Region(3, 6)))  # adjacent regions are fine


def test_locate_finds_page_and_section():
    doc = Document("d", TEXT, regions=REGIONS)
    assert doc.locate(0) == (1, "Intro")
    assert doc.locate(20) == (1, "Intro")
    assert doc.locate(21) == (2, "Usage")
    assert doc.locate(len(TEXT) - 1) == (2, "Usage")
    assert Document("d", TEXT).locate(5) == (0, "")
    gap = Document("d", "0123456789", regions=(Region(2, 4, 1, "A"), Region(6, 8, 1, "B")))
    assert gap.locate(0) == (0, "") and gap.locate(5) == (0, "") and gap.locate(9) == (0, "")
    assert gap.locate(3) == (1, "A") and gap.locate(7) == (1, "B")


def test_make_chunk_spans_and_citation():
    doc = Document("notes", TEXT, source="notes.md", title="Notes", regions=REGIONS)
    c = make_chunk(doc, 29, len(TEXT), 3)
    assert c.chunk_id == "notes#3" and c.doc_id == "notes"
    assert c.text == TEXT[29:] == "Run it twice."
    assert (c.page, c.section, c.source, c.title) == (2, "Usage", "notes.md", "Notes")
    assert c.citation() == f"notes.md p.2 § Usage [29:{len(TEXT)}]"
    assert Chunk("x#0", "x", "t", 0, 1).citation() == "x [0:1]"
    assert c.content_hash == content_hash("Run it twice.") == hashlib.sha256(b"Run it twice.").hexdigest()
    for start, end in [(5, 5), (-1, 3), (0, len(TEXT) + 1), (6, 2)]:
        with pytest.raises(ValueError, match="empty or outside"):
            make_chunk(doc, start, end, 0)
