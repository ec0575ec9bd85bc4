"""The dense half of the hybrid index: faiss (flat, IVF or HNSW) over unit vectors, with string ids,
incremental add and delete, and save/load that refuses an index built in another vector space.

faiss keeps int64 ids; this class maps them to chunk ids. HNSW cannot remove vectors, so deletes
are tombstones filtered at search time until ``compact()`` rebuilds the graph.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

Kind = Literal["flat", "ivf", "hnsw"]
FORMAT = 1


class IndexMismatch(ValueError):
    """An index file was built with another embedding model or dimension than the one asked for."""


@dataclass(frozen=True)
class IndexConfig:
    """faiss index choice: ``nlist``/``nprobe`` for IVF, ``m``/``ef_search`` for HNSW."""

    kind: Kind = "flat"
    nlist: int = 64
    nprobe: int = 16
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"kind must be 'flat', 'ivf' or 'hnsw', got {self.kind!r}")
        for name in ("nlist", "nprobe", "m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


class VectorIndex:
    """Unit vectors of one embedding space (``model``, ``dim``), searched by inner product."""

    def __init__(self, model: str, dim: int, config: IndexConfig = IndexConfig()) -> None:
        self.model, self.dim, self.config = model, dim, config
        self._ids: list[str | None] = []  # faiss id -> chunk id (None once deleted)
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._index = self._empty()

    def _empty(self) -> faiss.Index:
        c = self.config
        if c.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, c.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = c.ef_construction
            index.hnsw.efSearch = c.ef_search
            return faiss.IndexIDMap2(index)
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors under new ids; a known id or a wrong shape is a ValueError naming it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of dimension {self.dim}, got shape {vectors.shape}")
        seen = set()
        for i in ids:
            if i in self._rows or i in seen:
                raise ValueError(f"id {i!r} is already in the index")
            seen.add(i)
        start = len(self._ids)
        self._ids.extend(ids)
        self._rows.update({i: start + n for n, i in enumerate(ids)})
        self._vectors = np.vstack([self._vectors, vectors])
        if self.config.kind == "ivf":
            self._rebuild_ivf()
        else:
            self._index.add_with_ids(vectors, np.arange(start, start + len(ids), dtype=np.int64))

    def _rebuild_ivf(self) -> None:
        # IVF's centroids come from the data: retrain when it grows, with nlist capped so each list
        # keeps enough points to train on (faiss warns below 39 per centroid).
        live = np.array([r for r in self._rows.values()], dtype=np.int64)
        nlist = max(1, min(self.config.nlist, len(live) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if len(live):
            ivf.train(self._vectors[live])
            ivf.add_with_ids(self._vectors[live], live)
        ivf.nprobe = min(self.config.nprobe, nlist)
        self._quantizer, self._index = quantizer, ivf

    def delete(self, ids: Sequence[str]) -> None:
        """Remove ``ids`` (each once, however often named); an unknown id is a KeyError naming it
        and nothing is removed."""
        ids = list(dict.fromkeys(ids))
        missing = [i for i in ids if i not in self._rows]
        if missing:
            raise KeyError(f"not in the index: {', '.join(map(repr, missing[:5]))}")
        rows = np.array([self._rows.pop(i) for i in ids], dtype=np.int64)
        for r in rows:
            self._ids[r] = None
        if self.config.kind != "hnsw" and len(rows):
            self._index.remove_ids(rows)

    def compact(self) -> None:
        """Rebuild without deleted vectors (what HNSW needs after many deletes)."""
        live = [(i, self._vectors[r]) for i, r in sorted(self._rows.items(), key=lambda kv: kv[1])]
        ids = [i for i, _ in live]
        vectors = np.array([v for _, v in live], dtype=np.float32).reshape(len(live), self.dim)
        self._ids, self._rows, self._vectors, self._index = [], {}, np.zeros((0, self.dim), np.float32), self._empty()
        if ids:
            self.add(ids, vectors)

    def search(self, vectors: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """For each query row, up to ``k`` (id, cosine) pairs, best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {vectors.shape[1]}; this index holds {self.dim}")
        if not self._rows:
            return [[] for _ in vectors]
        tombstones = len(self._ids) - len(self._rows) if self.config.kind == "hnsw" else 0
        scores, rows = self._index.search(vectors, min(k + tombstones, len(self._ids)))
        out = []
        for srow, rrow in zip(scores, rows):
            hits = [(self._ids[r], float(s)) for s, r in zip(srow, rrow) if r >= 0 and self._ids[r] is not None]
            out.append(hits[:k])
        return out

    def vector(self, chunk_id: str) -> np.ndarray:
        """The stored vector of ``chunk_id``."""
        return self._vectors[self._rows[chunk_id]]

    def save(self, folder: str | Path) -> None:
        """Write ``vectors.npy`` and ``index.json`` (model, dimension, config, ids) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self._vectors)
        meta = {"format": FORMAT, "model": self.model, "dim": self.dim, "config": asdict(self.config), "ids": self._ids}
        (folder / "index.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path, model: str, dim: int) -> VectorIndex:
        """Read an index saved by ``save``; ``IndexMismatch`` when it was built for another model or dimension."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "index.json").read_text())
            vectors = np.load(folder / "vectors.npy")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no saved vector index in {folder}: {exc.filename} is missing") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / 'index.json'}: format {meta.get('format')!r} is not {FORMAT}")
        if meta["model"] != model or meta["dim"] != dim:
            raise IndexMismatch(
                f"the index in {folder} was built with {meta['model']} ({meta['dim']} dimensions); "
                f"this pipeline embeds with {model} ({dim} dimensions): rebuild the index"
            )
        index = cls(model, dim, IndexConfig(**meta["config"]))
        live = [(i, r) for r, i in enumerate(meta["ids"]) if i is not None]
        if live:
            index.add([i for i, _ in live], vectors[[r for _, r in live]])
        return index
