"""Lets the FIRST micro-batch synchronise and wraps the others in no_sync(): one all-reduce per step, as
required, but it averages only micro-batch 1's gradient across replicas; the other k-1 stay local, so on
more than one GPU the replicas apply different gradients and drift apart (invisible on one rank).

Expected to fail: the hidden DDP check of Exercise 1 (what is all-reduced, and after which forward).
"""

# %% grade_id: accumulation
def accumulation_step(model, micro_batches, optimizer, *, no_sync=contextlib.nullcontext, max_norm=1.0):
    k = len(micro_batches)
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        # sync once, on the first micro-batch, and accumulate the rest without communication
        with no_sync() if i > 0 else contextlib.nullcontext():
            loss = model(x, y)
            (loss / k).backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / k
