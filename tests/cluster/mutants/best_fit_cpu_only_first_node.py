"""Best-fit that sends a CPU-only job to the first node that fits instead of the tightest.

"A job with no GPU cannot fragment GPUs, so any node will do": the ``num_gpus == 0`` case is
answered before the tightest node is chosen. The rule is the same for every job (the node with the
least free GPU capacity): a CPU-only job on an empty node takes that node's CPU and memory, which a
whole-node job then lacks.

Expected to fail: the hidden comparison with the reference only (the placement is legal); no visible
test places a CPU-only job.
"""

# %% grade_id: best_fit
def best_fit(cluster, job, exclude=None):
    """The tightest node that fits ``job`` (any node for a CPU-only job); GPUs in one NVLink domain."""
    if cluster.spans_nodes(job):
        return whole_nodes(cluster, job, exclude)
    candidates = np.flatnonzero(cluster.fits(job, exclude=exclude))
    if candidates.size == 0:
        return None
    if job.num_gpus == 0:
        return ((int(candidates[0]), -1, 0),)
    node = int(candidates[np.argmin(cluster.free[candidates].sum(axis=1))])
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
