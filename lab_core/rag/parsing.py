"""Parsing: Markdown, HTML, PDF and image files into ``Document`` text with page/section regions.

Every parser produces paragraphs separated by one blank line, whitespace inside a paragraph
collapsed to single spaces, and one ``Region`` per (page, heading) stretch, so a chunk can always
be cited back to where it came from. A file that cannot be read raises ``ParseError`` naming it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from lab_core.rag.documents import Document, Region

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | IMAGE_SUFFIXES

# The labelled questions live beside the corpus but are not part of it.
SKIPPED_NAMES = frozenset({"questions.json"})

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"\*\*|`")
# Our generated PDFs number their section headings ("2. Fully sharded data parallel"): short, no
# final period. Body text never starts a line that way, so the rule stays this simple.
_PDF_HEADING = re.compile(r"^\d{1,2}\.\s+([A-Z][^\n]{0,76}[^.\s])$")
_HTML_DROP_TAGS = ("script", "style", "nav", "header", "footer", "aside", "form", "noscript", "template")
_HTML_DROP_WORDS = ("nav", "menu", "footer", "cookie", "sidebar", "breadcrumb")
_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "dt", "dd", "td", "th")
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
OCR_HINT = "OCR needs Debian's tesseract-ocr (apt install tesseract-ocr)"


class ParseError(ValueError):
    """A file that could not be parsed, with the file's name and the reason in the message."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class _Builder:
    """Accumulates paragraphs and regions: a new region starts at each heading and each page."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.opens: list[tuple[int, int, str]] = []  # (start, page, section) of each region
        self.page = 0
        self.section = ""
        self.first_heading = ""

    def _open_region(self) -> None:
        start = self.length + (2 if self.parts else 0)
        # A region that got no text before the next one opened (an empty page) is dropped.
        if self.opens and self.opens[-1][0] == start:
            self.opens.pop()
        self.opens.append((start, self.page, self.section))

    def new_page(self, page: int) -> None:
        self.page = page
        self._open_region()

    def heading(self, title: str, line: str = "") -> None:
        """Start section ``title``; the heading ``line`` (default: the title) stays in the text."""
        title = _squash(title)
        if not title:
            return
        self.section = title
        self.first_heading = self.first_heading or title
        self._open_region()
        self.paragraph(line or title)

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if not self.opens:
            self._open_region()
        if self.parts:
            self.length += 2
        self.parts.append(text)
        self.length += len(text)

    def build(self, path: Path, doc_id: str, title: str = "") -> Document:
        text = "\n\n".join(self.parts)
        if not text.strip():
            raise ParseError(path, "the document has no text")
        ends = [start - 2 for start, _, _ in self.opens[1:]] + [len(text)]
        regions = tuple(
            Region(start, end, page, section) for (start, page, section), end in zip(self.opens, ends) if start < end
        )
        return Document(
            doc_id=doc_id, text=text, source=path.name, title=title or self.first_heading or path.stem, regions=regions
        )


def _squash(text: str) -> str:
    """Collapse runs of whitespace to single spaces."""
    return " ".join(text.split())


def _join_lines(lines: Iterable[str]) -> str:
    """One paragraph from wrapped lines: a word hyphenated at a line end is re-joined."""
    out = ""
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if re.search(r"[a-z]-$", out) and line[:1].islower():
            out = out[:-1] + line
        else:
            out = f"{out} {line}" if out else line
    return _squash(out)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM is not text
    except UnicodeDecodeError as exc:
        raise ParseError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def parse_markdown(path: Path, doc_id: str) -> Document:
    """Markdown or plain text: ``#`` headings start sections; list items keep their own lines."""
    b = _Builder()
    block: list[str] = []

    def flush() -> None:
        items: list[list[str]] = []
        for line in block:
            if _MD_LIST_ITEM.match(line) or not items:
                items.append([line])
            else:
                items[-1].append(line)
        lines = [_join_lines(item) for item in items]
        b.paragraph("\n".join(_MD_EMPHASIS.sub("", _MD_LINK.sub(r"\1", ln)) for ln in lines))
        block.clear()

    in_fence = False
    for line in _read_text(path).splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        heading = None if in_fence else _MD_HEADING.match(line)
        if heading:
            flush()
            b.heading(heading.group(2))
        elif not line.strip():
            flush()
        else:
            block.append(line)
    flush()
    return b.build(path, doc_id)


