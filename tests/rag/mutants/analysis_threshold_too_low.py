"""A round refusal threshold, 0.3: under every answerable score but also under one unanswerable one.

The HDFS question's best sentence scores 0.312, so it gets an answer the corpus cannot give.

Expected to fail: the hidden check of Q3 (refusal accuracy 39/40).
"""

# %% grade_id: answer_min_score
min_score = 0.3
print(f"refuse below {min_score}")
