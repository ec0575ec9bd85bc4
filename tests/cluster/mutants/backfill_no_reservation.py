"""Greedy "backfill": every waiting job that fits starts, and the head never gets a reservation.

The mean JCT looks good, but an 8-GPU job at the head can wait for ever behind a stream of small
ones: nothing holds GPUs for it.

Expected to fail: the visible backfill test (job 4 jumps the head), the hidden promise check (no
reservation is ever made) and the comparison with the reference.
"""

# %% grade_id: easy_backfill
def easy_backfill(view):
    """Start every waiting job that fits, in order."""
    for job in view.queue[: view.depth]:
        placement = view.place(job)
        if placement is not None:
            view.start(job, placement)
