"""The SQLite chunk store: insertion order, atomic batches, per-document delete and listing."""

from __future__ import annotations

import pytest

from lab_core.rag.chunkstore import ChunkStore
from lab_core.rag.documents import Chunk


def chunk(doc: str, i: int, **kw) -> Chunk:
    defaults = dict(
        text=f"text {doc} {i}",
        start=10 * i,
        end=10 * i + 9,
        page=i,
        section=f"S{i}",
        source=f"{doc}.md",
        title=doc.upper(),
    )
    return Chunk(f"{doc}#{i}", doc, **{**defaults, **kw})


def test_add_get_and_order():
    store = ChunkStore()
    chunks = [chunk("b", 0), chunk("a", 0), chunk("b", 1, section="", page=0, source="", title="")]
    store.add(chunks)
    assert len(store) == 3 and store.all() == chunks
    assert store.get(["b#1", "a#0"]) == [chunks[2], chunks[1]]
    assert store.get([]) == []
    assert store.get(["a#0", "a#0"]) == [chunks[1], chunks[1]]
    with pytest.raises(KeyError, match="'zz#9'"):
        store.get(["a#0", "zz#9"])
    many = [chunk("m", i) for i in range(1200)]  # more ids than one IN (...) batch
    store.add(many)
    assert store.get([c.chunk_id for c in reversed(many)]) == many[::-1]
    assert store.doc_chunk_ids("b") == ["b#0", "b#1"] and store.doc_chunk_ids("nope") == []


def test_duplicate_ids_reject_the_whole_batch():
    store = ChunkStore()
    store.add([chunk("a", 0)])
    with pytest.raises(ValueError, match="already stored"):
        store.add([chunk("c", 0), chunk("a", 0), chunk("c", 1)])
    with pytest.raises(ValueError, match="already stored"):
        store.add([chunk("d", 0), chunk("d", 0)])
    assert len(store) == 1 and [c.chunk_id for c in store.all()] == ["a#0"]
    store.add([chunk("c", 0)])  # the store still works after a rollback
    assert len(store) == 2


def test_delete_doc_and_documents():
    store = ChunkStore()
    store.add([chunk("b", 0), chunk("a", 0), chunk("b", 1), chunk("a", 1)])
    assert [dict(r) for r in store.documents()] == [
        {"doc_id": "b", "source": "b.md", "title": "B", "chunks": 2},
        {"doc_id": "a", "source": "a.md", "title": "A", "chunks": 2},
    ]
    assert store.delete_doc("b") == ["b#0", "b#1"]
    assert store.delete_doc("b") == [] and store.delete_doc("never") == []
    assert [c.chunk_id for c in store.all()] == ["a#0", "a#1"]
    assert [r["doc_id"] for r in store.documents()] == ["a"]
    with pytest.raises(KeyError):
        store.get(["b#0"])
    store.add([chunk("b", 0)])  # a deleted id can be stored again
    assert [c.chunk_id for c in store.all()] == ["a#0", "a#1", "b#0"]


def test_file_store_persists(tmp_path):
    path = tmp_path / "sub" / "chunks.sqlite"
    ChunkStore(path).add([chunk("a", 0), chunk("a", 1)])
    again = ChunkStore(path)
    assert [c.chunk_id for c in again.all()] == ["a#0", "a#1"] and again.get(["a#1"]) == [chunk("a", 1)]
