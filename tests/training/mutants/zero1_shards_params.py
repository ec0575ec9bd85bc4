"""Stage 1 shards the parameters along with the optimizer state (stages counted the wrong way round).

Expected to fail: the visible test and the reference comparison of Exercise 2.
"""

# %% grade_id: zero_memory
def zero_bytes_per_gpu(num_params, stage, dp, *, k=12):
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3; got {stage!r}")
    params, grads, optimizer = 2.0 * num_params, 2.0 * num_params, float(k) * num_params
    if stage >= 1:
        optimizer /= dp
        params /= dp
    if stage >= 2:
        grads /= dp
    return params + grads + optimizer
