"""Worst-fit: the emptiest node instead of the tightest.

Spreading load looks balanced, and it is exactly how the stranding example happened: small jobs
land on empty nodes and no node stays whole for an 8-GPU job.

Expected to fail: the visible test (the tightest node, and the stranding example) and the comparison
with the reference; every placement is still legal, so the invariant check passes.
"""

# %% grade_id: best_fit
def best_fit(cluster, job, exclude=None):
    """The node with the most free GPU; on it, GPUs in one NVLink domain when one has room."""
    if cluster.spans_nodes(job):
        return whole_nodes(cluster, job, exclude)
    candidates = np.flatnonzero(cluster.fits(job, exclude=exclude))
    if candidates.size == 0:
        return None
    node = int(candidates[np.argmax(cluster.free[candidates].sum(axis=1))])
    if job.num_gpus == 0:
        return ((node, -1, 0),)
    slots = np.flatnonzero(cluster.exists[node])
    free = cluster.free[node]
    if job.fractional:
        ok = slots[free[slots] >= job.gpu_milli]
        gpu = int(ok[np.argmin(free[ok])])
        return ((node, gpu, job.gpu_milli),)
    whole = slots[free[slots] == FULL_GPU]
    if job.num_gpus <= cluster.domain_size[node]:
        domains = cluster.domain[node, whole]
        counts = np.bincount(domains)
        roomy = np.flatnonzero(counts >= job.num_gpus)
        if roomy.size:
            tightest = roomy[np.argmin(counts[roomy])]
            whole = whole[domains == tightest]
    return tuple((node, int(gpu), FULL_GPU) for gpu in whole[: job.num_gpus])
