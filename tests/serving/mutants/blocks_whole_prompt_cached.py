"""Counts a fully cached prompt as fully computed: nothing is left to run, so no next token.

Expected to fail: the reference comparison (returns len(tokens), not len(tokens) - 1).
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
        return len(hits) * self.block_size

    def free_sequence(self, seq):
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
