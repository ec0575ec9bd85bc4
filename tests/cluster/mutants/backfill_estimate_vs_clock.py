"""Backfill that compares a job's estimate with the reserved start, forgetting that the start is a clock time.

``job.estimate <= res.start`` compares a duration with an absolute time: once the simulation has
run for a while almost every job "ends in time", so long jobs take the head's reserved GPUs and the
head starts later than it was promised.

Expected to fail: the hidden promise check (jobs start after their reserved start) and the
comparison with the reference.
"""

# %% grade_id: easy_backfill
def easy_backfill(view):
    """EASY backfill, with the end-time test written as estimate <= reserved start."""
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
        if job.estimate <= res.start or not res.touches(placement):
            view.start(job, placement)
            continue
        elsewhere = view.place(job, exclude=res.nodes)
        if elsewhere is not None:
            view.start(job, elsewhere)
