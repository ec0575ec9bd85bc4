"""ZeRO-2 that still keeps the full gradients on every rank (the same as stage 1).

Expected to fail: the visible test (the paper's 16.6 GB) and the reference comparison of Exercise 2.
"""

# %% grade_id: zero_memory
def zero_bytes_per_gpu(num_params, stage, dp, *, k=12):
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3; got {stage!r}")
    params, grads, optimizer = 2.0 * num_params, 2.0 * num_params, float(k) * num_params
    if stage >= 1:
        optimizer /= dp
    if stage >= 3:
        grads /= dp
        params /= dp
    return params + grads + optimizer
