"""Token shards in an object store: fixed-size uint16 files plus an index with their checksums.

Pre-training data is stored already tokenized, as flat arrays of token ids split into shards that
each rank can fetch on its own. Documents are concatenated with EOS after each one; a shard holds
``shard_tokens`` ids (the last one may be shorter). ``{prefix}/index.json`` lists every shard with
its token count and sha256 and is written last, so a reader never sees an index naming shards
that are not there yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from lab_core.store.object_store import MissingObjectError, ObjectStore

FORMAT = 1
DTYPE = np.dtype("<u2")


class ShardIndexError(ValueError):
    """The shard index is missing or unreadable."""


class MissingShardError(MissingObjectError):
    """A shard named in the index is not in the store."""

    def __str__(self) -> str:
        return f"shard {self.key!r} is listed in the index but missing from store {self.url!r}"


class CorruptShardError(ValueError):
    """A shard's bytes do not match the size or checksum recorded in the index."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its file name under the prefix, its token count and the sha256 of its bytes."""

    name: str
    tokens: int
    sha256: str


@dataclass(frozen=True)
class ShardIndex:
    """The contents of ``{prefix}/index.json``."""

    prefix: str
    shard_tokens: int
    total_tokens: int
    shards: list[ShardInfo]
    meta: dict = field(default_factory=dict)

    def key(self, i: int) -> str:
        """Store key of shard ``i``."""
        return f"{self.prefix}/{self.shards[i].name}"

    def __len__(self) -> int:
        return len(self.shards)

    def to_json(self) -> str:
        """The index as written to the store."""
        return json.dumps(
            {
                "format": FORMAT,
                "dtype": "uint16",
                "shard_tokens": self.shard_tokens,
                "total_tokens": self.total_tokens,
                "shards": [{"name": s.name, "tokens": s.tokens, "sha256": s.sha256} for s in self.shards],
                "meta": self.meta,
            },
            indent=1,
        )

    @classmethod
    def load(cls, store: ObjectStore, prefix: str) -> ShardIndex:
        """Read ``{prefix}/index.json``; ``ShardIndexError`` naming the key and store when missing or malformed."""
        key = f"{prefix}/index.json"
        try:
            data = json.loads(store.get(key))
        except MissingObjectError:
            raise ShardIndexError(f"no shard index {key!r} in store {store.url!r}: write the shards first") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ShardIndexError(f"shard index {key!r} in store {store.url!r} is not JSON ({exc})") from None
        try:
            if data["format"] != FORMAT or data["dtype"] != "uint16":
                raise ShardIndexError(
                    f"shard index {key!r}: format {data['format']!r}/{data['dtype']!r}, expected {FORMAT}/uint16"
                )
            shards = [ShardInfo(str(s["name"]), int(s["tokens"]), str(s["sha256"])) for s in data["shards"]]
            index = cls(
                prefix=prefix,
                shard_tokens=int(data["shard_tokens"]),
                total_tokens=int(data["total_tokens"]),
                shards=shards,
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ShardIndexError):
                raise
            raise ShardIndexError(f"shard index {key!r} in store {store.url!r} is malformed ({exc!r})") from None
        if sum(s.tokens for s in shards) != index.total_tokens:
            raise ShardIndexError(
                f"shard index {key!r}: total_tokens={index.total_tokens} but the shards "
                f"hold {sum(s.tokens for s in shards)}"
            )
        return index


def write_shards(
    store: ObjectStore,
    prefix: str,
    token_docs: Iterable[list[int]],
    *,
    shard_tokens: int = 65536,
    eos_id: int = 257,
    meta: dict | None = None,
) -> ShardIndex:
    """Write the documents, each followed by ``eos_id``, as uint16 shards of ``shard_tokens`` ids, then the index.

    Shards left under ``prefix`` by an earlier, larger write are deleted after the new index is in place.
    """
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens={shard_tokens}: need at least 1")
    if not prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r}: need a relative folder name without a trailing '/'")
    if not 0 <= eos_id <= 0xFFFF:
        raise ValueError(f"eos_id={eos_id}: must fit in uint16")
    shards: list[ShardInfo] = []
    buf = np.empty(shard_tokens, dtype=DTYPE)
    fill = 0

    def flush(n: int) -> None:
        data = buf[:n].tobytes()
        info = ShardInfo(f"shard_{len(shards):05d}.bin", n, hashlib.sha256(data).hexdigest())
        store.put(f"{prefix}/{info.name}", data)
        shards.append(info)

    for d, doc in enumerate(token_docs):
        arr = np.asarray(doc, dtype=np.int64)
        if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() > 0xFFFF)):
            raise ValueError(f"token_docs[{d}]: ids must be a flat list of integers in 0..65535 (uint16 shards)")
        arr = np.append(arr, eos_id)
        pos = 0
        while pos < arr.size:
            take = min(shard_tokens - fill, arr.size - pos)
            buf[fill : fill + take] = arr[pos : pos + take]
            fill += take
            pos += take
            if fill == shard_tokens:
                flush(fill)
                fill = 0
    if fill:
        flush(fill)
    index = ShardIndex(
        prefix=prefix,
        shard_tokens=shard_tokens,
        total_tokens=sum(s.tokens for s in shards),
        shards=shards,
        meta=dict(meta or {}),
    )
    store.put(f"{prefix}/index.json", index.to_json().encode())
    current = {index.key(i) for i in range(len(index))}
    for key in store.list(f"{prefix}/shard_"):
        if key not in current:
            store.delete(key)
    return index


def read_shard(store: ObjectStore, index: ShardIndex, i: int, *, verify: bool = True) -> np.ndarray:
    """Token ids of shard ``i`` (read-only uint16); ``MissingShardError`` / ``CorruptShardError`` name the shard."""
    if not 0 <= i < len(index):
        raise ValueError(f"shard number {i}: the index {index.prefix!r} has {len(index)} shards")
    key, info = index.key(i), index.shards[i]
    try:
        data = store.get(key)
    except MissingObjectError:
        raise MissingShardError(key, store.url) from None
    if len(data) != info.tokens * DTYPE.itemsize:
        raise CorruptShardError(
            f"shard {key!r} in store {store.url!r} has {len(data)} bytes, "
            f"the index says {info.tokens} tokens ({info.tokens * DTYPE.itemsize} bytes)"
        )
    if verify and hashlib.sha256(data).hexdigest() != info.sha256:
        raise CorruptShardError(f"shard {key!r} in store {store.url!r} fails its sha256 check: the bytes changed")
    return np.frombuffer(data, dtype=DTYPE)
