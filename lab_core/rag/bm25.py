"""Okapi BM25 over a sparse term-document matrix, the lexical half of hybrid retrieval.

Scores follow Lucene (and so Elasticsearch, whose BM25 the BEIR figures come from):

    score(q, d) = sum over query terms t of  idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = log(1 + (N - df + 0.5) / (df + 0.5))

The textbook numerator ``tf * (k1 + 1)`` lost its constant ``(k1 + 1)`` in Lucene 8: it scales
every score alike, so rankings are unchanged, and dropping it lets us match Lucene digit for digit.
A query term that appears twice counts twice, as in Lucene's bag-of-terms query.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from os import PathLike

import numpy as np
from scipy import sparse

from lab_core.rag.text import terms

FORMAT_VERSION = 1


class BM25Index:
    """An incremental BM25 index: add and delete documents, then search; the matrix is rebuilt lazily."""

    def __init__(self, k1: float = 0.9, b: float = 0.4) -> None:
        if not k1 >= 0:
            raise ValueError(f"k1 must be >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        self.k1, self.b = float(k1), float(b)
        self._vocab: dict[str, int] = {}
        # Per document: (term ids, counts). Dict order is insertion order, which breaks score ties.
        self._docs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._weights: sparse.csc_matrix | None = None  # docs x terms, None when stale
        self._row_ids: list[str] = []

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ids``; an id already indexed, or repeated, is a ValueError."""
        if len(ids) != len(texts):
            raise ValueError(f"add() got {len(ids)} ids but {len(texts)} texts")
        seen: set[str] = set()
        for doc_id in ids:
            if doc_id in self._docs or doc_id in seen:
                raise ValueError(f"document id {doc_id!r} is already in the index")
            seen.add(doc_id)
        for doc_id, text in zip(ids, texts):
            counts = Counter(terms(text))
            term_ids = np.fromiter((self._vocab.setdefault(t, len(self._vocab)) for t in counts), np.int64, len(counts))
            self._docs[doc_id] = (term_ids, np.fromiter(counts.values(), np.float64, len(counts)))
        self._weights = None

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents; an id not in the index is a KeyError and nothing is removed."""
        ids = list(dict.fromkeys(ids))  # a repeated id is deleted once, not reported missing
        for doc_id in ids:
            if doc_id not in self._docs:
                raise KeyError(f"document id {doc_id!r} is not in the index")
        for doc_id in ids:
            del self._docs[doc_id]
        self._weights = None

    def scores(self, query: str) -> dict[str, float]:
        """Every document with a positive score for ``query``, in index order (for fusion)."""
        row_scores = self._score_rows(query)
        return {self._row_ids[i]: float(row_scores[i]) for i in np.flatnonzero(row_scores > 0)}

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) pairs, best first, ties in insertion order; only scores > 0."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        row_scores = self._score_rows(query)
        hits = np.flatnonzero(row_scores > 0)
        if len(hits) > k:
            # Keep every row tied with the k-th best so the stable sort below can break ties by row.
            kth = np.partition(row_scores[hits], len(hits) - k)[len(hits) - k]
            hits = hits[row_scores[hits] >= kth]
        order = hits[np.lexsort((hits, -row_scores[hits]))][:k]
        return [(self._row_ids[i], float(row_scores[i])) for i in order]

    def save(self, path: str | PathLike[str]) -> None:
        """Write the index to an ``.npz`` file (no pickles) that ``load`` reads back."""
        docs = list(self._docs.values())
        # A file object, so numpy does not append ".npz" to a path that lacks it.
        with open(path, "wb") as out:
            np.savez_compressed(
                out,
                format_version=np.array(FORMAT_VERSION),
                params=np.array([self.k1, self.b]),
                vocab=np.array(list(self._vocab), dtype=str),
                ids=np.array(list(self._docs), dtype=str),
                lengths=np.array([len(t) for t, _ in docs], dtype=np.int64),
                term_ids=np.concatenate([t for t, _ in docs] or [np.zeros(0, np.int64)]),
                counts=np.concatenate([c for _, c in docs] or [np.zeros(0)]),
            )

    @classmethod
    def load(cls, path: str | PathLike[str]) -> BM25Index:
        """Read an index written by ``save``; another format version is a ValueError."""
        with np.load(path, allow_pickle=False) as f:
            version = int(f["format_version"]) if "format_version" in f else None
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: BM25 index format version {version}, expected {FORMAT_VERSION}")
            k1, b = f["params"]
            index = cls(k1=float(k1), b=float(b))
            index._vocab = {str(t): i for i, t in enumerate(f["vocab"])}
            bounds = np.cumsum(f["lengths"])[:-1]
            parts = zip(f["ids"], np.split(f["term_ids"], bounds), np.split(f["counts"], bounds))
            index._docs = {str(doc_id): (t, c) for doc_id, t, c in parts}
        return index

    def _score_rows(self, query: str) -> np.ndarray:
        """The score of every indexed document (rows in insertion order) for ``query``."""
        weights = self._matrix()
        query_counts = Counter(self._vocab[t] for t in terms(query) if t in self._vocab)
        if not query_counts:
            return np.zeros(weights.shape[0])
        columns = np.fromiter(query_counts, np.int64, len(query_counts))
        repeats = np.fromiter(query_counts.values(), np.float64, len(query_counts))
        return weights[:, columns] @ repeats

    def _matrix(self) -> sparse.csc_matrix:
        """The docs x terms matrix of per-term BM25 contributions, rebuilt after add or delete."""
        if self._weights is None:
            docs = list(self._docs.values())
            n_docs = len(docs)
            cols = np.concatenate([t for t, _ in docs] or [np.zeros(0, np.int64)])
            tf = np.concatenate([c for _, c in docs] or [np.zeros(0)])
            rows = np.repeat(np.arange(n_docs), [len(t) for t, _ in docs])
            doc_len = np.array([c.sum() for _, c in docs])
            avgdl = doc_len.mean() if n_docs and doc_len.sum() else 1.0
            # df counts live documents only, so deleted documents stop shaping idf.
            df = np.bincount(cols, minlength=len(self._vocab))
            idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
            norm = self.k1 * (1 - self.b + self.b * doc_len / avgdl)
            values = idf[cols] * tf / (tf + norm[rows])
            self._weights = sparse.csc_matrix((values, (rows, cols)), shape=(n_docs, len(self._vocab)))
            self._row_ids = list(self._docs)
        return self._weights
