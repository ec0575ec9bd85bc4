"""Zeroes the gradients at the start of every micro-batch: only the last micro-batch's gradient survives.

Expected to fail: the visible test and the by-value comparison of Exercise 1.
"""

# %% grade_id: accumulation
def accumulation_step(model, micro_batches, optimizer, *, no_sync=contextlib.nullcontext, max_norm=1.0):
    k = len(micro_batches)
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        optimizer.zero_grad(set_to_none=True)
        with no_sync() if i < k - 1 else contextlib.nullcontext():
            loss = model(x, y)
            (loss / k).backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return total / k
