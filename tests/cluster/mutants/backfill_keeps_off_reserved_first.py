"""Backfill that always tries to keep off the reserved nodes first, even for a job that ends in time.

The rule's two ways out are taken in the wrong order: ``view.place(job, exclude=res.nodes)`` first, the
plain placement only when that fails. A short job that would end before the head's reserved start is
moved off the tightest node (often a node held for the head, such as an empty node beside a 16-GPU head)
onto a node the policy did not choose, splitting another node's free GPUs.

Expected to fail: the hidden comparison with the reference only (jobs start at the same times, on other
nodes); the promises are kept.
"""

# %% grade_id: easy_backfill
def easy_backfill(view):
    """EASY backfill that prefers nodes off the reservation over the placement policy's choice."""
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
        elsewhere = view.place(job, exclude=res.nodes)
        if elsewhere is not None:
            view.start(job, elsewhere)
            continue
        placement = view.place(job)
        if placement is not None and view.now + job.estimate <= res.start:
            view.start(job, placement)
