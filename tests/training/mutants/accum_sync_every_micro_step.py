"""Never enters no_sync(): correct gradients, but DDP all-reduces after every micro-batch (k rounds per step).

Expected to fail: the all-reduce count under DDP.
"""

# %% grade_id: accumulation
def accumulation_step(model, micro_batches, optimizer, *, no_sync=contextlib.nullcontext, max_norm=1.0):
    k = len(micro_batches)
    total = 0.0
    for x, y in micro_batches:
        loss = model(x, y)
        (loss / k).backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / k
