"""Lab 06's graders: they pass the reference and fail every wrong answer in ``tests/rag/mutants``.

`syslab check rag` proves this through nbgrader; these tests prove it in seconds, directly on the
helpers in `lab_core.rag.grading`, by running each mutant's function (exactly the source that
`syslab check` splices into the notebook) against the graders it must fail.
"""

from __future__ import annotations

import math
import re

import pytest

from lab_core.course import load_mutants, parse_mutant
from lab_core.labs import ROOT, get_lab
from lab_core.rag import grading
from lab_core.rag.answer import citation_for
from lab_core.rag.answer import cite as reference_cite
from lab_core.rag.chunking import _check_size, window_spans, word_spans
from lab_core.rag.evaluation import ndcg_at_k as reference_ndcg
from lab_core.rag.fusion import rrf as reference_rrf

MUTANTS = ROOT / "tests" / "rag" / "mutants"
FUNCTIONS = {"chunk_spans", "rrf", "ndcg", "cite"}
ANSWERS = {"answer_rrf_score", "answer_chunk_count", "answer_min_score", "answer_best_mode"}


def reference_chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    _check_size(size, overlap)
    return window_spans(word_spans(text), size, overlap)


# Which graders each function mutant must fail (with a message matching the pattern) or pass (None).
EXPECTED = {
    "overlap_off_by_one": {"chunk_spans": {"errors": None, "compare": "expected"}},
    "chunk_drops_tail": {"chunk_spans": {"errors": None, "compare": "expected"}},
    "chunk_no_validation": {"chunk_spans": {"errors": "must raise ValueError", "compare": None}},
    "chunk_splits_ascii_blanks": {"chunk_spans": {"errors": None, "compare": "also has the whitespace"}},
    "chunk_crlf_offsets": {"chunk_spans": {"errors": None, "compare": r"also has the whitespace '\\r'"}},
    "rrf_ranks_from_zero": {"rrf": {"compare": "expected|division"}},
    "rrf_sums_scores": {"rrf": {"compare": "expected"}},
    "ndcg_no_log_discount": {"ndcg": {"compare": "expected"}},
    "ndcg_ideal_from_ranked": {"ndcg": {"compare": "expected"}},
    "cite_wrong_chunk": {"cite": {"compare": "citations", "corpus": "does not support"}},
    "cite_one_per_sentence": {"cite": {"compare": "expected text", "corpus": None}},
}

GRADERS = {
    "chunk_spans": {"errors": grading.check_chunk_spans_errors, "compare": grading.compare_chunk_spans},
    "rrf": {"compare": grading.compare_rrf},
    "ndcg": {"compare": grading.compare_ndcg},
    "cite": {"compare": grading.compare_cite, "corpus": grading.check_cite_on_corpus},
}

NAMES = {"chunk_spans": "chunk_spans", "rrf": "rrf", "ndcg": "ndcg_at_k", "cite": "cite"}


def _namespace() -> dict:
    """The names the notebook's setup cell defines that a solution cell may use."""
    return {"re": re, "math": math, "citation_for": citation_for}


def _function(mutant_name: str, grade_id: str):
    """The mutant's replacement cell, executed with the names the notebook's setup cell defines."""
    source = parse_mutant(MUTANTS / f"{mutant_name}.py").cells[grade_id]
    namespace = _namespace()
    exec(compile(source, f"{mutant_name}.py", "exec"), namespace)  # noqa: S102 - our own test fixture
    return namespace[NAMES[grade_id]]


def _answers(mutant_name: str, grade_id: str) -> dict:
    source = parse_mutant(MUTANTS / f"{mutant_name}.py").cells[grade_id]
    namespace: dict = {}
    exec(compile(source, f"{mutant_name}.py", "exec"), namespace)  # noqa: S102 - our own test fixture
    return namespace


