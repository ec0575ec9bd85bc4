"""SQLite connections set up the same way everywhere (WAL, rows as dicts, usable across threads)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict:
    return {col[0]: value for col, value in zip(cursor.description, row)}


def sqlite(path: str | Path = ":memory:") -> sqlite3.Connection:
    """Open ``path`` (created with its parent folder if missing) with rows returned as dicts.

    Connections may be shared between threads; callers serialise writes with their own lock,
    since sqlite3 objects are not safe for concurrent use from several threads at once.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.row_factory = _dict_row
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn
