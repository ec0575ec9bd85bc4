"""The shipped demo corpus: every file parses, the labelled questions point at real sections, and the
generated PDF and PNG files are reproducible from their sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import need
from lab_core.rag.corpus import CORPUS_DIR, QuestionsError, load_demo_corpus, load_questions
from lab_core.rag.documents import Document, make_chunk
from lab_core.rag.make_corpus import SOURCE_DIR, generate
from lab_core.rag.parsing import parse_file

EXPECTED_DOCS = {
    "agent_platform.md",
    "gpu_scheduler.md",
    "llm_serving.md",
    "rag.md",
    "rate_limiter.md",
    "url_shortener.md",
    "chat.html",
    "news_feed.html",
    "distributed_training.pdf",
    "video_streaming.pdf",
    "kv_cache_card.png",
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, Document]:
    need("tesseract", "the demo corpus includes an image that only OCR can read")
    return {d.doc_id: d for d in load_demo_corpus()}


def section_text(doc: Document, section: str) -> str:
    return "\n\n".join(doc.text[r.start : r.end] for r in doc.regions if r.section == section)


def test_every_corpus_file_parses_into_valid_documents(corpus: dict[str, Document]) -> None:
    assert set(corpus) == EXPECTED_DOCS
    for doc in corpus.values():
        assert doc.source == Path(doc.doc_id).name and doc.title and doc.regions
        # Regions tile the text: each starts where the previous ended (after the paragraph break).
        assert doc.regions[0].start == 0 and doc.regions[-1].end == len(doc.text)
        for before, after in zip(doc.regions, doc.regions[1:]):
            assert after.start == before.end + 2 and doc.text[before.end : after.start] == "\n\n"
        for r in doc.regions:
            chunk = make_chunk(doc, r.start, r.end, 0)
            assert (chunk.page, chunk.section) == (r.page, r.section)


def test_notes_have_the_promised_shape(corpus: dict[str, Document]) -> None:
    for doc_id, doc in corpus.items():
        if doc_id.endswith(".png"):
            continue
        headed = {r.section for r in doc.regions} - {"", doc.title}
        assert 4 <= len(headed) <= 7, (doc_id, headed)
        assert 500 <= len(doc.text.split()) <= 900, doc_id
    for pdf in ("distributed_training.pdf", "video_streaming.pdf"):
        assert max(r.page for r in corpus[pdf].regions) >= 2


def test_labelled_questions_point_at_real_sections_that_contain_the_answer(corpus: dict[str, Document]) -> None:
    questions = load_questions()
    assert len(questions) == 40 and len({q.id for q in questions}) == 40
    assert sum(not q.relevant for q in questions) == 5
    for q in questions:
        assert (q.answer is None) == (not q.relevant), q.id
        for doc_id, section in q.relevant:
            assert doc_id in corpus, (q.id, doc_id)
            text = section_text(corpus[doc_id], section)
            assert text, f"{q.id}: no section {section!r} in {doc_id}"
            assert q.answer.lower() in text.lower(), f"{q.id}: {q.answer!r} not in {doc_id} § {section}"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "q9", "question": "", "relevant": [], "answer": None}, "question 'q9': field 'question'"),
        (
            {"id": "q9", "question": "Why?", "relevant": [{"doc": "a.md"}], "answer": "x"},
            "question 'q9': field 'relevant'",
        ),
        (
            {"id": "q9", "question": "Why?", "relevant": [], "answer": "x"},
            "question 'q9': fields 'relevant' and 'answer'",
        ),
        (
            {"id": "q9", "question": "Why?", "relevant": [{"doc": "a.md", "section": "S"}], "answer": 3},
            "question 'q9': field 'answer'",
        ),
        ({"question": "Why?", "relevant": [], "answer": None}, "question #1: field 'id'"),
        (
            {"id": "q9", "question": "Why?", "relevant": [], "answer": None, "notes": 1},
            "question 'q9': unknown field(s) notes",
        ),
    ],
)
def test_bad_questions_are_rejected_naming_the_question_and_field(tmp_path: Path, item: dict, message: str) -> None:
    path = tmp_path / "questions.json"
    path.write_text(json.dumps([item]))
    with pytest.raises(QuestionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_questions(path)


def test_duplicate_ids_and_bad_json_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "questions.json"
    ok = {"id": "q1", "question": "Why?", "relevant": [], "answer": None}
    path.write_text(json.dumps([ok, ok]))
    with pytest.raises(QuestionsError, match="question 'q1': field 'id' is duplicated"):
        load_questions(path)
    path.write_text("[{")
    with pytest.raises(QuestionsError, match="questions.json: cannot read"):
        load_questions(path)


def test_regenerated_files_match_the_committed_ones(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == ["distributed_training.pdf", "kv_cache_card.png", "video_streaming.pdf"]
    hint = "differs from its source; run python -m lab_core.rag.make_corpus"
    for path in written:
        shipped = CORPUS_DIR / path.name
        if path.suffix == ".pdf":
            assert path.read_bytes() == shipped.read_bytes(), f"{path.name} {hint}"
            assert parse_file(path).text == parse_file(shipped).text
        else:
            # PNG bytes depend on the zlib build, so the pixels are compared.
            with Image.open(path) as new, Image.open(shipped) as old:
                assert (new.size, new.tobytes()) == (old.size, old.tobytes()), f"{path.name} {hint}"


def test_pdf_text_is_the_source_text() -> None:
    for source in sorted(SOURCE_DIR.glob("*.md")):
        words, number = [], 0
        for line in source.read_text().splitlines():
            if line.startswith("## "):
                number += 1
                line = f"{number}. {line[3:]}"
            words += line.lstrip("# ").split()
        assert parse_file(CORPUS_DIR / f"{source.stem}.pdf").text.split() == words, source.name
