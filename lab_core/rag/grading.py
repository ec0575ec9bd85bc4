"""Graders for Lab 06's notebook, so that its test cells stay one line long.

* :func:`check_chunk_spans_errors` -- the student's ``chunk_spans`` refuses a size below 1 and an
  overlap outside ``0 <= overlap < size`` with ``ValueError``, on empty text too.
* :func:`compare_chunk_spans` -- ``chunk_spans(text, size, overlap)`` against
  ``window_spans(word_spans(text), size, overlap)`` on hand-made and generated texts (words of
  letters, digits and punctuation between runs of whitespace: spaces, tabs and newlines, and also
  ``\r\n``, ``\f``, ``\v`` and Unicode spaces such as U+00A0, everything ``str.split()`` splits on).
* :func:`compare_rrf` -- ``rrf(rankings, k)`` against :func:`lab_core.rag.fusion.rrf` on generated
  rankings: the same ids in the same order, the same scores within 1e-9.
* :func:`compare_ndcg` -- ``ndcg_at_k(ranked, relevant, k)`` against
  :func:`lab_core.rag.evaluation.ndcg_at_k` on generated ranked lists and graded judgements.
* :func:`compare_cite` -- ``cite(sentences)`` against :func:`lab_core.rag.answer.cite` on generated
  sentence lists (several sentences per chunk, chunks revisited).
* :func:`check_cite_on_corpus` -- answers built with the student's ``cite`` from the demo corpus's
  retrieved sentences pass :func:`lab_core.rag.answer.check_citations` with support rate 1.0.
* :func:`check_refusal_threshold` -- the extractive answerer with the student's ``min_score`` gets
  refusal accuracy 1.0 on the labelled questions.
* :func:`mode_table` / :func:`best_retrieval_mode` -- nDCG@10 of bm25, dense and hybrid retrieval on
  the labelled questions at the default chunking, computed at grade time.

Every check raises ``AssertionError`` with a readable counterexample; a ``NotImplementedError``
from a blank exercise is let through unchanged. Hypothesis runs derandomized, so a grade never
depends on luck.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from lab_core.grading_kit import hypothesis_settings, run_property  # before hypothesis: sets its cache folder

# isort: split

from hypothesis import given
from hypothesis import strategies as st

from lab_core.rag.answer import Sentence, check_citations
from lab_core.rag.answer import cite as reference_cite
from lab_core.rag.chunking import window_spans, word_spans
from lab_core.rag.documents import Chunk
from lab_core.rag.evaluation import ndcg_at_k as reference_ndcg
from lab_core.rag.fusion import rrf as reference_rrf

__all__ = [
    "best_retrieval_mode",
    "check_chunk_spans_errors",
    "check_cite_on_corpus",
    "check_refusal_threshold",
    "compare_chunk_spans",
    "compare_cite",
    "compare_ndcg",
    "compare_rrf",
    "mode_table",
]

MODES = ("bm25", "dense", "hybrid")


def _close(a: Any, b: float) -> bool:
    try:
        return math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


# --- exercise 1: chunk spans -------------------------------------------------------------------


def check_chunk_spans_errors(fn: Callable[..., Any]) -> None:
    """``ValueError`` for size < 1, overlap < 0 and overlap >= size, whatever the text."""
    for text in ("one two three four five", ""):
        for size, overlap in ((0, 0), (-2, 0), (3, 3), (3, 5), (3, -1), (1, 1)):
            try:
                got = fn(text, size, overlap)
            except ValueError:
                continue
            raise AssertionError(
                f"chunk_spans({text!r}, size={size}, overlap={overlap}) returned {got!r}; "
                "it must raise ValueError (size >= 1 and 0 <= overlap < size)"
            )


def _as_spans(got: Any) -> Any:
    try:
        return [(int(a), int(b)) for a, b in got]
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        return got


def _show_words(text: str) -> str:
    words = word_spans(text)
    shown = ", ".join(f"{i}:{text[a:b]!r}@{a}" for i, (a, b) in enumerate(words[:40]))
    return f"{len(words)} words (index:word@start): {shown}{' ...' if len(words) > 40 else ''}"


def _other_whitespace(text: str) -> str:
    """A hint naming the whitespace in ``text`` other than space, tab and newline, if any."""
    found = sorted({c for c in text if c.isspace() and c not in " \t\n"})
    if not found:
        return ""
    return (
        f"\n  this text also has the whitespace {', '.join(repr(c) for c in found)}: "
        "a word ends at any whitespace (\\S+, str.split())"
    )


def _compare_chunk_case(fn: Callable[..., Any], text: str, size: int, overlap: int) -> None:
    want = window_spans(word_spans(text), size, overlap)
    got = _as_spans(fn(text, size, overlap))
    assert got == want, (
        f"chunk_spans({text!r}, size={size}, overlap={overlap})\n  {_show_words(text)}\n"
        f"  expected: {want}\n  yours:    {got}{_other_whitespace(text)}"
    )


def _explicit_chunk_cases() -> list[tuple[str, int, int]]:
    ten = " ".join(f"w{i}" for i in range(10))
    return [
        (ten, 4, 2),  # windows start at words 0, 2, 4, 6: the last one ends exactly at the last word
        (ten, 4, 1),  # windows start at words 0, 3 and 6; 6..9 ends at the last word
        (ten, 3, 0),  # 0, 3, 6, 9: a one-word tail window
        (ten, 20, 5),  # shorter than one window: one span over the whole text
        (ten, 1, 0),
        (ten, 5, 4),
        ("  lead and trail  \n", 2, 1),
        ("tabs\tand\nnew\n\nlines  here", 2, 0),
        ("", 3, 1),
        ("   \n\t ", 2, 0),
        (" ".join(["w"] * 1000), 200, 50),
        # Windows line endings: "\r" is whitespace too, and counts as one character of the span.
        ("one two\r\nthree four\r\n\r\nfive six\r\n", 2, 1),
        ("\r\n".join(f"line{i} of text" for i in range(6)), 4, 1),
        # A page break from a PDF, a vertical tab, and the separators U+001C..U+001F.
        ("page one ends\fpage two\vstarts\x1chere\x1fnow", 3, 1),
        # Unicode spaces: no-break (U+00A0, HTML's &nbsp;), em, ideographic, line separator, NEL.
        ("10\xa0ms budget\u2003per\u3000request\u2028and\x85more words", 2, 0),
        ("\xa0\u202f lead\xa0and\u2009trail \u205f\u1680", 1, 0),
        # Not whitespace: a zero-width space (U+200B) and accented letters stay inside a word.
        ("zero\u200bwidth café naïve", 2, 1),
    ]


_BLANKS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n "]
# Whitespace a chunker meets in texts from Windows (\r\n), PDFs (page breaks) and HTML (&nbsp;):
# half the generated separators, so a chunker that splits on _BLANKS only fails in a few examples.
_OTHER_WHITESPACE = ["\r\n", "\r\n\r\n", "\f", "\v", "\xa0", " \xa0", "\u2003", "\u3000"]
_SEPARATORS = st.sampled_from(_BLANKS + _OTHER_WHITESPACE)
_WORDS = st.text(alphabet="ab1.,-é", min_size=1, max_size=4)
_ENDS = st.sampled_from(["", " ", "\n", "\r\n", "\xa0"])


@st.composite
def _chunk_cases(draw: st.DrawFn) -> tuple[str, int, int]:
    words = draw(st.lists(_WORDS, min_size=0, max_size=30))
    text = draw(_ENDS)
    for i, w in enumerate(words):
        text += (draw(_SEPARATORS) if i else "") + w
    text += draw(_ENDS)
    size = draw(st.integers(1, 9))
    overlap = draw(st.integers(0, size - 1))
    return text, size, overlap


def compare_chunk_spans(fn: Callable[..., Any], max_examples: int = 150) -> None:
    """The same spans as ``window_spans(word_spans(text), size, overlap)`` on hand-made and generated texts."""
    for case in _explicit_chunk_cases():
        _compare_chunk_case(fn, *case)

    @hypothesis_settings(max_examples)
    @given(_chunk_cases())
    def test(case: tuple[str, int, int]) -> None:
        _compare_chunk_case(fn, *case)

    run_property(test)


# --- exercise 2: reciprocal rank fusion --------------------------------------------------------


def _tie_tolerant_order(fused: list[tuple[str, float]], rankings: Sequence[Sequence[str]]) -> list[str]:
    """The reference order with scores equal to 1e-12 counted as ties (first appearance first):
    a student who adds the same terms in another order may differ from it by a rounding error."""
    first: dict[str, int] = {}
    for ranking in rankings:
        for doc in ranking:
            first.setdefault(doc, len(first))
    return [d for d, _ in sorted(fused, key=lambda kv: (-round(kv[1], 12), first[kv[0]]))]


def _compare_rrf_case(fn: Callable[..., Any], rankings: list[list[str]], k: int | None) -> None:
    want = reference_rrf(rankings) if k is None else reference_rrf(rankings, k)
    got = fn([list(r) for r in rankings]) if k is None else fn([list(r) for r in rankings], k)
    shown = f"rrf({rankings}{'' if k is None else f', k={k}'})"
    try:
        pairs = [(str(d), s) for d, s in got]
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        raise AssertionError(f"{shown}\n  expected a list of (id, score) pairs, yours returned {got!r}") from None
    ids = [d for d, _ in pairs]
    want_ids = [d for d, _ in want]
    order_ok = ids in (want_ids, _tie_tolerant_order(want, rankings))
    scores = dict(pairs)
    scores_ok = len(ids) == len(set(ids)) and set(ids) == set(want_ids) and all(_close(scores[d], s) for d, s in want)
    assert order_ok and scores_ok, (
        f"{shown}\n  expected: {[(d, round(s, 6)) for d, s in want]}\n"
        f"  yours:    {[(d, round(float(s), 6) if isinstance(s, (int, float)) else s) for d, s in pairs]}"
    )


@st.composite
def _rrf_cases(draw: st.DrawFn) -> tuple[list[list[str]], int | None]:
    pool = [f"c{i}" for i in range(draw(st.integers(1, 10)))]
    rankings = []
    for _ in range(draw(st.integers(1, 4))):
        picked = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
        rankings.append(picked)
    k = draw(st.sampled_from([None, None, 60, 0, 1, 2, 10]))
    return rankings, k


def compare_rrf(fn: Callable[..., Any], max_examples: int = 150) -> None:
    """The same fused list as :func:`lab_core.rag.fusion.rrf`: ids in order, scores within 1e-9."""
    explicit = [
        ([["a", "b", "c"], ["c", "a", "d"]], None),
        ([["a", "b"], ["b", "a"]], None),  # a tie: first appearance first
        ([["x", "y", "z", "w"], ["w", "x"]], 60),
        ([["a", "b", "c"], ["d", "c"]], 0),
        ([["a"], [], ["b", "a"]], 1),
        ([], None),
    ]
    for rankings, k in explicit:
        _compare_rrf_case(fn, rankings, k)

    @hypothesis_settings(max_examples)
    @given(_rrf_cases())
    def test(case: tuple[list[list[str]], int | None]) -> None:
        _compare_rrf_case(fn, *case)

    run_property(test)


# --- exercise 3: nDCG@k ----------------------------------------------------------------------------


@st.composite
def _ndcg_cases(draw: st.DrawFn) -> tuple[list[str], dict[str, int], int]:
    pool = [f"d{i}" for i in range(draw(st.integers(1, 15)))]
    ranked = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    judged = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    relevant = {d: draw(st.sampled_from([0, 1, 1, 2, 3])) for d in judged}
    k = draw(st.sampled_from([1, 2, 3, 5, 10, 10, 20]))
    return ranked, relevant, k


def _compare_ndcg_case(fn: Callable[..., Any], ranked: list[str], relevant: dict[str, int], k: int) -> None:
    want = reference_ndcg(ranked, relevant, k)
    got = fn(list(ranked), dict(relevant), k)
    assert _close(got, want), f"ndcg_at_k({ranked}, {relevant}, k={k})\n  expected: {want!r}\n  yours:    {got!r}"


def compare_ndcg(fn: Callable[..., Any], max_examples: int = 150) -> None:
    """The same value as :func:`lab_core.rag.evaluation.ndcg_at_k` (within 1e-9), hand-made cases first."""
    explicit = [
        (["a", "b", "c"], {"a": 1, "c": 1}, 10),
        (["b", "a"], {"a": 3, "b": 1}, 10),
        (["a", "b", "c", "d"], {"c": 2, "z": 3}, 3),  # a relevant document never retrieved
        (["a", "b", "c"], {"c": 1}, 2),  # the relevant one just below the cut
        (["a", "b"], {}, 10),  # nothing relevant: 0
        (["a", "b"], {"a": 0, "b": 0}, 10),
        ([], {"a": 1}, 10),
        (["a", "b", "c", "d", "e"], {"e": 1, "d": 2, "a": 1}, 5),
    ]
    for case in explicit:
        _compare_ndcg_case(fn, *case)

    @hypothesis_settings(max_examples)
    @given(_ndcg_cases())
    def test(case: tuple[list[str], dict[str, int], int]) -> None:
        _compare_ndcg_case(fn, *case)

    run_property(test)


# --- exercise 4: citations ------------------------------------------------------------------------


def _chunk(i: int) -> Chunk:
    doc = f"doc{i % 3}.md"
    return Chunk(
        f"{doc}#{i}",
        doc,
        f"Text of chunk {i}.",
        100 * i,
        100 * i + 17,
        page=i % 2,
        section=f"Section {i}",
        source=doc,
        title=f"Doc {i % 3}",
    )


@st.composite
def _sentence_lists(draw: st.DrawFn) -> list[Sentence]:
    chunks = [_chunk(i) for i in draw(st.lists(st.integers(0, 9), min_size=1, max_size=5, unique=True))]
    picks = draw(st.lists(st.integers(0, len(chunks) - 1), min_size=0, max_size=7))
    return [Sentence(f"Sentence {j} from chunk {chunks[c].chunk_id}.", chunks[c], 0.5) for j, c in enumerate(picks)]


def _show_sentences(sentences: Sequence[Sentence]) -> str:
    return "[" + ", ".join(f"Sentence({s.text!r}, chunk={s.chunk.chunk_id!r})" for s in sentences) + "]"


def _compare_cite_case(fn: Callable[..., Any], sentences: list[Sentence]) -> None:
    want_text, want_citations = reference_cite(sentences)
    got = fn(list(sentences))
    shown = f"cite({_show_sentences(sentences)})"
    try:
        text, citations = got
        citations = list(citations)
    except Exception:  # noqa: BLE001 - describing whatever the student returned
        raise AssertionError(f"{shown}\n  expected (text, [Citation, ...]), yours returned {got!r}") from None
    assert text == want_text, f"{shown}\n  expected text: {want_text!r}\n  your text:     {text!r}"
    assert citations == want_citations, (
        f"{shown}\n  expected citations: {[(c.n, c.chunk_id) for c in want_citations]} (n, chunk_id)\n"
        f"  yours:              {[(getattr(c, 'n', c), getattr(c, 'chunk_id', '')) for c in citations]}"
        + (
            ""
            if [(c.n, c.chunk_id) for c in want_citations]
            != [(getattr(c, "n", c), getattr(c, "chunk_id", "")) for c in citations]
            else "\n  (same numbers and chunks: build each Citation with citation_for(n, chunk))"
        )
    )


def compare_cite(fn: Callable[..., Any], max_examples: int = 100) -> None:
    """The same answer text and citations as :func:`lab_core.rag.answer.cite` on generated sentences."""
    a, b, c = _chunk(4), _chunk(7), _chunk(2)
    explicit = [
        [],
        [Sentence("Only one.", a)],
        [Sentence("First.", a), Sentence("Second.", a)],
        [Sentence("From b.", b), Sentence("From a.", a), Sentence("From b again.", b), Sentence("From c.", c)],
    ]
    for sentences in explicit:
        _compare_cite_case(fn, sentences)

    @hypothesis_settings(max_examples)
    @given(_sentence_lists())
    def test(sentences: list[Sentence]) -> None:
        _compare_cite_case(fn, sentences)

    run_property(test)


@lru_cache(maxsize=1)
def _demo_pipeline():  # returns a RagPipeline, imported lazily (it loads the embedder)
    from lab_core.rag.system import build_pipeline

    return build_pipeline()


@lru_cache(maxsize=1)
def _questions():
    from lab_core.rag.corpus import load_questions

    return tuple(load_questions())


def check_cite_on_corpus(fn: Callable[..., Any], sentences_per_answer: int = 4) -> None:
    """For every answerable labelled question, the best ``sentences_per_answer`` retrieved sentences
    (from several chunks, in retrieval order) cited by ``fn``: every sentence is cited, every
    citation number names a cited chunk, and ``check_citations`` finds each sentence in its chunk."""
    pipeline = _demo_pipeline()
    multi_chunk = 0
    for q in _questions():
        if not q.relevant:
            continue
        _, hits = pipeline.retrieve(q.question, k=10)
        chosen = pipeline.answerer.candidates(q.question, hits)[:sentences_per_answer]
        rank = {h.chunk.chunk_id: i for i, h in enumerate(hits)}
        chosen.sort(key=lambda s: (rank[s.chunk.chunk_id], s.chunk.text.find(s.text)))
        multi_chunk += len({s.chunk.chunk_id for s in chosen}) > 1
        text, citations = fn(list(chosen))
        by_id = {s.chunk.chunk_id: s.chunk for s in chosen}
        unknown = [c for c in citations if getattr(c, "chunk_id", None) not in by_id]
        assert not unknown, f"question {q.id}: citations {unknown[:2]} name chunks that no sentence came from"
        numbered = {c.n: by_id[c.chunk_id] for c in citations}
        check = check_citations(text, numbered)
        where = f"question {q.id} ({q.question!r}): sentences from chunks {[s.chunk.chunk_id for s in chosen]}"
        assert check.rate == 1.0 and not check.problems, f"{where}\n  your answer: {text!r}\n  {check.problems[:2]}"
        assert check.cited and not check.uncited, (
            f"{where}\n  your answer: {text!r}\n  {check.uncited} sentence(s) carry no citation"
        )
    assert multi_chunk, "internal: no answer drew on two chunks"


# --- analysis -----------------------------------------------------------------------------------


def check_refusal_threshold(min_score: Any) -> None:
    """The extractive answerer with its ``min_score`` set to ``min_score`` must get refusal accuracy
    1.0 on the labelled questions (refuse exactly the unanswerable ones). Returns None: a number
    returned into a test cell's output would be read by nbgrader as a partial score."""
    from lab_core.rag.assess import assess, summary

    assert isinstance(min_score, (int, float)) and not isinstance(min_score, bool), (
        f"min_score must be a number, got {min_score!r}"
    )
    pipeline = _demo_pipeline()
    old = pipeline.answerer.min_score
    pipeline.answerer.min_score = float(min_score)
    try:
        table = assess(pipeline, _questions())
    finally:
        pipeline.answerer.min_score = old
    accuracy = summary(table)["refusal_accuracy"]
    wrong = table[table.refused != table.should_refuse]
    assert accuracy == 1.0, (
        f"with min_score={min_score} the answerer refuses {int(table.refused.sum())} questions; "
        f"wrong on {', '.join(r.id + (' (refused)' if r.refused else ' (answered)') for r in wrong.itertuples())}"
    )


@lru_cache(maxsize=1)
def mode_table() -> dict[str, float]:
    """Mean nDCG@10 over the answerable labelled questions for each retrieval mode, without the
    reranker, at the default chunking."""
    from lab_core.rag.assess import assess, summary
    from lab_core.rag.retrieval import RetrievalConfig

    pipeline = _demo_pipeline()
    old = pipeline.retrieval
    out = {}
    try:
        for mode in MODES:
            pipeline.retrieval = RetrievalConfig(mode=mode)
            out[mode] = summary(assess(pipeline, _questions(), rerank=False, answer=False))["nDCG@10"]
    finally:
        pipeline.retrieval = old
    return out


def best_retrieval_mode() -> str:
    """The retrieval mode ("bm25", "dense" or "hybrid") with the highest mean nDCG@10."""
    table = mode_table()
    return max(table, key=table.get)
