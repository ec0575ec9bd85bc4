"""Analysis answers with ranks from 0 and only full windows: 1/60 + 1/63 and 6 chunks.

Expected to fail: the hidden checks of Q1 and Q2.
"""

# %% grade_id: answer_rrf_score
rrf_score_answer = 1 / 60 + 1 / 63
print(f"RRF score: {rrf_score_answer:.6f}")

# %% grade_id: answer_chunk_count
chunk_count_answer = (1000 - 200) // 150 + 1
