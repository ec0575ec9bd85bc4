"""The demo corpus shipped with Lab 06: course notes on the ten systems, and labelled questions about them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lab_core.rag.documents import Document
from lab_core.rag.parsing import parse_folder

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
QUESTIONS_FILE = CORPUS_DIR / "questions.json"


@dataclass(frozen=True)
class LabelledQuestion:
    """A question with the (doc_id, section) pairs that answer it and a phrase a correct answer
    contains; ``relevant`` is empty and ``answer`` None when the corpus cannot answer it."""

    id: str
    question: str
    relevant: tuple[tuple[str, str], ...]
    answer: str | None


class QuestionsError(ValueError):
    """The labelled-questions file is malformed; the message names the question and field."""


def load_demo_corpus() -> list[Document]:
    """Every document of the shipped corpus; raises ``ParseError`` if any file fails to parse."""
    documents, errors = parse_folder(CORPUS_DIR)
    if errors:
        raise errors[0]
    return documents


def _question(item: object, index: int) -> LabelledQuestion:
    """One validated question from its JSON object."""
    where = f"question #{index + 1}"
    if not isinstance(item, dict):
        raise QuestionsError(f"{where}: expected an object, got {type(item).__name__}")
    qid = item.get("id")
    if not isinstance(qid, str) or not qid:
        raise QuestionsError(f"{where}: field 'id' must be a non-empty string")
    where = f"question {qid!r}"
    unknown = set(item) - {"id", "question", "relevant", "answer"}
    if unknown:
        raise QuestionsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QuestionsError(f"{where}: field 'question' must be a non-empty string")
    relevant = item.get("relevant")
    if not isinstance(relevant, list):
        raise QuestionsError(f"{where}: field 'relevant' must be a list of {{doc, section}} objects")
    pairs = []
    for r in relevant:
        if not (
            isinstance(r, dict)
            and set(r) == {"doc", "section"}
            and isinstance(r["doc"], str)
            and r["doc"]
            and isinstance(r["section"], str)
        ):
            raise QuestionsError(
                f"{where}: field 'relevant' has {r!r}; each entry needs a 'doc' and a 'section' string"
            )
        pairs.append((r["doc"], r["section"]))
    answer = item.get("answer")
    if answer is not None and (not isinstance(answer, str) or not answer.strip()):
        raise QuestionsError(f"{where}: field 'answer' must be a non-empty string or null")
    if (answer is None) != (not pairs):
        raise QuestionsError(
            f"{where}: fields 'relevant' and 'answer' must both be empty/null (unanswerable) or both set"
        )
    return LabelledQuestion(id=qid, question=question.strip(), relevant=tuple(pairs), answer=answer)


def load_questions(path: Path | None = None) -> list[LabelledQuestion]:
    """The labelled questions of ``path`` (default: the shipped ``questions.json``), validated."""
    path = Path(path) if path is not None else QUESTIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuestionsError(f"{path.name}: cannot read labelled questions ({exc})") from exc
    if not isinstance(data, list):
        raise QuestionsError(f"{path.name}: expected a JSON list of questions")
    questions = [_question(item, i) for i, item in enumerate(data)]
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise QuestionsError(f"question {q.id!r}: field 'id' is duplicated")
        seen.add(q.id)
    return questions
