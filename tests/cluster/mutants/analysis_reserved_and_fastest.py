"""Analysis answers: reserved GPUs counted as stranded, and the fastest detector chosen regardless of false positives.

Q1 counts node 2's eight reserved GPUs as stranded (8.5 / 16.5); Q4 picks the 20 s timeout, which
detects fastest but declares healthy nodes dead many times a day.

Expected to fail: the hidden checks of Q1 and Q4.
"""

# %% grade_id: answer_stranded
stranded_answer = 8.5 / 16.5

# %% grade_id: answer_detection
detection = detection_tradeoff([20, 30, 60, 120], interval=10.0, loss=0.05)
safe_timeout = float(detection["timeout"].min())
safe_detection_delay = float(detection.loc[detection["timeout"].idxmin(), "mean_detection_delay"])
