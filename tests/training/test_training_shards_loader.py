"""Token shards (layout, checksums, clear failures) and the resumable, world-size-independent loader."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import torch

from lab_core.store.object_store import MissingObjectError, ObjectStore
from lab_core.training.loader import ShardedLoader
from lab_core.training.shards import (
    CorruptShardError,
    MissingShardError,
    ShardIndex,
    ShardIndexError,
    read_shard,
    write_shards,
)

EOS = 257
SEQ = 16


def token_docs(n_docs: int = 60, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 60000, size=int(rng.integers(20, 200))).tolist() for _ in range(n_docs)]


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore(f"memory://shards-{uuid.uuid4().hex}")


@pytest.fixture
def corpus(store):
    docs = token_docs()
    index = write_shards(store, "train", docs, shard_tokens=1000, eos_id=EOS, meta={"vocab_size": 60000})
    return store, docs, index


def all_tokens(store: ObjectStore, index: ShardIndex) -> np.ndarray:
    return np.concatenate([read_shard(store, index, i) for i in range(len(index))])


def test_shards_hold_the_documents_with_eos_and_an_index(corpus):
    store, docs, index = corpus
    expected = np.concatenate([np.append(d, EOS) for d in docs])
    assert np.array_equal(all_tokens(store, index), expected)
    assert index.total_tokens == expected.size and index.shard_tokens == 1000
    assert [s.tokens for s in index.shards] == [1000] * (expected.size // 1000) + [expected.size % 1000]
    on_disk = json.loads(store.get("train/index.json"))
    assert on_disk["format"] == 1 and on_disk["dtype"] == "uint16" and on_disk["meta"] == {"vocab_size": 60000}
    assert ShardIndex.load(store, "train") == index
    assert len(store.get(index.key(0))) == 2000  # two bytes per token


def test_rewrite_removes_stale_shards_and_bad_ids_are_rejected(corpus):
    store, docs, index = corpus
    small = write_shards(store, "train", docs[:3], shard_tokens=1000, meta={})
    assert len(small) == 1 and store.list("train/") == ["train/index.json", "train/shard_00000.bin"]
    with pytest.raises(ValueError, match=r"token_docs\[1\]"):
        write_shards(store, "other", [[1, 2], [70000]], meta={})
    with pytest.raises(ValueError, match="shard_tokens"):
        write_shards(store, "other", [[1]], shard_tokens=0)


def test_missing_and_corrupt_shards_are_named(corpus):
    store, _, index = corpus
    store.delete(index.key(2))
    with pytest.raises(MissingShardError) as err:
        read_shard(store, index, 2)
    assert isinstance(err.value, MissingObjectError)
    assert "train/shard_00002.bin" in str(err.value) and store.url in str(err.value)
    data = bytearray(store.get(index.key(1)))
    data[10] ^= 0xFF
    store.put(index.key(1), bytes(data))
    with pytest.raises(CorruptShardError, match="shard_00001.bin.*sha256"):
        read_shard(store, index, 1)
    # Without verification the flipped byte goes through unnoticed: the checksum is what catches it.
    assert np.array_equal(read_shard(store, index, 1, verify=False), np.frombuffer(bytes(data), "<u2"))
    store.put(index.key(0), store.get(index.key(0))[:-2])  # truncated
    with pytest.raises(CorruptShardError, match="shard_00000.bin.*1998 bytes"):
        read_shard(store, index, 0, verify=False)
    # The loader surfaces the same errors when a batch needs the shard.
    loader = ShardedLoader(store, "train", seq_len=SEQ, batch_size=64)
    with pytest.raises((MissingShardError, CorruptShardError)):
        for _ in range(loader.batches_per_epoch):
            loader.next_batch()


def test_missing_or_broken_index(store):
    with pytest.raises(ShardIndexError, match="nothere/index.json"):
        ShardIndex.load(store, "nothere")
    store.put("bad/index.json", b"{not json")
    with pytest.raises(ShardIndexError, match="bad/index.json.*not JSON"):
        ShardIndex.load(store, "bad")
    store.put("bad/index.json", json.dumps({"format": 1, "dtype": "uint16"}).encode())
    with pytest.raises(ShardIndexError, match="malformed"):
        ShardIndex.load(store, "bad")
    with pytest.raises(ShardIndexError, match="nothere"):
        ShardedLoader(store, "nothere", seq_len=4, batch_size=1)


def test_batches_are_shifted_windows_inside_one_shard(corpus):
    store, _, index = corpus
    shards = [read_shard(store, index, i) for i in range(len(index))]
    where: dict[bytes, list] = {}
    for s, tokens in enumerate(shards):
        for off in range(0, tokens.size - SEQ, SEQ):
            where.setdefault(tokens[off : off + SEQ + 1].astype(np.int64).tobytes(), []).append((s, off))
    loader = ShardedLoader(store, "train", seq_len=SEQ, batch_size=8)
    assert loader.num_samples == sum((s.tokens - 1) // SEQ for s in index.shards)
    seen = []
    for _ in range(loader.batches_per_epoch):
        x, y = loader.next_batch()
        assert x.shape == y.shape == (8, SEQ) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            hits = where[np.append(row_x, row_y[-1]).tobytes()]
            assert len(hits) == 1
            seen.append(hits[0])
    # One epoch visits distinct samples: all of them but the dropped partial batch.
    assert len(set(seen)) == len(seen) == loader.samples_per_epoch > loader.num_samples - 8
    assert loader.epoch == 0
    loader.next_batch()
    assert loader.epoch == 1 and loader.position == 8


def run(loader: ShardedLoader, n: int) -> list[torch.Tensor]:
    return [torch.cat(loader.next_batch(), dim=1) for _ in range(n)]


def global_run(store, world_size: int, batch_size: int, n: int, state: dict | None = None, seed: int = 0):
    """``n`` global batches from ``world_size`` ranks, rows stacked in rank order, and the final state."""
    loaders = [
        ShardedLoader(store, "train", seq_len=SEQ, batch_size=batch_size, rank=r, world_size=world_size, seed=seed)
        for r in range(world_size)
    ]
    for loader in loaders:
        if state is not None:
            loader.load_state_dict(state)
    per_rank = [run(loader, n) for loader in loaders]
    states = {json.dumps(loader.state_dict()) for loader in loaders}
    assert len(states) == 1  # every rank agrees on the position
    return [torch.cat([per_rank[r][b] for r in range(world_size)]) for b in range(n)], loaders[0].state_dict()


def test_exact_resume_across_an_epoch_boundary(corpus):
    store, _, _ = corpus
    per_epoch = ShardedLoader(store, "train", seq_len=SEQ, batch_size=8).batches_per_epoch
    total = per_epoch + 5
    uninterrupted = run(ShardedLoader(store, "train", seq_len=SEQ, batch_size=8), total)
    for cut in (3, per_epoch - 1, per_epoch, per_epoch + 2):
        first = ShardedLoader(store, "train", seq_len=SEQ, batch_size=8)
        head = run(first, cut)
        state = first.state_dict()
        assert set(state) == {"epoch", "position", "seed"}
        resumed = ShardedLoader(store, "train", seq_len=SEQ, batch_size=8)
        resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON checkpoint
        tail = run(resumed, total - cut)
        assert all(torch.equal(a, b) for a, b in zip(head + tail, uninterrupted))
    # Epochs are reshuffled: the second epoch starts with different samples.
    assert not torch.equal(uninterrupted[0], uninterrupted[per_epoch])


def test_global_order_and_resume_do_not_depend_on_world_size(corpus):
    store, _, _ = corpus
    per_epoch = ShardedLoader(store, "train", seq_len=SEQ, batch_size=8).batches_per_epoch
    n = per_epoch + 3
    single, _ = global_run(store, 1, 8, n)
    two, _ = global_run(store, 2, 4, n)
    four, _ = global_run(store, 4, 2, n)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(single, two, four))
    # Train on 2 ranks, checkpoint, resume on 4 (then on 1): the same global sequence continues.
    cut = per_epoch - 2
    head, state = global_run(store, 2, 4, cut)
    middle, state = global_run(store, 4, 2, 3, state=state)
    tail, _ = global_run(store, 1, 8, n - cut - 3, state=state)
    assert all(torch.equal(a, b) for a, b in zip(head + middle + tail, single))
    assert state["epoch"] == 1
    # Another seed gives another order.
    other, _ = global_run(store, 1, 8, 2, seed=1)
    assert not torch.equal(other[0], single[0])


def test_loader_on_a_local_folder_and_bad_arguments(tmp_path):
    store = ObjectStore(tmp_path / "data")
    write_shards(store, "train", token_docs(10), shard_tokens=300, meta={})
    loader = ShardedLoader(str(tmp_path / "data"), "train", seq_len=8, batch_size=2, rank=1, world_size=2)
    x, _ = loader.next_batch()
    assert x.shape == (2, 8)
    with pytest.raises(ValueError, match="seq_len=400.*300 tokens"):
        ShardedLoader(store, "train", seq_len=400, batch_size=1)
    with pytest.raises(ValueError, match="batch_size=0"):
        ShardedLoader(store, "train", seq_len=8, batch_size=0)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        ShardedLoader(store, "train", seq_len=8, batch_size=1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size=1000"):
        ShardedLoader(store, "train", seq_len=8, batch_size=1000)
    with pytest.raises(ValueError, match="loader state"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="position=-1"):
        loader.load_state_dict({"epoch": 0, "position": -1, "seed": 0})


class CountingStore(ObjectStore):
    """An object store that remembers which keys were fetched."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.fetched: list[str] = []

    def get(self, key: str) -> bytes:
        self.fetched.append(key)
        return super().get(key)


def test_a_rank_fetches_only_the_shards_its_rows_touch(corpus):
    store, _, index = corpus
    assert len(index) > 4  # so fetching every shard would show
    shard_of: dict[bytes, int] = {}
    for s in range(len(index)):
        tokens = read_shard(store, index, s).astype(np.int64)
        for off in range(0, tokens.size - SEQ, SEQ):
            shard_of[tokens[off : off + SEQ + 1].tobytes()] = s
    counting = CountingStore(store.url)
    loader = ShardedLoader(counting, "train", seq_len=SEQ, batch_size=1, rank=1, world_size=4, cache_shards=1)
    previous = None
    for _ in range(8):
        counting.fetched.clear()
        x, y = loader.next_batch()
        shard = shard_of[np.append(x[0].numpy(), y[0, -1].item()).tobytes()]
        assert counting.fetched == ([] if shard == previous else [index.key(shard)])
        previous = shard