def test_every_mutant_file_parses_and_names_a_cell():
    mutants = {p.stem for p in MUTANTS.glob("*.py")}
    assert len(mutants) >= 8
    assert set(EXPECTED) <= mutants, "EXPECTED names a mutant file that does not exist"
    for m in load_mutants(get_lab("rag")):
        assert m.description, f"mutant {m.name} needs a one-line docstring"
        assert set(m.cells) <= FUNCTIONS | ANSWERS, m.cells.keys()
    covered = {gid for m in load_mutants(get_lab("rag")) for gid in m.cells}
    assert covered == FUNCTIONS | ANSWERS, f"no mutant for {sorted(FUNCTIONS | ANSWERS - covered)}"


def test_reference_passes_every_grader():
    grading.check_chunk_spans_errors(reference_chunk_spans)
    grading.compare_chunk_spans(reference_chunk_spans, max_examples=60)
    grading.compare_rrf(reference_rrf, max_examples=60)
    grading.compare_ndcg(reference_ndcg, max_examples=60)
    grading.compare_cite(reference_cite, max_examples=60)


@pytest.mark.parametrize(
    ("mutant", "grade_id", "grader"),
    [(m, gid, g) for m, cells in EXPECTED.items() for gid, graders in cells.items() for g in graders if g != "corpus"],
)
def test_mutant_against_grader(mutant: str, grade_id: str, grader: str):
    fn = _function(mutant, grade_id)
    check = GRADERS[grade_id][grader]
    message = EXPECTED[mutant][grade_id][grader]
    if message is not None:
        with pytest.raises((AssertionError, ZeroDivisionError), match=message):
            check(fn)
    else:
        check(fn)  # this mutant is legal here; another grader catches it


def test_a_blank_exercise_raises_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for check in (grading.compare_chunk_spans, grading.compare_rrf, grading.compare_ndcg, grading.compare_cite):
        with pytest.raises(NotImplementedError):
            check(blank)


def test_chunk_spans_errors_accept_only_value_error():
    def no_checks(text, size, overlap):
        return []

    with pytest.raises(AssertionError, match="must raise ValueError"):
        grading.check_chunk_spans_errors(no_checks)


# --- whitespace other than space, tab and newline (issue 16) ---------------------------------------

WHITESPACE_MUTANTS = ("chunk_splits_ascii_blanks", "chunk_crlf_offsets")
OTHER_WHITESPACE = "\r\f\v\x1c\x85\xa0\u2003\u2028\u3000"


