"""Stranded GPUs divided by all GPUs of the cluster instead of the free ones.

A share of the whole cluster mixes stranding with load: a busy cluster looks unfragmented however
useless its few free GPUs are.

Expected to fail: the visible test (56 stranded of 56 free is 1.0, not 0.875) and the comparison
with the reference.
"""

# %% grade_id: stranded_ratio
def stranded_ratio(cluster, queued):
    """Free GPU capacity on live, unreserved nodes that no queued job can use, over all GPUs."""
    queued = [job for job in queued if job.num_gpus > 0]
    if not queued or cluster.free_gpus() <= 0:
        return 0.0
    live = cluster.alive & ~cluster.reserved
    free = np.where(cluster.exists & live[:, None], cluster.free, 0)
    usable = np.zeros(free.shape, dtype=bool)
    for job in queued:
        if cluster.spans_nodes(job):
            empty = live & (cluster.whole_free() == cluster.gpu_count)
            if job.gpu_type is not None:
                empty &= cluster.gpu_type == job.gpu_type
            if cluster.gpu_count[empty].sum() >= job.num_gpus:
                usable |= empty[:, None] & cluster.exists
            continue
        need = job.gpu_milli if job.fractional else FULL_GPU
        usable |= cluster.fits(job)[:, None] & (free >= need)
    return float(free[~usable].sum()) / FULL_GPU / cluster.total_gpus
