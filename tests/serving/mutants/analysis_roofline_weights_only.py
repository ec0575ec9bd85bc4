"""Decode bound from the weights alone, forgetting that every sequence's KV cache is read too.

Expected to fail: the hidden check of Exercise 4 (the answer is about 1.5x too high).
"""

# %% grade_id: answer_decode_bound
m, g = MODELS["8B"], GPUS["H100-SXM"]
decode_bound_answer = 32 / (m.weight_bytes / g.mem_bandwidth)
print(f"at most {decode_bound_answer:,.0f} tokens/s")
