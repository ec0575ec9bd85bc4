"""Lets take_free raise OutOfBlocks instead of checking can_allocate first: a refused allocate keeps what it took.

A prompt that does not fit has already shared its cached prefix (reference counts up, blocks off
the free list) and taken some free blocks when the error comes, and none of it is given back: the
cache leaks under pressure. Expected to fail: the hidden reference comparison (an allocate that
must raise OutOfBlocks and change nothing).
"""

# %% grade_id: block_manager
class MyBlockManager(BlockAllocator):
    def allocate(self, seq):
        if seq.block_table:
            raise ValueError(f"sequence {seq.request_id} already holds blocks")
        hits = self.prefix_hits(seq.tokens)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        while len(seq.block_table) < self.blocks_needed(len(seq.tokens)):
            seq.block_table.append(self.take_free().id)  # raises OutOfBlocks when the cache is full
        return min(len(hits) * self.block_size, len(seq.tokens) - 1)

    def free_sequence(self, seq):
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
