"""Regenerate the demo corpus's PDF and PNG files from their editable sources in ``corpus_src``.

``python -m lab_core.rag.make_corpus [OUT_DIR]`` writes into ``lab_core/rag/corpus`` by default.
Sources are Markdown (``# title``, ``## heading``, paragraphs) for PDFs and plain lines of text for
the whiteboard card. PDF dates, metadata and streams are fixed so that regenerating gives the same
bytes; the PNG gives the same pixels (its compressed bytes depend on the zlib build).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from lab_core.rag.corpus import CORPUS_DIR

SOURCE_DIR = Path(__file__).resolve().parent / "corpus_src"
PDF_SOURCES = ("distributed_training.md", "video_streaming.md")
CARD_SOURCES = ("kv_cache_card.txt",)
# A fixed date keeps the PDF bytes (creation date and the file ID derived from it) reproducible.
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def _blocks(markdown: str) -> list[tuple[str, str]]:
    """(kind, text) blocks of our Markdown subset: kind is "title", "heading" or "paragraph"."""
    blocks: list[tuple[str, str]] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            blocks.append(("paragraph", " ".join(line.strip() for line in lines)))
            lines.clear()

    for line in markdown.splitlines():
        if line.startswith("## "):
            flush()
            blocks.append(("heading", line[3:].strip()))
        elif line.startswith("# "):
            flush()
            blocks.append(("title", line[2:].strip()))
        elif not line.strip():
            flush()
        else:
            lines.append(line)
    flush()
    return blocks


def render_pdf(source: Path, target: Path) -> None:
    """Typeset ``source`` Markdown as an A4 PDF with numbered section headings (what parse_pdf detects)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    # Uncompressed streams keep the bytes independent of the zlib build.
    pdf.set_compression(False)
    pdf.set_producer("lab_core.rag.make_corpus")
    pdf.set_creator("lab_core.rag.make_corpus")
    pdf.set_author("System design course")
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    number = 0
    for kind, text in _blocks(source.read_text(encoding="utf-8")):
        if kind == "title":
            pdf.set_title(text)
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, text, new_x="LMARGIN", new_y="NEXT")
        elif kind == "heading":
            number += 1
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, f"{number}. {text}", new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    pdf.output(str(target))


def render_card(source: Path, target: Path) -> None:
    """Draw ``source``'s lines as black text on a white card, large enough for OCR to read."""
    from PIL import Image, ImageDraw, ImageFont

    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Pillow's bundled font, so the card looks the same on every machine with FreeType.
    font = ImageFont.load_default(size=40)
    width = max(int(font.getlength(line)) for line in lines) + 120
    height = 70 * len(lines) + 100
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 50 + 70 * i), line, font=font, fill=0)
    image.save(target, format="PNG", optimize=False)


def generate(out_dir: Path = CORPUS_DIR) -> list[Path]:
    """Write every generated corpus file into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PDF_SOURCES:
        target = out_dir / Path(name).with_suffix(".pdf").name
        render_pdf(SOURCE_DIR / name, target)
        written.append(target)
    for name in CARD_SOURCES:
        target = out_dir / Path(name).with_suffix(".png").name
        render_card(SOURCE_DIR / name, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: regenerate into the given folder or the shipped corpus."""
    args = sys.argv[1:] if argv is None else argv
    for path in generate(Path(args[0]) if args else CORPUS_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
