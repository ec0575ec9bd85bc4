"""Backfill that gives up at the first later job that does not fit.

``break`` instead of ``continue``: one big job behind the head hides every small job behind it, so
backfill fills far fewer idle GPUs (it never delays the head, so only the comparison notices).

Expected to fail: the hidden comparison with the reference (different start times, higher mean JCT).
"""

# %% grade_id: easy_backfill
def easy_backfill(view):
    """EASY backfill that stops at the first job without a placement."""
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
            break
        if view.now + job.estimate <= res.start or not res.touches(placement):
            view.start(job, placement)
            continue
        elsewhere = view.place(job, exclude=res.nodes)
        if elsewhere is not None:
            view.start(job, elsewhere)
