"""Cleaning a crawled corpus: normalise, strip markup and boilerplate, drop short pages, deduplicate.

The stages follow what pre-training pipelines do (C4, RefinedWeb, FineWeb), at toy size:
``clean_text`` repairs one document, ``dedup`` removes exact copies (hash of the normalised text)
and near-copies (MinHash signatures over word 5-shingles, LSH banding for candidates, then the
true Jaccard similarity of each candidate pair), and ``run_pipeline`` chains them and counts what
each stage removed.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

MIN_WORDS = 20
_DROP_BLOCKS = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAGS = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6]|tr|table|section|article|body|html)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"[^\S\n]+")
_BLANKS = re.compile(r"\n{2,}")
# Everything but printable ASCII, newline and tab: the only characters that can be controls.
_ODD_CHAR = re.compile(r"[^\x20-\x7e\n\t]")
_BOILERPLATE = re.compile(
    r"(click|tap) here\b.*|share this (post|article|page|story)\b.*|(copyright|©)\b.*all rights reserved\.?"
    r"|we use cookies\b.*|(accept|manage) (all )?cookies\b.*|advertisement|read more\W*"
    r"|sign up for our newsletter\b.*|subscribe to our newsletter\b.*|follow us on \w+\b.*",
    re.IGNORECASE,
)
_MAX_BOILERPLATE_CHARS = 100


@dataclass
class CleanCounts:
    """What cleaning one or more documents removed."""

    html_docs: int = 0
    boilerplate_lines: int = 0
    control_chars: int = 0

    def add(self, other: CleanCounts) -> None:
        """Accumulate ``other`` into this one."""
        self.html_docs += other.html_docs
        self.boilerplate_lines += other.boilerplate_lines
        self.control_chars += other.control_chars


def _is_control(c: str) -> bool:
    # Cc minus the whitespace we keep; Cf covers zero-width spaces and byte-order marks.
    return c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf")


def clean_with_counts(text: str, *, min_words: int = MIN_WORDS) -> tuple[str | None, CleanCounts]:
    """``clean_text`` plus the counts of markup, control characters and boilerplate lines it removed."""
    counts = CleanCounts()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "<" in text:
        stripped = _TAG.sub("", _BLOCK_TAGS.sub("\n\n", _DROP_BLOCKS.sub("\n\n", text)))
        if stripped != text:
            counts.html_docs = 1
            text = stripped
    # Unescape after removing tags, so "&lt;b&gt;" in prose stays text instead of becoming a tag.
    text = html.unescape(text)
    n = len(text)
    text = _ODD_CHAR.sub(lambda m: "" if _is_control(m.group()) else m.group(), text)
    counts.control_chars = n - len(text)
    # NFC after removing controls: a control between a letter and its accent would block composition.
    text = unicodedata.normalize("NFC", text)
    lines = []
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if line and len(line) <= _MAX_BOILERPLATE_CHARS and _BOILERPLATE.fullmatch(line):
            counts.boilerplate_lines += 1
            continue
        lines.append(line)
    text = _BLANKS.sub("\n\n", "\n".join(lines)).strip()
    if len(text.split()) < min_words:
        return None, counts
    return text, counts


def clean_text(text: str, *, min_words: int = MIN_WORDS) -> str | None:
    """The document normalised: NFC, no markup, entities, control characters, boilerplate lines or extra
    whitespace; None when fewer than ``min_words`` words remain."""
    return clean_with_counts(text, min_words=min_words)[0]


def normalize_for_hash(text: str) -> str:
    """Lower case, words separated by single spaces: the form two copies of a page share."""
    return " ".join(text.lower().split())


def _word_hashes(words: list[str], cache: dict[str, int]) -> np.ndarray:
    for w in set(words).difference(cache):
        cache[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
    return np.array([cache[w] for w in words], dtype=np.uint64)


def shingle_hashes(text: str, *, k: int = 5, cache: dict[str, int] | None = None) -> np.ndarray:
    """Sorted unique 32-bit hashes of the word ``k``-shingles of ``text`` (the whole text when shorter)."""
    words = normalize_for_hash(text).split()
    wh = _word_hashes(words or [""], {} if cache is None else cache)
    if len(wh) >= k:
        # A shingle's hash mixes its words' hashes with distinct odd multipliers (wrapping uint64 math).
        mult = np.arange(1, 2 * k, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        windows = np.lib.stride_tricks.sliding_window_view(wh, k)
        h = np.bitwise_xor.reduce(windows * mult, axis=1)
    else:
        h = np.bitwise_xor.reduce(wh * np.uint64(0x9E3779B97F4A7C15), keepdims=True)
    return np.unique(h >> np.uint64(32))


class MinHasher:
    """MinHash signatures with ``num_perm`` multiply-add-shift hash functions of 32-bit shingle hashes."""

    def __init__(self, num_perm: int = 64, *, seed: int = 0) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm={num_perm}: need at least 1")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """The ``num_perm`` minima of the hashed shingles (uint32 each)."""
        x = shingles.astype(np.uint64)
        return ((self._a[:, None] * x[None, :] + self._b[:, None]) >> np.uint64(32)).min(axis=1).astype(np.uint32)


def lsh_params(threshold: float, num_perm: int, *, recall: float = 0.99) -> tuple[int, int]:
    """Bands and rows for LSH: the most rows per band (fewest false candidates) that still make a pair
    at exactly ``threshold`` a candidate with probability >= ``recall``.

    Candidates are confirmed by their true Jaccard, so a false candidate costs one set
    intersection while a missed one is a duplicate left in the corpus.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


