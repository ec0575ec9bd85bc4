"""Uses one GPU's MTBF (40,000 hours) instead of the 1,000-GPU job's: checkpoints every two days.

Expected to fail: the hidden check of Exercise 4.
"""

# %% grade_id: answer_interval
interval_answer = young_daly_interval(2 * 60, 40_000 * 3600) / 60
print(f"checkpoint every {interval_answer:.0f} minutes")
