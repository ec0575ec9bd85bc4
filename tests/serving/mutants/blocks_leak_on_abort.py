"""Frees only the blocks that hold computed KV ("the others were never written").

A request aborted mid-prefill keeps its unwritten blocks referenced forever: the cache shrinks
with every abort. Expected to fail: the hidden reference comparison and the engine's leak check.
"""

# %% grade_id: block_manager
class MyBlockManager(BlockAllocator):
    def allocate(self, seq):
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

    def free_sequence(self, seq):
        written = seq.block_table[: self.blocks_needed(seq.computed)]
        for block_id in reversed(written):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
