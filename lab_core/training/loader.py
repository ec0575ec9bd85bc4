"""A resumable, rank-aware loader of training batches from token shards.

A sample is ``seq_len + 1`` consecutive tokens at a fixed offset inside one shard (offsets step by
``seq_len``, so samples never cross a shard). Each epoch permutes the global list of samples with a
generator seeded by ``(seed, epoch)``; a global batch is the next ``batch_size * world_size``
samples of that order, and rank ``r`` takes rows ``r*batch_size .. (r+1)*batch_size``. The order
therefore depends only on ``(seed, epoch, position)``, never on the world size: a run resumed on
a different number of ranks with the same global batch sees exactly the batches it would have
seen. Ranks fetch only the shards their rows touch, through a small LRU cache.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from lab_core.store.object_store import ObjectStore
from lab_core.training.shards import ShardIndex, read_shard


class ShardedLoader:
    """Batches ``(x, y)`` of shape ``[batch_size, seq_len]`` (y is x shifted by one token) for one rank."""

    def __init__(
        self,
        store: ObjectStore | str,
        prefix: str,
        *,
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        cache_shards: int = 4,
        verify: bool = True,
    ) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len}: need at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: need at least 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
        if cache_shards < 1:
            raise ValueError(f"cache_shards={cache_shards}: need at least 1")
        self.store = store if isinstance(store, ObjectStore) else ObjectStore(store)
        self.index = ShardIndex.load(self.store, prefix)
        self.seq_len, self.batch_size, self.rank, self.world_size = seq_len, batch_size, rank, world_size
        self.seed, self.verify, self._cache_size = seed, verify, cache_shards
        per_shard = np.array([max(0, (s.tokens - 1) // seq_len) for s in self.index.shards], dtype=np.int64)
        if per_shard.sum() == 0:
            longest = max((s.tokens for s in self.index.shards), default=0)
            raise ValueError(
                f"seq_len={seq_len}: every shard of {prefix!r} is too short "
                f"(longest holds {longest} tokens, a sample needs seq_len + 1)"
            )
        self._starts = np.concatenate([[0], np.cumsum(per_shard)])
        self.global_batch = batch_size * world_size
        n = int(per_shard.sum())
        if n < self.global_batch:
            raise ValueError(
                f"batch_size={batch_size} x world_size={world_size}: a global batch needs "
                f"{self.global_batch} samples but {prefix!r} has {n} of seq_len={seq_len}"
            )
        self.num_samples = n
        self._epoch, self._position = 0, 0
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self._shards: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def samples_per_epoch(self) -> int:
        """Samples consumed per epoch: whole global batches only (the partial last one is dropped)."""
        return self.num_samples // self.global_batch * self.global_batch

    @property
    def batches_per_epoch(self) -> int:
        """Global batches (= steps) per epoch."""
        return self.num_samples // self.global_batch

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from (after any rollover already taken)."""
        return self._epoch

    @property
    def position(self) -> int:
        """Global samples consumed so far in the current epoch."""
        return self._position

    def _order(self) -> np.ndarray:
        if self._perm_epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, self._epoch]).permutation(self.num_samples)
            self._perm_epoch = self._epoch
        return self._perm

    def _shard(self, i: int) -> np.ndarray:
        if i in self._shards:
            self._shards.move_to_end(i)
            return self._shards[i]
        tokens = read_shard(self.store, self.index, i, verify=self.verify)
        self._shards[i] = tokens
        if len(self._shards) > self._cache_size:
            self._shards.popitem(last=False)
        return tokens

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of the next global batch, as int64 tensors ``x`` and ``y``."""
        if self._position + self.global_batch > self.samples_per_epoch:
            self._epoch += 1
            self._position = 0
        start = self._position + self.rank * self.batch_size
        samples = self._order()[start : start + self.batch_size]
        shard_ids = np.searchsorted(self._starts, samples, side="right") - 1
        rows = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int64)
        # Group rows by shard so each shard is fetched once per batch even with a tiny cache.
        for s in np.unique(shard_ids):
            tokens = self._shard(int(s))
            for r in np.flatnonzero(shard_ids == s):
                off = int(samples[r] - self._starts[s]) * self.seq_len
                rows[r] = tokens[off : off + self.seq_len + 1]
        self._position += self.global_batch
        data = torch.from_numpy(rows)
        return data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def state_dict(self) -> dict[str, int]:
        """Where the data stream is: ``epoch``, ``position`` (global samples consumed in it) and ``seed``."""
        return {"epoch": self._epoch, "position": self._position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from any world size); the state's seed replaces this loader's."""
        try:
            epoch, position, seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"loader state {state!r}: need integer 'epoch', 'position' and 'seed'") from None
        if epoch < 0 or not 0 <= position <= self.num_samples:
            raise ValueError(f"loader state: epoch={epoch}, position={position} outside 0..{self.num_samples}")
        self.seed, self._epoch, self._position = seed, epoch, position
        self._perm_epoch = -1

    def __repr__(self) -> str:
        return (
            f"ShardedLoader({self.store.url!r}, {self.index.prefix!r}, seq_len={self.seq_len}, "
            f"batch_size={self.batch_size}, rank={self.rank}, world_size={self.world_size}, "
            f"epoch={self._epoch}, position={self._position})"
        )
