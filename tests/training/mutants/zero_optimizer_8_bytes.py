"""Counts Adam's optimizer state as 8 bytes (m and v) whatever k is, forgetting the fp32 master weights.

Expected to fail: the visible test and the reference comparison of Exercise 2.
"""

# %% grade_id: zero_memory
def zero_bytes_per_gpu(num_params, stage, dp, *, k=12):
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3; got {stage!r}")
    params, grads, optimizer = 2.0 * num_params, 2.0 * num_params, 8.0 * num_params
    if stage >= 1:
        optimizer /= dp
    if stage >= 2:
        grads /= dp
    if stage >= 3:
        params /= dp
    return params + grads + optimizer
