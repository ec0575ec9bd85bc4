"""Best-fit that hands a whole-GPU job any GPU with some free share.

``free > 0`` instead of ``free == FULL_GPU``: a GPU where a notebook holds a quarter looks
available, so the training job is placed on a GPU that is already partly booked.

Expected to fail: the hidden invariant check (Cluster.check reports the double-booked GPU) and the
comparison with the reference; the visible tests, with no shared GPUs in the whole-GPU cases, pass.
"""

# %% grade_id: best_fit
def best_fit(cluster, job, exclude=None):
    """The tightest node that fits ``job``; GPUs with any free share, in one NVLink domain when one has room."""
    if cluster.spans_nodes(job):
        return whole_nodes(cluster, job, exclude)
    candidates = np.flatnonzero(cluster.fits(job, exclude=exclude))
    if candidates.size == 0:
        return None
    node = int(candidates[np.argmin(cluster.free[candidates].sum(axis=1))])
    if job.num_gpus == 0:
        return ((node, -1, 0),)
    slots = np.flatnonzero(cluster.exists[node])
    free = cluster.free[node]
    if job.fractional:
        ok = slots[free[slots] >= job.gpu_milli]
        gpu = int(ok[np.argmin(free[ok])])
        return ((node, gpu, job.gpu_milli),)
    whole = slots[free[slots] > 0]
    if job.num_gpus <= cluster.domain_size[node]:
        domains = cluster.domain[node, whole]
        counts = np.bincount(domains)
        roomy = np.flatnonzero(counts >= job.num_gpus)
        if roomy.size:
            tightest = roomy[np.argmin(counts[roomy])]
            whole = whole[domains == tightest]
    return tuple((node, int(gpu), FULL_GPU) for gpu in whole[: job.num_gpus])
