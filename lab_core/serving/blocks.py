"""The KV-cache block manager: fixed-size blocks, per-sequence block tables, reference counts,
prefix caching by chained block hashes, and LRU eviction of free cached blocks.

A block holds the keys and values of ``block_size`` consecutive tokens. A full block whose KV is
computed is registered under the hash of its tokens chained with the previous block's hash, so
two prompts that share a prefix share its blocks (reference count > 1) and the second skips that
part of its prefill. A freed block keeps its contents and hash until it is reused: the free list
is in least-recently-freed order, and taking a block from it evicts whatever it cached.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from lab_core.serving.sequence import Sequence


def block_hash(prev: bytes | None, tokens: Seq[int]) -> bytes:
    """The hash of a full block: its tokens chained with the hash of the block before it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prev or b"")
    h.update(b"".join(t.to_bytes(4, "little") for t in tokens))
    return h.digest()


@dataclass
class Block:
    """One physical block: how many tables point at it and what full prefix it caches, if any."""

    id: int
    ref_count: int = 0
    hash: bytes | None = None


class OutOfBlocks(RuntimeError):
    """No free block is left; the scheduler preempts a sequence and tries again."""


class BlockAllocator:
    """Everything a block manager needs except ``allocate`` and ``free_sequence`` (the notebook's
    exercise subclasses this). ``prefix_caching=False`` turns sharing off (every sequence gets
    fresh blocks) so its effect can be measured."""

    def __init__(self, num_blocks: int, block_size: int, *, prefix_caching: bool = True) -> None:
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive integer, got {num_blocks!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        self.block_size, self.prefix_caching = block_size, prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}

    @property
    def num_blocks(self) -> int:
        """Blocks in the cache."""
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        """Blocks no sequence uses (some may still cache a prefix)."""
        return len(self.free)

    @property
    def num_used(self) -> int:
        """Blocks referenced by at least one sequence."""
        return self.num_blocks - self.num_free

    def blocks_needed(self, num_tokens: int) -> int:
        """Blocks that hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    def take_free(self) -> Block:
        """The least recently freed block, now referenced once, its cached prefix forgotten."""
        if not self.free:
            raise OutOfBlocks("no free KV-cache block")
        block = self.blocks[self.free.popitem(last=False)[0]]
        if block.hash is not None and self.cached.get(block.hash) == block.id:
            del self.cached[block.hash]
        block.hash = None
        block.ref_count = 1
        return block

    def prefix_hits(self, tokens: Seq[int]) -> list[int]:
        """Ids of cached blocks matching the leading full blocks of ``tokens``."""
        hits: list[int] = []
        if not self.prefix_caching:
            return hits
        prev = None
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            prev = block_hash(prev, tokens[start : start + self.block_size])
            block_id = self.cached.get(prev)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    def cached_tokens(self, seq: Sequence) -> int:
        """Tokens of ``seq`` that ``allocate`` would find already computed."""
        return min(len(self.prefix_hits(seq.tokens)) * self.block_size, len(seq.tokens) - 1)

    def can_allocate(self, seq: Sequence) -> bool:
        """True when ``seq``'s current tokens fit, counting blocks it would share."""
        hits = self.prefix_hits(seq.tokens)
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return self.blocks_needed(len(seq.tokens)) - len(hits) + revived <= self.num_free

    def allocate(self, seq: Sequence) -> int:
        """Give ``seq`` blocks for all its tokens; returns the tokens already computed."""
        raise NotImplementedError

    def can_grow(self, seq: Sequence, num_tokens: int) -> bool:
        """True when ``seq`` can hold ``num_tokens`` tokens with the free blocks left."""
        return self.blocks_needed(num_tokens) - len(seq.block_table) <= self.num_free

    def grow(self, seq: Sequence, num_tokens: int) -> None:
        """Add blocks so ``seq`` holds ``num_tokens`` tokens (a decode that crosses a block edge)."""
        if not self.can_grow(seq, num_tokens):
            raise OutOfBlocks(f"sequence {seq.request_id} needs a block, none is free")
        while len(seq.block_table) < self.blocks_needed(num_tokens):
            seq.block_table.append(self.take_free().id)

    def commit(self, seq: Sequence) -> None:
        """Register ``seq``'s full, computed blocks for prefix sharing (after a step wrote them)."""
        if not self.prefix_caching:
            return
        prev = None
        for i, block_id in enumerate(seq.block_table):
            end = (i + 1) * self.block_size
            if end > seq.computed:
                break
            block = self.blocks[block_id]
            prev = block.hash if block.hash is not None else block_hash(prev, seq.tokens[end - self.block_size : end])
            if block.hash is None:
                block.hash = prev
                self.cached.setdefault(prev, block_id)

    def free_sequence(self, seq: Sequence) -> None:
        """Drop ``seq``'s references to its blocks and clear its table."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise AssertionError unless the free list is exactly the blocks with no references."""
        unreferenced = {b.id for b in self.blocks if b.ref_count == 0}
        assert unreferenced == set(self.free), "free list and reference counts disagree"
        assert all(b.ref_count >= 0 for b in self.blocks), "negative reference count"
        for h, block_id in self.cached.items():
            assert self.blocks[block_id].hash == h, f"cached hash points at block {block_id} holding another"


class BlockManager(BlockAllocator):
    """The reference block manager: prefix sharing on allocation, LRU order on free."""

    def allocate(self, seq: Sequence) -> int:
        """Give ``seq`` blocks for all its tokens, sharing cached prefix blocks; returns the number
        of tokens whose KV is already there (always leaving at least one token to compute, whose
        logits give the next token)."""
        if seq.block_table:
            raise ValueError(f"sequence {seq.request_id} already holds blocks")
        if not self.can_allocate(seq):
            raise OutOfBlocks(f"{self.blocks_needed(len(seq.tokens))} blocks needed, {self.num_free} free")
        hits = self.prefix_hits(seq.tokens)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        while len(seq.block_table) < self.blocks_needed(len(seq.tokens)):
            seq.block_table.append(self.take_free().id)
        return min(len(hits) * self.block_size, len(seq.tokens) - 1)

    def free_sequence(self, seq: Sequence) -> None:
        """Drop ``seq``'s references; blocks nobody uses go to the free list, last block first so
        the end of a sequence is evicted before its shareable beginning."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            if block.ref_count <= 0:
                raise RuntimeError(f"block {block_id} freed twice (sequence {seq.request_id})")
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
