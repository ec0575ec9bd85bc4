"""Dense named the best retriever ("embeddings beat keywords") without measuring.

On this corpus dense has the lowest nDCG@10 of the three; hybrid fusion is best.

Expected to fail: the hidden check of Q4.
"""

# %% grade_id: answer_best_mode
best_mode = "dense"
print(f"best retrieval mode: {best_mode}")
