"""Analysis answers: the smallest threshold within budget, and push writes without the followers.

The smallest threshold within budget pulls the most, not the largest that fits; the push write
rate forgets to multiply by the followers.

Expected to fail: the hidden value checks of Q1 and Q3.
"""

# %% grade_id: answer_push_writes
push_writes_per_second = 6_000  # one write per post

# %% grade_id: answer_simulation
sim_graph = power_law_graph(2000, mean_follows=20, seed=3)
push_writes_per_post = float(simulate(sim_graph, "push", duration=1.0, seed=1).summary()["writes_per_post"].iloc[0])
hybrid_writes_per_post = float(
    simulate(sim_graph, "hybrid", threshold=100, duration=1.0, seed=1).summary()["writes_per_post"].iloc[0])
table = compare(sim_graph, thresholds=[25, 50, 100, 200, 400], duration=1.0, seed=1)
threshold_within_budget = int(table[table["writes_per_post"] <= 15]["threshold"].min())
