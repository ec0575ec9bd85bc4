"""Best-fit that ignores NVLink domains: the node's lowest-numbered free GPUs.

The node is right, but a 2-GPU job can straddle two domains (gradients over PCIe), and small jobs
break up a whole domain that a 4-GPU job needed.

Expected to fail: the visible test (with GPU 0 busy, a 4-GPU job gets GPUs 1-4, across both
domains, instead of domain 1's GPUs 4-7), the hidden NVLink invariant and the comparison with the
reference.
"""

# %% grade_id: best_fit
def best_fit(cluster, job, exclude=None):
    """The tightest node that fits ``job``; its lowest-numbered free GPUs."""
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
    whole = slots[free[slots] == FULL_GPU]
    return tuple((node, int(gpu), FULL_GPU) for gpu in whole[: job.num_gpus])