def parse_html(path: Path, doc_id: str) -> Document:
    """HTML: boilerplate (navigation, menus, cookie banners, footers, sidebars) dropped, h1-h6 start sections."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_read_text(path), "lxml")
    page_title = _squash(soup.title.get_text()) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        marks = " ".join([tag.get("id") or "", *(tag.get("class") or [])]).lower()
        if any(word in marks for word in _HTML_DROP_WORDS):
            tag.decompose()
    # Inline tags join without spaces ("<b>x</b>." stays "x."); only line breaks separate words.
    for br in soup.find_all("br"):
        br.replace_with("\n")
    b = _Builder()
    body = soup.body or soup
    for tag in body.find_all(_HTML_BLOCKS):
        # A block holding other blocks (an <li> wrapping <p>) is read through its children instead.
        if tag.find(_HTML_BLOCKS):
            continue
        text = _squash(tag.get_text())
        if tag.name in _HTML_HEADINGS:
            b.heading(text)
        else:
            b.paragraph(text)
    return b.build(path, doc_id, page_title)


def _pdf_paragraphs(page_text: str) -> list[list[str]]:
    """Paragraphs (lists of lines) of a layout-mode page: a blank line ends a paragraph."""
    paragraphs: list[list[str]] = [[]]
    for line in page_text.splitlines():
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def parse_pdf(path: Path, doc_id: str) -> Document:
    """PDF: one region per page and numbered heading; wrapped lines are joined into paragraphs."""
    from pypdf import PdfReader

    b = _Builder()
    try:
        reader = PdfReader(path, strict=False)
        meta_title = _squash((reader.metadata or {}).get("/Title", "") or "")
        for number, page in enumerate(reader.pages, start=1):
            b.new_page(number)
            for lines in _pdf_paragraphs(page.extract_text(extraction_mode="layout")):
                first = _squash(lines[0])
                heading = _PDF_HEADING.match(first) if len(lines) == 1 else None
                if heading:
                    b.heading(heading.group(1), first)
                else:
                    b.paragraph(_join_lines(lines))
    # pypdf reports damaged files with many exception types, not only PdfReadError.
    except Exception as exc:
        raise ParseError(path, f"unreadable PDF ({type(exc).__name__}: {exc})") from exc
    return b.build(path, doc_id, meta_title)


def parse_image(path: Path, doc_id: str) -> Document:
    """An image read by tesseract OCR as page 1, one line of text per OCR line."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise ParseError(path, OCR_HINT)
    try:
        run = subprocess.run([binary, str(path), "stdout"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise ParseError(path, "tesseract took over 120 s") from exc
    if run.returncode != 0:
        raise ParseError(path, f"tesseract failed: {run.stderr.strip()[-300:]}")
    b = _Builder()
    b.new_page(1)
    for block in re.split(r"\n\s*\n", run.stdout):
        b.paragraph("\n".join(_squash(line) for line in block.splitlines() if line.strip()))
    return b.build(path, doc_id)


_PARSERS = {
    **dict.fromkeys(MARKDOWN_SUFFIXES, parse_markdown),
    **dict.fromkeys(HTML_SUFFIXES, parse_html),
    **dict.fromkeys(PDF_SUFFIXES, parse_pdf),
    **dict.fromkeys(IMAGE_SUFFIXES, parse_image),
}


def parse_file(path: Path, doc_id: str | None = None) -> Document:
    """The ``Document`` of one file, parsed by its suffix; ``doc_id`` defaults to the file name."""
    path = Path(path)
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        raise ParseError(
            path,
            f"unsupported file type {path.suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}",
        )
    if not path.is_file():
        raise ParseError(path, "no such file")
    return parser(path, doc_id or path.name)


def _corpus_files(folder: Path) -> list[Path]:
    """Supported, non-hidden files under ``folder``, sorted by path."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.name in SKIPPED_NAMES:
            continue
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            found.append(path)
    return found


def parse_folder(folder: Path) -> tuple[list[Document], list[ParseError]]:
    """Every supported file under ``folder`` (doc_id = path relative to it); bad files are reported, not fatal."""
    folder = Path(folder)
    documents: list[Document] = []
    errors: list[ParseError] = []
    for path in _corpus_files(folder):
        try:
            documents.append(parse_file(path, path.relative_to(folder).as_posix()))
        except ParseError as exc:
            errors.append(exc)
    return documents, errors
