"""Parsing each supported format into a Document with page/section regions, and failing clearly on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF

from conftest import need
from lab_core.rag.corpus import CORPUS_DIR
from lab_core.rag.parsing import SUPPORTED_SUFFIXES, ParseError, parse_file, parse_folder


def sections(doc) -> list[str]:
    """Distinct section names in region order."""
    out: list[str] = []
    for r in doc.regions:
        if not out or out[-1] != r.section:
            out.append(r.section)
    return out


def section_text(doc, section: str) -> str:
    return "\n\n".join(doc.text[r.start : r.end] for r in doc.regions if r.section == section)


def test_markdown_headings_become_sections_and_keep_their_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "# Caching\n\nIntro line one\nwraps here.\n\n## Eviction ##\n\n- LRU drops the\n  oldest\n- LFU counts\n\n"
        "```\n# not a heading\n```\n\n### TTL\n\nKeys **expire** after a [TTL](http://x).\n"
    )
    doc = parse_file(path)
    assert (doc.doc_id, doc.source, doc.title) == ("notes.md", "notes.md", "Caching")
    assert sections(doc) == ["Caching", "Eviction", "TTL"]
    assert section_text(doc, "Caching") == "Caching\n\nIntro line one wraps here."
    # A fenced line starting with # is code, not a heading.
    assert section_text(doc, "Eviction") == "Eviction\n\n- LRU drops the oldest\n- LFU counts\n\n# not a heading"
    assert section_text(doc, "TTL") == "TTL\n\nKeys expire after a TTL."
    assert all(r.page == 0 for r in doc.regions)


def test_text_before_the_first_heading_has_no_section_and_title_falls_back_to_the_stem(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("Just a note\nwith no headings.\n")
    doc = parse_file(path, doc_id="sub/plain.txt")
    assert (doc.doc_id, doc.title, doc.text) == ("sub/plain.txt", "plain", "Just a note with no headings.")
    assert doc.locate(0) == (0, "")


def test_html_boilerplate_is_dropped_and_headings_start_sections() -> None:
    doc = parse_file(CORPUS_DIR / "chat.html")
    assert doc.title == "Chat system design notes"
    assert sections(doc)[:3] == ["Chat system", "Connections over WebSocket", "Message ordering with sequence numbers"]
    for boilerplate in (
        "cookies",
        "Accept all",
        "Syllabus",
        "Office hours",
        "Course notes /",
        "Related notes",
        "newsletter",
        "All rights reserved",
        "analyticsQueue",
        "font-family",
    ):
        assert boilerplate not in doc.text
    assert "per-conversation sequence number" in section_text(doc, "Message ordering with sequence numbers")
    feed = parse_file(CORPUS_DIR / "news_feed.html")
    for boilerplate in ("Sign in", "cookie policy", "Popular this week", "CC BY 4.0"):
        assert boilerplate not in feed.text
    assert "ZREMRANGEBYRANK" in section_text(feed, "Timelines in sorted sets")


def test_html_without_title_takes_the_first_h1_and_reads_nested_blocks_once(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text(
        "<html><body><div class='menu'>Home</div><h1>Queues</h1><ul><li><p>At least once</p></li>"
        "<li>At most<br>once</li></ul><h2>Ordering</h2><p>Per <b>partition</b>.</p></body></html>"
    )
    doc = parse_file(path)
    assert doc.title == "Queues"
    assert doc.text == "Queues\n\nAt least once\n\nAt most once\n\nOrdering\n\nPer partition."
    assert sections(doc) == ["Queues", "Ordering"]


def test_pdf_pages_and_numbered_headings_become_regions() -> None:
    doc = parse_file(CORPUS_DIR / "distributed_training.pdf")
    assert doc.title == "Distributed training"
    assert {r.page for r in doc.regions} == {1, 2}
    assert sections(doc) == [
        "",
        "Memory of a training step",
        "Data parallelism with DDP",
        "Sharded data parallelism: ZeRO and FSDP",
        "Tensor parallelism",
        "Pipeline parallelism",
        "Mixed precision with BF16",
        "Checkpointing and the Young/Daly interval",
    ]
    # Wrapped lines are joined into one paragraph per source paragraph.
    assert "\n" not in section_text(doc, "Tensor parallelism").split("\n\n", 1)[1]
    page, section = doc.locate(doc.text.index("sqrt(2 x C x M)"))
    assert (page, section) == (2, "Checkpointing and the Young/Daly interval")


def test_pdf_line_end_hyphens_are_rejoined(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in (
        "1. Batching",
        "",
        "Static batches waste com-",
        "pute on padding, while con-",
        "tinuous batching does not.",
    ):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "wrap.pdf"))
    doc = parse_file(tmp_path / "wrap.pdf")
    assert (
        section_text(doc, "Batching")
        == "1. Batching\n\nStatic batches waste compute on padding, while continuous batching does not."
    )


def test_ocr_reads_the_whiteboard_card() -> None:
    need("tesseract", "the image parser calls Debian's tesseract-ocr")
    doc = parse_file(CORPUS_DIR / "kv_cache_card.png")
    assert [(r.page, r.section) for r in doc.regions] == [(1, "")]
    for words in ("KV CACHE SIZE PER TOKEN", "layers", "128 KiB", "1 GiB per sequence", "16 tokens"):
        assert words in doc.text


def test_missing_tesseract_is_a_clear_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab_core.rag.parsing.shutil.which", lambda name: None)
    with pytest.raises(
        ParseError, match=r"kv_cache_card\.png: OCR needs Debian's tesseract-ocr \(apt install tesseract-ocr\)"
    ):
        parse_file(CORPUS_DIR / "kv_cache_card.png")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("random.pdf", bytes(range(256)) * 8, "unreadable PDF"),
        ("empty.md", b"  \n\n", "no text"),
        ("latin1.txt", "café crème".encode("latin-1"), "not UTF-8"),
        ("slides.pptx", b"PK\x03\x04", "unsupported file type '.pptx'"),
        ("blank.html", b"<html><body><nav>Only a menu</nav></body></html>", "no text"),
    ],
)
def test_bad_files_raise_parse_error_naming_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ParseError) as caught:
        parse_file(path)
    assert str(caught.value).startswith(f"{name}: ") and reason in str(caught.value)
    assert caught.value.path == path and isinstance(caught.value, ValueError)


def test_truncated_pdf_is_a_parse_error(tmp_path: Path) -> None:
    data = (CORPUS_DIR / "video_streaming.pdf").read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ParseError, match=r"^cut\.pdf: "):
        parse_file(path)


def test_parse_folder_keeps_good_files_and_reports_each_bad_one(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.md").write_text("# B\n\nBee.\n")
    (tmp_path / "sub" / "a.html").write_text("<h1>A</h1><p>Ay.</p>")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / ".hidden.md").write_text("# Hidden\n\nSecret.\n")
    (tmp_path / "questions.json").write_text("[]")
    (tmp_path / "readme.rst").write_text("Not a supported type")
    docs, errors = parse_folder(tmp_path)
    assert [d.doc_id for d in docs] == ["b.md", "sub/a.html"]
    assert [d.source for d in docs] == ["b.md", "a.html"]
    assert sorted(e.path.name for e in errors) == ["broken.pdf", "empty.txt"]


def test_supported_suffixes_cover_every_format() -> None:
    assert {
        ".md",
        ".markdown",
        ".txt",
        ".html",
        ".htm",
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
    } == SUPPORTED_SUFFIXES
