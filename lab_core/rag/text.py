"""Text primitives shared by chunking, BM25 and the answerer: terms and sentence spans."""

from __future__ import annotations

import re
from functools import lru_cache

_TERM = re.compile(r"[a-z0-9]+")
# A sentence ends at . ! or ? (and a closing quote or bracket after it, which stays with the
# sentence) followed by space and an upper-case letter, digit, quote or bracket,
# or at a blank line; abbreviations like "e.g." are not followed by a capital often enough to matter.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[A-Z0-9\"'(\[`#*-])|\n\s*\n")

STOPWORDS = frozenset(
    """a an and are as at be been but by can do does for from had has have how i if in into is it its
    of on or our so such than that the their them then there these they this those to was we were what
    when where which while who whom why will with would you your s t""".split()
)


def terms(text: str, *, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Lower-cased word terms of ``text`` without stopwords, with a light suffix stemmer so that
    "queues" and "queue", "batching" and "batch" meet."""
    return [stem(t) for t in _TERM.findall(text.lower()) if t not in stopwords]


@lru_cache(maxsize=65536)
def stem(term: str) -> str:
    """A light English stemmer (plurals, -ing, -ed, final e): predictable beats clever here."""
    if len(term) <= 3 or term.endswith(("ss", "us", "is")):
        return term
    if term.endswith("ies"):
        return term[:-3] + "y"
    if term.endswith(("sses", "xes", "zes", "ches", "shes")):
        term = term[:-2]
    else:
        for suffix in ("ing", "ed", "s"):
            if term.endswith(suffix) and len(term) - len(suffix) >= 3:
                term = term[: -len(suffix)]
                break
    # A final e goes too, so "cache", "caches" and "cached" all become "cach".
    return term[:-1] if term.endswith("e") and len(term) > 4 else term


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of the sentences of ``text[start:end]``, offsets into
    ``text``, stripped of surrounding whitespace; empty sentences are dropped."""
    end = len(text) if end is None else end
    spans, pos = [], start
    for m in _SENTENCE_END.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out
