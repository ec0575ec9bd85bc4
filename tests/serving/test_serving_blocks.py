"""The block manager: allocation, sharing by prefix, LRU eviction, and its invariants under any
sequence of operations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.serving.blocks import BlockManager, OutOfBlocks
from lab_core.serving.protocol import SamplingParams
from lab_core.serving.sequence import Sequence


def seq(tokens: list[int], name: str = "s") -> Sequence:
    return Sequence(name, list(tokens), SamplingParams())


def computed(bm: BlockManager, s: Sequence) -> None:
    s.computed = len(s.tokens)
    bm.commit(s)


def test_allocate_takes_ceil_blocks_and_free_returns_them() -> None:
    bm = BlockManager(8, 4)
    s = seq(list(range(9)))
    assert bm.allocate(s) == 0
    assert len(s.block_table) == 3 and bm.num_free == 5
    bm.free_sequence(s)
    assert bm.num_free == 8 and s.block_table == []
    bm.check()


def test_a_shared_prefix_is_reused_and_counted() -> None:
    bm = BlockManager(16, 4)
    a = seq([1, 2, 3, 4, 5, 6, 7, 8, 9], "a")
    bm.allocate(a)
    computed(bm, a)
    b = seq([1, 2, 3, 4, 5, 6, 7, 8, 42, 43], "b")
    assert bm.allocate(b) == 8
    assert b.block_table[:2] == a.block_table[:2] and b.block_table[2] != a.block_table[2]
    assert [bm.blocks[i].ref_count for i in a.block_table] == [2, 2, 1]
    bm.free_sequence(a)
    assert [bm.blocks[i].ref_count for i in b.block_table] == [1, 1, 1]
    bm.check()


def test_same_block_at_another_position_is_not_shared() -> None:
    bm = BlockManager(16, 2)
    a = seq([7, 7, 1, 2])
    bm.allocate(a)
    computed(bm, a)
    assert bm.cached_tokens(seq([1, 2, 7, 7])) == 0  # hashes chain the prefix, not just the block


def test_a_fully_cached_prompt_still_computes_its_last_token() -> None:
    bm = BlockManager(8, 4)
    a = seq(list(range(8)), "a")
    bm.allocate(a)
    computed(bm, a)
    assert bm.allocate(seq(list(range(8)), "b")) == 7


def test_freed_blocks_keep_their_prefix_until_reused_least_recently_freed_first() -> None:
    bm = BlockManager(4, 2)
    a = seq([1, 2, 3, 4], "a")
    bm.allocate(a)
    computed(bm, a)
    bm.free_sequence(a)
    assert bm.num_free == 4 and bm.cached_tokens(seq([1, 2, 3, 4, 5])) == 4
    filler = seq([9, 9, 9, 9], "f")  # takes the two never-used blocks first
    bm.allocate(filler)
    assert bm.cached_tokens(seq([1, 2, 3, 4, 5])) == 4
    other = seq([8, 8], "o")  # now an evicted block: a's tail goes before its head
    bm.allocate(other)
    assert bm.cached_tokens(seq([1, 2, 3, 4, 5])) == 2
    bm.check()


def test_out_of_blocks_is_refused_without_change() -> None:
    bm = BlockManager(2, 4)
    big = seq(list(range(9)))
    assert not bm.can_allocate(big)
    with pytest.raises(OutOfBlocks):
        bm.allocate(big)
    assert bm.num_free == 2 and big.block_table == []


def test_double_free_is_caught() -> None:
    bm = BlockManager(4, 2)
    a = seq([1, 2, 3])
    bm.allocate(a)
    table = list(a.block_table)
    bm.free_sequence(a)
    a.block_table = table
    with pytest.raises(RuntimeError, match="freed twice"):
        bm.free_sequence(a)


@pytest.mark.parametrize(("num_blocks", "block_size"), [(0, 4), (4, 0), (True, 4), (4, 2.5)])
def test_bad_sizes_are_refused(num_blocks: object, block_size: object) -> None:
    with pytest.raises(ValueError, match="num_blocks|block_size"):
        BlockManager(num_blocks, block_size)  # type: ignore[arg-type]


ops = st.lists(
    st.tuples(
        st.sampled_from(["new", "grow", "free"]),
        st.integers(0, 5),
        st.lists(st.integers(0, 3), min_size=1, max_size=12),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_invariants_hold_under_any_operations(script: list) -> None:
    bm = BlockManager(12, 3)
    live: dict[int, Sequence] = {}
    for op, key, tokens in script:
        s = live.get(key)
        if op == "new" and s is None:
            s = seq(tokens, str(key))
            if bm.can_allocate(s):
                bm.allocate(s)
                computed(bm, s)
                live[key] = s
        elif op == "grow" and s is not None:
            s.tokens.append(tokens[0])
            if bm.can_grow(s, len(s.tokens)):
                bm.grow(s, len(s.tokens))
                computed(bm, s)
            else:
                s.tokens.pop()
        elif op == "free" and s is not None:
            bm.free_sequence(live.pop(key))
        bm.check()
        refs = sum(b.ref_count for b in bm.blocks)
        assert refs == sum(len(x.block_table) for x in live.values())
        for x in live.values():
            assert len(x.block_table) == bm.blocks_needed(len(x.tokens))
    for s in live.values():
        bm.free_sequence(s)
    assert bm.num_free == bm.num_blocks