def _words_ascii_only(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """\\S+ under re.ASCII: \\r, \\f and \\v split words, U+00A0 and other Unicode spaces do not."""
    return window_spans([m.span() for m in re.finditer(r"\S+", text, re.ASCII)], size, overlap)


def _words_split_at_zero_width_space(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Splits at U+200B too, which is not whitespace."""
    return window_spans([m.span() for m in re.finditer(r"[^\s\u200b]+", text)], size, overlap)


@pytest.mark.parametrize("mutant", WHITESPACE_MUTANTS)
def test_whitespace_mutants_agree_with_the_reference_on_spaces_tabs_and_newlines(mutant: str):
    """What made them a hole: on the texts the graders used to generate they are right."""
    fn = _function(mutant, "chunk_spans")
    example = "the quick  brown fox\njumps over the lazy dog"
    for text in (example, "  lead and trail  \n", "tabs\tand\nnew\n\nlines  here", " \n "):
        for size, overlap in ((1, 0), (2, 1), (3, 0), (4, 1), (20, 5)):
            assert fn(text, size, overlap) == reference_chunk_spans(text, size, overlap)


@pytest.mark.parametrize("mutant", WHITESPACE_MUTANTS)
def test_hand_made_chunk_cases_catch_the_whitespace_mutants(mutant: str):
    fn = _function(mutant, "chunk_spans")
    cases = grading._explicit_chunk_cases()
    assert all(c in "".join(text for text, _, _ in cases) for c in OTHER_WHITESPACE)
    caught = [
        text for text, size, overlap in cases if fn(text, size, overlap) != reference_chunk_spans(text, size, overlap)
    ]
    assert caught and all(set(text) & set(OTHER_WHITESPACE) for text in caught)


@pytest.mark.parametrize("wrong", [*WHITESPACE_MUTANTS, "ascii_only"])
def test_generated_chunk_cases_alone_catch_other_whitespace(wrong: str, monkeypatch):
    """The generator's separators catch these even without the hand-made cases."""
    fn = _words_ascii_only if wrong == "ascii_only" else _function(wrong, "chunk_spans")
    monkeypatch.setattr(grading, "_explicit_chunk_cases", list)
    with pytest.raises(AssertionError, match="also has the whitespace"):
        grading.compare_chunk_spans(fn)
    grading.compare_chunk_spans(reference_chunk_spans)


def test_chunk_grader_keeps_non_whitespace_inside_words():
    with pytest.raises(AssertionError, match=r"zero\\u200bwidth"):
        grading.compare_chunk_spans(_words_split_at_zero_width_space)


def test_rrf_grader_tolerates_rounding_in_ties_only():
    def summed_backwards(rankings, k=60):
        scores: dict[str, float] = {}
        for ranking in rankings:
            for doc in ranking:
                scores.setdefault(doc, 0.0)
        for ranking in reversed(rankings):  # the same terms added in another order
            for rank, doc in enumerate(ranking, start=1):
                scores[doc] += 1.0 / (k + rank)
        return sorted(scores.items(), key=lambda kv: -kv[1])

    grading.compare_rrf(summed_backwards, max_examples=100)

    def ties_reversed(rankings, k=60):
        return sorted(reference_rrf(rankings, k)[::-1], key=lambda kv: -kv[1])

    with pytest.raises(AssertionError, match="expected"):
        grading.compare_rrf(ties_reversed)


# --- the graders that run the demo pipeline (load MiniLM: a few seconds) ---------------------------


@pytest.fixture(scope="module")
def modes() -> dict[str, float]:
    return grading.mode_table()


def test_cite_on_corpus(modes):
    grading.check_cite_on_corpus(reference_cite)
    with pytest.raises(AssertionError, match="does not support"):
        grading.check_cite_on_corpus(_function("cite_wrong_chunk", "cite"))
    grading.check_cite_on_corpus(_function("cite_one_per_sentence", "cite"))  # legal citations, wrong numbering


def test_refusal_threshold(modes):
    assert grading.check_refusal_threshold(0.329) is None  # a number in a test cell's output is a partial score
    grading.check_refusal_threshold(0.33)
    wrong = _answers("analysis_threshold_too_low", "answer_min_score")["min_score"]
    with pytest.raises(AssertionError, match="q39"):
        grading.check_refusal_threshold(wrong)
    with pytest.raises(AssertionError, match="refused"):
        grading.check_refusal_threshold(0.4)
    with pytest.raises(AssertionError, match="number"):
        grading.check_refusal_threshold("0.33")


def test_best_mode(modes):
    assert set(modes) == {"bm25", "dense", "hybrid"}
    assert all(0.0 < v <= 1.0 for v in modes.values())
    best = grading.best_retrieval_mode()
    assert modes[best] == max(modes.values())
    assert _answers("analysis_dense_is_best", "answer_best_mode")["best_mode"] != best


def test_analysis_by_value():
    wrong = _answers("analysis_off_by_one", "answer_rrf_score")
    assert not math.isclose(wrong["rrf_score_answer"], 1 / 61 + 1 / 64, rel_tol=1e-4)
    assert math.isclose(dict(reference_rrf([["c", "p", "q", "r"], ["p", "q", "r", "c"]]))["c"], 1 / 61 + 1 / 64)
    count = _answers("analysis_off_by_one", "answer_chunk_count")["chunk_count_answer"]
    assert count != len(reference_chunk_spans(" ".join(["w"] * 1000), 200, 50)) == 7
