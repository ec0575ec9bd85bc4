"""Fits the model states into the whole 80 GB, forgetting the 16 GB kept for activations (answers 4, not 5).

Expected to fail: the hidden check of the sizing question.
"""

# %% grade_id: answer_min_dp
min_dp_answer = next(dp for dp in range(1, 100_000) if zero_bytes_per_gpu(13e9, 2, dp) <= 80e9)
print(f"ZeRO-2 needs at least {min_dp_answer} data-parallel GPUs")