@dataclass
class DedupStats:
    """What ``dedup`` found: exact and near copies removed, candidate pairs LSH proposed."""

    input: int
    exact_duplicates: int
    near_duplicates: int
    kept: int
    candidate_pairs: int
    bands: int
    rows: int


def dedup(
    texts: Iterable[str], *, threshold: float = 0.8, num_perm: int = 64, seed: int = 0
) -> tuple[list[int], DedupStats]:
    """Indices of the texts to keep (first copy wins): exact copies by normalised hash, then near copies with Jaccard >= ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: need 0 < threshold <= 1")
    texts = list(texts)
    seen: set[bytes] = set()
    unique = []
    for i, t in enumerate(texts):
        digest = hashlib.blake2b(normalize_for_hash(t).encode(), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(i)
    hasher = MinHasher(num_perm, seed=seed)
    bands, rows = lsh_params(threshold, num_perm)
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    shingles: dict[int, np.ndarray] = {}
    cache: dict[str, int] = {}
    kept, candidates = [], 0
    for i in unique:
        sh = shingles[i] = shingle_hashes(texts[i], cache=cache)
        sig = hasher.signature(sh)
        keys = [sig[b * rows : (b + 1) * rows].tobytes() for b in range(bands)]
        others = {j for b, key in enumerate(keys) for j in buckets[b].get(key, ())}
        candidates += len(others)
        # Confirm with the true Jaccard: a 64-hash MinHash estimate has a standard error near 0.05.
        if any(_jaccard(sh, shingles[j]) >= threshold for j in others):
            continue
        kept.append(i)
        for b, key in enumerate(keys):
            buckets[b].setdefault(key, []).append(i)
    stats = DedupStats(
        input=len(texts),
        exact_duplicates=len(texts) - len(unique),
        near_duplicates=len(unique) - len(kept),
        kept=len(kept),
        candidate_pairs=candidates,
        bands=bands,
        rows=rows,
    )
    return kept, stats


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


@dataclass
class PipelineStats:
    """Counts of the cleaning pipeline, stage by stage (documents unless named bytes, lines or chars)."""

    input_docs: int
    input_bytes: int
    html_docs: int
    boilerplate_lines: int
    control_chars: int
    dropped_short: int
    exact_duplicates: int
    near_duplicates: int
    kept_docs: int
    output_bytes: int

    def to_dict(self) -> dict[str, int]:
        """The counts as a plain dict (JSON-ready)."""
        return asdict(self)


def run_pipeline(
    raw_docs: Iterable[str | Mapping],
    *,
    min_words: int = MIN_WORDS,
    threshold: float = 0.8,
    num_perm: int = 64,
    seed: int = 0,
) -> tuple[list[str], PipelineStats]:
    """Clean every document (strings, or records with a ``text`` field), drop short ones, deduplicate."""
    counts = CleanCounts()
    cleaned, n_in, bytes_in = [], 0, 0
    for n, doc in enumerate(raw_docs):
        text = doc if isinstance(doc, str) else doc.get("text") if isinstance(doc, Mapping) else None
        if not isinstance(text, str):
            raise ValueError(f"raw_docs[{n}]: need a string or a record with a string 'text' field")
        n_in += 1
        bytes_in += len(text.encode("utf-8"))
        out, c = clean_with_counts(text, min_words=min_words)
        counts.add(c)
        if out is not None:
            cleaned.append(out)
    keep, d = dedup(cleaned, threshold=threshold, num_perm=num_perm, seed=seed)
    docs = [cleaned[i] for i in keep]
    stats = PipelineStats(
        input_docs=n_in,
        input_bytes=bytes_in,
        html_docs=counts.html_docs,
        boilerplate_lines=counts.boilerplate_lines,
        control_chars=counts.control_chars,
        dropped_short=n_in - len(cleaned),
        exact_duplicates=d.exact_duplicates,
        near_duplicates=d.near_duplicates,
        kept_docs=len(docs),
        output_bytes=sum(len(t.encode("utf-8")) for t in docs),
    )
    return docs, stats
