"""Picks 4 colocated GPUs ("92% is close enough"): below the 95% goodput target.

Expected to fail: the hidden check of Exercise 5.
"""

# %% grade_id: answer_fleet
fleet_answer = (0, 4)
print(f"smallest fleet meeting the SLA: {fleet_answer}")
