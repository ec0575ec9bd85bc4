"""Best-fit that puts a fractional job on the first GPU already shared, not the tightest one.

"Keep whole GPUs whole" read as "any shared GPU will do": the job goes to the lowest-numbered GPU
that is already partly used and still has room, else to the lowest-numbered free GPU. On a node
whose shared GPUs have different free shares (750 and 250 milli, say) it takes the roomier one and
leaves a smaller, less usable sliver behind.

Expected to fail: the hidden comparison with the reference only (the placement is legal); the
visible tests, with one shared GPU per node, pass.
"""

# %% grade_id: best_fit
def best_fit(cluster, job, exclude=None):
    """The tightest node that fits ``job``; a shared job joins the first GPU already shared."""
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
        shared = ok[free[ok] < FULL_GPU]
        gpu = int(shared[0] if shared.size else ok[0])
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
