"""Allocates fresh blocks for every sequence: correct, but the shared prefix is recomputed.

Expected to fail: the reference comparison (other tables, 0 cached) and the engine's prefix check.
"""

# %% grade_id: block_manager
class MyBlockManager(BlockAllocator):
    def allocate(self, seq):
        if seq.block_table:
            raise ValueError(f"sequence {seq.request_id} already holds blocks")
        if not self.can_allocate(seq):
            raise OutOfBlocks(f"{self.blocks_needed(len(seq.tokens))} blocks needed, {self.num_free} free")
        while len(seq.block_table) < self.blocks_needed(len(seq.tokens)):
            seq.block_table.append(self.take_free().id)
        return 0

    def free_sequence(self, seq):
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table.clear()
