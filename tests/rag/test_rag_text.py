"""Terms (stopwords, stemming) and sentence spans on examples a reader can check by eye."""

from __future__ import annotations

from lab_core.rag.text import sentence_spans, stem, terms


def sentences(text: str, start: int = 0, end: int | None = None) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text, start, end)]


def test_sentence_spans_split_on_end_marks_and_blank_lines():
    assert sentences("Redis keeps data in memory. It is fast! Is it durable? Yes, with AOF.") == [
        "Redis keeps data in memory.",
        "It is fast!",
        "Is it durable?",
        "Yes, with AOF.",
    ]
    assert sentences("# Heading\n\nBody text follows\nover two lines.\n\n\n  Last part  ") == [
        "# Heading",
        "Body text follows\nover two lines.",
        "Last part",
    ]
    assert sentences("It is fast! 3 people saw it. [Note] follows.") == [
        "It is fast!",
        "3 people saw it.",
        "[Note] follows.",
    ]


def test_sentence_spans_keep_closing_quotes_and_brackets():
    """A quote or bracket closing a sentence belongs to it: the span must not cut it off."""
    assert sentences('He said "stop." Then he left. (Quietly.) 3 people saw it.') == [
        'He said "stop."',
        "Then he left.",
        "(Quietly.)",
        "3 people saw it.",
    ]


def test_sentence_spans_keep_abbreviations_decimals_and_lower_case_continuations():
    assert sentences("Use a cache, e.g. the Redis one. Then measure it.") == [
        "Use a cache, e.g. the Redis one.",
        "Then measure it.",
    ]
    assert sentences("Latency fell from 3.5 ms to 1.2 ms. Good.") == ["Latency fell from 3.5 ms to 1.2 ms.", "Good."]
    assert sentences("ends with etc. and goes on") == ["ends with etc. and goes on"]


def test_sentence_spans_offsets_strip_whitespace_and_drop_empty():
    text = "  First one.   Second one.  \n\n  "
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["First one.", "Second one."]
    assert all(not text[a].isspace() and not text[b - 1].isspace() for a, b in spans)
    assert sentence_spans("   \n\n  ") == [] and sentence_spans("") == []
    # start/end select a slice but offsets stay offsets into the whole text
    text = "Zero here. One here. Two here."
    assert sentence_spans(text, 11) == [(11, 20), (21, 30)]
    assert sentences(text, 11, 20) == ["One here."]


def test_terms_lowercase_drop_stopwords_and_stem():
    assert terms("The Queues of the Rate-Limiter, and its caches!") == ["queu", "rate", "limiter", "cach"]
    assert terms("the and of to is") == []
    assert terms("") == []


def test_stemmer_makes_word_forms_meet():
    assert stem("queues") == stem("queue")
    assert stem("caches") == stem("cache") == stem("cached") == "cach"
    assert stem("batching") == stem("batch") == stem("batches")
    assert stem("policies") == "policy"
    assert stem("class") == "class" and stem("status") == "status" and stem("analysis") == "analysis"
    assert stem("gpu") == "gpu" and stem("bus") == "bus"  # three letters or fewer stay
    assert stem("shed") == "shed"  # stripping "ed" would leave under three letters
    assert terms("Caching cached caches") == ["cach"] * 3
