"""Byte-level BPE, trained from scratch: the tokenizer of GPT-2 and Llama 3, small enough to read.

Ids 0..255 are the bytes and 256/257/258 are BOS/EOS/padding, exactly as in
``lab_core.llm.tokenizer.ByteTokenizer``; merges take ids 259 upwards. Text is first split into
pieces with a GPT-2-style pattern (words with their leading space, numbers, punctuation runs,
whitespace) so merges never cross a word boundary. Training counts each distinct piece once with
its frequency and keeps the pair counts up to date incrementally: a merge only revisits the
pieces that contain the merged pair. Any text round-trips exactly, since every byte has an id.
"""

from __future__ import annotations

import codecs
import heapq
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

BOS_ID, EOS_ID, PAD_ID = 256, 257, 258
FIRST_MERGE_ID = 259
# ids travel in uint16 shards, so a vocabulary cannot be larger.
MAX_VOCAB = 65536
# GPT-2's pre-tokenisation pattern written for ``re`` (no \p{L}): [^\W\d_] is "a letter",
# (?:[^\s\w]|_) "anything else that is not a space". Every character falls in some branch.
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
_PIECES = re.compile(PATTERN)
_CACHE_LIMIT = 200_000


def pretokenize(text: str) -> list[str]:
    """The pieces BPE works inside; they concatenate back to ``text``."""
    return _PIECES.findall(text)


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """A trained byte-level BPE: ``merges[k]`` is the pair of ids that becomes id ``259 + k``."""

    bos_id, eos_id, pad_id = BOS_ID, EOS_ID, PAD_ID

    def __init__(self, merges: Iterable[tuple[int, int]]) -> None:
        self.merges: list[tuple[int, int]] = []
        self._table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b"", b""]
        for k, pair in enumerate(merges):
            new_id = FIRST_MERGE_ID + k
            if len(pair) != 2 or not all(
                isinstance(x, int) and 0 <= x < new_id and x not in (BOS_ID, EOS_ID, PAD_ID) for x in pair
            ):
                raise ValueError(f"merges[{k}]={pair!r}: need two earlier non-special ids below {new_id}")
            a, b = int(pair[0]), int(pair[1])
            self.merges.append((a, b))
            self._table.append(self._table[a] + self._table[b])
        if len(self._table) > MAX_VOCAB:
            raise ValueError(f"merges: {len(self.merges)} merges give more than {MAX_VOCAB} ids")
        self._ranks = {pair: FIRST_MERGE_ID + k for k, pair in enumerate(self.merges)}
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes, 3 specials and the merges."""
        return len(self._table)

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        ids = list(piece.encode("utf-8"))
        while len(ids) > 1:
            # The earliest-learned merge present goes first, as in training.
            best = min(zip(ids, ids[1:]), key=lambda p: self._ranks.get(p, MAX_VOCAB))
            new_id = self._ranks.get(best)
            if new_id is None:
                break
            ids = _merge(ids, best, new_id)
        return tuple(ids)

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        """Token ids of ``text``, after BOS when asked."""
        out = [BOS_ID] if bos else []
        cache = self._cache
        for piece in _PIECES.findall(text):
            ids = cache.get(piece)
            if ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                ids = cache[piece] = self._encode_piece(piece)
            out.extend(ids)
        return out

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (b"" for BOS, EOS and padding)."""
        if not 0 <= token_id < len(self._table):
            raise ValueError(f"token id {token_id}: outside 0..{len(self._table) - 1}")
        return self._table[token_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (special ids dropped; broken UTF-8 becomes U+FFFD)."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", errors="replace")

    @staticmethod
    def stream_decoder() -> codecs.IncrementalDecoder:
        """A decoder for streaming: feed ``token_bytes`` of each token, get text once a character is whole."""
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    def to_json(self) -> str:
        """The tokenizer as JSON (``kind`` "bpe", the pattern and the merges in order)."""
        return json.dumps(
            {
                "kind": "bpe",
                "version": 1,
                "vocab_size": self.vocab_size,
                "pattern": PATTERN,
                "specials": {"bos": BOS_ID, "eos": EOS_ID, "pad": PAD_ID},
                "merges": [list(p) for p in self.merges],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """The tokenizer ``to_json`` wrote; ValueError naming the field that does not fit."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tokenizer JSON: not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("kind") != "bpe":
            raise ValueError("tokenizer JSON: field 'kind' must be 'bpe'")
        if data.get("pattern", PATTERN) != PATTERN:
            raise ValueError("tokenizer JSON: field 'pattern' differs from this version's pre-tokenisation pattern")
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(isinstance(m, list) for m in merges):
            raise ValueError("tokenizer JSON: field 'merges' must be a list of [id, id] pairs")
        tok = cls(tuple(m) for m in merges)
        if data.get("vocab_size", tok.vocab_size) != tok.vocab_size:
            raise ValueError(
                f"tokenizer JSON: field 'vocab_size'={data['vocab_size']} but the merges give {tok.vocab_size}"
            )
        return tok

    def save(self, path: str | Path) -> Path:
        """Write ``to_json()`` to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """The tokenizer saved at ``path``."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def train_bpe(
    texts: Iterable[str], vocab_size: int, *, progress: Callable[[int, int], None] | None = None
) -> BPETokenizer:
    """Learn ``vocab_size - 259`` merges from ``texts`` (fewer when no pair is left to merge).

    ``progress(done, total)`` is called after each merge.
    """
    if not FIRST_MERGE_ID <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"vocab_size={vocab_size}: need {FIRST_MERGE_ID} <= vocab_size <= {MAX_VOCAB}")
    piece_counts: Counter[str] = Counter()
    for text in texts:
        piece_counts.update(_PIECES.findall(text))
    words = [list(p.encode("utf-8")) for p in piece_counts]
    counts = list(piece_counts.values())
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for i, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            pair_counts[p] = pair_counts.get(p, 0) + c
            where.setdefault(p, set()).add(i)
    # Max-heap of (-count, pair) with lazy deletion: an entry is live only if its count is current.
    # Ties go to the smallest pair, which makes training deterministic.
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    total = vocab_size - FIRST_MERGE_ID
    while len(merges) < total and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg or neg == 0:
            continue
        new_id = FIRST_MERGE_ID + len(merges)
        merges.append(pair)
        changed = set()
        for i in where.pop(pair):
            w, c = words[i], counts[i]
            new = _merge(w, pair, new_id)
            if len(new) == len(w):
                continue  # a stale entry: an earlier merge already consumed the pair in this piece
            for p in zip(w, w[1:]):
                pair_counts[p] -= c
                changed.add(p)
            for p in zip(new, new[1:]):
                pair_counts[p] = pair_counts.get(p, 0) + c
                where.setdefault(p, set()).add(i)
                changed.add(p)
            words[i] = new
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
        if progress is not None:
            progress(len(merges), total)
    return BPETokenizer(merges)
