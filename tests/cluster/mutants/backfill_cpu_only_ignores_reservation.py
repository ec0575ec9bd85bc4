"""Backfill that starts a CPU-only job wherever it is placed, reserved nodes included, however long it runs.

"A job with no GPU cannot delay a GPU job": a ``num_gpus == 0`` job skips the rule. It does take the
reserved node's CPU and memory, which the head will need there, and the rule is the same for every
job: end (by the estimate) before the reserved start, or keep off the reserved nodes.

Expected to fail: the hidden comparison with the reference only (a long CPU-only job starts on a node
held for the head instead of elsewhere); no visible test and no other hidden workload has CPU-only jobs.
"""

# %% grade_id: easy_backfill
def easy_backfill(view):
    """EASY backfill in which CPU-only jobs never wait for the head's reservation."""
    head = None
    for job in view.queue:
        placement = view.place(job)
        if placement is None:
            head = job
            break
        view.start(job, placement)
    if head is None:
        return
    res = view.reservation(head)
    for job in view.queue[1 : view.depth]:
        placement = view.place(job)
        if placement is None:
            continue
        if job.num_gpus == 0 or view.now + job.estimate <= res.start or not res.touches(placement):
            view.start(job, placement)
            continue
        elsewhere = view.place(job, exclude=res.nodes)
        if elsewhere is not None:
            view.start(job, elsewhere)
