"""Chunkers: spans are exact slices, windows overlap as configured, cover every word, and the
structural chunkers never cross a section."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab_core.grading_kit import hypothesis_settings  # before hypothesis: sets its cache folder
from lab_core.rag.chunking import (
    CHUNKERS,
    ChunkConfig,
    chunk_all,
    fixed_size,
    recursive,
    sentence_windows,
    window_spans,
    word_spans,
)
from lab_core.rag.documents import Document, Region
from lab_core.rag.text import sentence_spans

WORDS = st.sampled_from(["cache", "queue", "Redis", "shard", "a", "ring", "token,", "GPU", "x1", "(note)"])
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t"])


@st.composite
def texts(draw, max_words: int = 120) -> str:
    n = draw(st.integers(0, max_words))
    out = [draw(st.sampled_from(["", " ", "\n\n"]))]
    for _ in range(n):
        out.append(draw(WORDS))
        out.append(draw(SEPARATORS))
    return "".join(out)


@st.composite
def sectioned_docs(draw) -> Document:
    """Headed sections of paragraphs of sentences, with one Region per section."""
    parts, regions, pos = [], [], 0
    for s in range(draw(st.integers(1, 4))):
        body = [f"# Heading {s}"]
        for _ in range(draw(st.integers(0, 4))):
            sentences = []
            for _ in range(draw(st.integers(1, 5))):
                words = draw(st.lists(WORDS, min_size=1, max_size=25))
                sentences.append("Word " + " ".join(words) + draw(st.sampled_from([".", "!", "?"])))
            body.append(" ".join(sentences))
        section = "\n\n".join(body) + "\n\n"
        regions.append(Region(pos, pos + len(section), page=s + 1, section=f"Heading {s}"))
        parts.append(section)
        pos += len(section)
    return Document("doc", "".join(parts), source="doc.md", title="Doc", regions=tuple(regions))


def word_indices(words: list[tuple[int, int]], a: int, b: int) -> list[int]:
    return [i for i, (s, e) in enumerate(words) if a <= s and e <= b]


@hypothesis_settings(100)
@given(texts(), st.integers(1, 12), st.data())
def test_window_spans_overlap_count_and_cover(text, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    words = word_spans(text)
    windows = window_spans(words, size, overlap)
    n = len(words)
    assert len(windows) == (1 + math.ceil(max(0, n - size) / (size - overlap)) if n else 0)
    members = [word_indices(words, a, b) for a, b in windows]
    for m in members:
        assert 1 <= len(m) <= size and m == list(range(m[0], m[-1] + 1))
    for before, after in zip(members, members[1:]):
        assert len(set(before) & set(after)) == overlap
        assert after[-1] > before[-1]  # no window inside the one before
    assert sorted({i for m in members for i in m}) == list(range(n))
    if n:
        assert windows[0][0] == words[0][0] and windows[-1][1] == words[-1][1]


@hypothesis_settings(100)
@given(texts(), st.integers(1, 15), st.data())
def test_fixed_size_chunks_are_exact_slices(text, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    doc = Document("d", text, source="d.txt", title="D")
    chunks = fixed_size(doc, size, overlap)
    assert [(c.start, c.end) for c in chunks] == window_spans(word_spans(text), size, overlap)
    for i, c in enumerate(chunks):
        assert c.text == text[c.start : c.end] and c.chunk_id == f"d#{i}"
        assert (c.doc_id, c.source, c.title) == ("d", "d.txt", "D")
        assert 1 <= len(c.text.split()) <= size


def test_fixed_size_hand_example():
    doc = Document("d", "one two three four five six seven")
    assert [c.text for c in fixed_size(doc, 3, 1)] == ["one two three", "three four five", "five six seven"]
    assert [c.text for c in fixed_size(doc, 4, 0)] == ["one two three four", "five six seven"]
    assert [c.text for c in fixed_size(doc, 10, 2)] == ["one two three four five six seven"]
    assert fixed_size(Document("e", "  \n "), 3, 1) == []


@pytest.mark.parametrize(
    "size, overlap, field",
    [
        (0, 0, "size"),
        (-3, 0, "size"),
        (2.5, 0, "size"),
        (True, 0, "size"),
        ("4", 0, "size"),
        (4, 4, "overlap"),
        (4, 5, "overlap"),
        (4, -1, "overlap"),
        (4, 1.0, "overlap"),
        (4, True, "overlap"),
    ],
)
def test_bad_size_or_overlap_names_the_field(size, overlap, field):
    doc = Document("d", "a b c d e f")
    for fn in (fixed_size, recursive, sentence_windows):
        with pytest.raises(ValueError, match=rf"^{field} must"):
            fn(doc, size, overlap)
    with pytest.raises(ValueError, match=rf"^{field} must"):
        window_spans(word_spans(doc.text), size, overlap)
    with pytest.raises(ValueError, match=rf"^{field} must"):
        ChunkConfig("fixed", size, overlap)


def _inside_one_region(doc: Document, start: int, end: int) -> Region:
    inside = [r for r in doc.regions if r.start <= start and end <= r.end]
    assert inside, f"chunk [{start}:{end}] crosses a section boundary"
    return inside[0]


@hypothesis_settings(60)
@given(sectioned_docs(), st.integers(3, 60), st.data())
def test_recursive_stays_in_sections_and_respects_size(doc, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    chunks = recursive(doc, size, overlap)
    covered = set()
    for c in chunks:
        assert c.text == doc.text[c.start : c.end] and c.text == c.text.strip()
        region = _inside_one_region(doc, c.start, c.end)
        assert (c.section, c.page) == (region.section, region.page)
        # up to size words, plus a heading-sized piece (under size/10) and the overlap
        assert len(c.text.split()) < size + size / 10 + overlap
        if overlap == 0:
            assert len(c.text.split()) < size + size / 10
        covered.update((a, b) for a, b in word_spans(doc.text, c.start, c.end))
    for r in doc.regions:
        assert set(word_spans(doc.text, r.start, r.end)) <= covered  # every word is in some chunk
    assert [c.chunk_id for c in chunks] == [f"doc#{i}" for i in range(len(chunks))]


def test_recursive_hand_examples():
    para = "alpha beta gamma delta epsilon"
    doc = Document("d", f"{para}\n\n{para}")
    assert [c.text for c in recursive(doc, 8, 0)] == [para, para]  # 5 + 5 > 8: paragraphs stay apart
    assert [c.text for c in recursive(doc, 10, 0)] == [doc.text]  # they fit together
    # a heading under a tenth of size joins the next piece even past size
    body = " ".join(f"w{i}" for i in range(40))
    headed = Document("h", f"# Title\n\n{body}\n\n{body}")
    chunks = recursive(headed, 40, 0)
    assert [c.text for c in chunks] == [f"# Title\n\n{body}", body]
    # overlap words of the previous chunk open the next one
    assert [c.text for c in recursive(doc, 8, 2)] == [para, f"delta epsilon\n\n{para}"]
    # a long sentence-free paragraph falls back to word windows of size
    long = Document("l", " ".join(f"w{i}" for i in range(25)))
    assert [len(c.text.split()) for c in recursive(long, 10, 0)] == [10, 10, 5]


@hypothesis_settings(60)
@given(sectioned_docs(), st.integers(1, 5), st.data())
def test_sentence_windows_stay_in_sections(doc, window, data):
    overlap = data.draw(st.integers(0, window - 1))
    chunks = sentence_windows(doc, window, overlap)
    covered = set()
    for c in chunks:
        assert c.text == doc.text[c.start : c.end]
        region = _inside_one_region(doc, c.start, c.end)
        inside = [s for s in sentence_spans(doc.text, region.start, region.end) if c.start <= s[0] and s[1] <= c.end]
        assert 1 <= len(inside) <= window
        covered.update(inside)
    for r in doc.regions:
        assert set(sentence_spans(doc.text, r.start, r.end)) <= covered


def test_sentence_windows_hand_example():
    doc = Document("d", "One is here. Two is here. Three is here. Four is here.")
    assert [c.text for c in sentence_windows(doc, 2, 1)] == [
        "One is here. Two is here.",
        "Two is here. Three is here.",
        "Three is here. Four is here.",
    ]
    assert [c.text for c in sentence_windows(doc, 3, 0)] == [
        "One is here. Two is here. Three is here.",
        "Four is here.",
    ]


def test_chunk_config_validates_and_builds_chunkers():
    with pytest.raises(ValueError, match="strategy must be one of fixed, recursive, sentences, got 'words'"):
        ChunkConfig("words")  # type: ignore[arg-type]
    assert ChunkConfig() == ChunkConfig("recursive", 200, 40)
    doc = Document("d", "one two three four five six seven")
    for strategy, fn in CHUNKERS.items():
        config = ChunkConfig(strategy, 3, 1)
        assert config.chunker()(doc) == fn(doc, 3, 1)
    docs = [doc, Document("e", "eight nine ten")]
    assert [c.chunk_id for c in chunk_all(docs, ChunkConfig("fixed", 3, 1).chunker())] == ["d#0", "d#1", "d#2", "e#0"]
