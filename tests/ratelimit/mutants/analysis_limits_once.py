"""Analysis answers that forget the burst at the window edge and in the bucket.

The fixed window's worst 60 s is taken to be N (it is 2N: N at the end of one window, N at the start
of the next), and the token bucket's worst T seconds r*T (it is B + r*T: a full bucket first).
Expected to fail: the hidden value checks of Q1 and Q2.
"""

# %% grade_id: answer_fixed_window_worst
fixed_window_worst = 100  # the limit is the limit

# %% grade_id: answer_token_bucket_worst
token_bucket_worst = 5 * 60  # rate times time
