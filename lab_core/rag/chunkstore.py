"""Chunk metadata in SQLite: the text, document, page, section and span every citation needs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab_core.rag.documents import Chunk
from lab_core.store import sqlite

_COLUMNS = ("chunk_id", "doc_id", "text", "start", "end", "page", "section", "source", "title")
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)  # "end" is an SQL keyword


class ChunkStore:
    """Chunks by id, in insertion order; one writer at a time (a lock), readers from any thread."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._db = sqlite(path)
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS chunk (seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT UNIQUE NOT NULL,"
            ' doc_id TEXT NOT NULL, text TEXT NOT NULL, start INTEGER, "end" INTEGER, page INTEGER,'
            " section TEXT, source TEXT, title TEXT)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS chunk_doc ON chunk (doc_id)")

    def add(self, chunks: Iterable[Chunk]) -> None:
        """Store chunks; a chunk id already stored is a ValueError naming it and nothing is added."""
        rows = [tuple(getattr(c, k) for k in _COLUMNS) for c in chunks]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    f"INSERT INTO chunk ({_QUOTED}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    rows,
                )
                self._db.execute("COMMIT")
            except Exception as exc:
                self._db.execute("ROLLBACK")
                if "UNIQUE" in str(exc):
                    raise ValueError(f"a chunk id is already stored: {exc}") from None
                raise

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with ``ids``, in that order; an unknown id is a KeyError naming it."""
        found: dict[str, Chunk] = {}
        for s in range(0, len(ids), 500):
            part = list(ids[s : s + 500])
            for row in self._db.execute(f"SELECT * FROM chunk WHERE chunk_id IN ({','.join('?' * len(part))})", part):
                found[row["chunk_id"]] = Chunk(**{k: row[k] for k in _COLUMNS})
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"unknown chunk id(s): {', '.join(map(repr, missing[:5]))}")
        return [found[i] for i in ids]

    def doc_chunk_ids(self, doc_id: str) -> list[str]:
        """Ids of the chunks of ``doc_id`` (empty when the document is unknown)."""
        return [
            r["chunk_id"]
            for r in self._db.execute("SELECT chunk_id FROM chunk WHERE doc_id = ? ORDER BY seq", (doc_id,))
        ]

    def delete_doc(self, doc_id: str) -> list[str]:
        """Remove the chunks of ``doc_id``; returns their ids."""
        with self._lock:
            ids = self.doc_chunk_ids(doc_id)
            self._db.execute("DELETE FROM chunk WHERE doc_id = ?", (doc_id,))
        return ids

    def documents(self) -> list[dict]:
        """One row per document: doc_id, source, title, chunks."""
        return list(
            self._db.execute(
                "SELECT doc_id, MIN(source) AS source, MIN(title) AS title, COUNT(*) AS chunks"
                " FROM chunk GROUP BY doc_id ORDER BY MIN(seq)"
            )
        )

    def all(self) -> list[Chunk]:
        """Every chunk in insertion order."""
        return [Chunk(**{k: r[k] for k in _COLUMNS}) for r in self._db.execute("SELECT * FROM chunk ORDER BY seq")]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) AS n FROM chunk").fetchone()["n"]
