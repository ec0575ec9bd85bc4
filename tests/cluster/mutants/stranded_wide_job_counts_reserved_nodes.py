"""Stranded ratio that lets a wide job count reserved empty nodes toward the nodes it needs.

The empty-node mask for a job wider than a node is built from ``cluster.alive`` alone: a reserved
empty node (held for another job) makes the count reach ``num_gpus``, so the unreserved empty node
beside it looks usable when the wide job could not in fact start there.

Expected to fail: the hidden comparison with the reference only; the visible tests have no reserved
node beside a wide job.
"""

# %% grade_id: stranded_ratio
def stranded_ratio(cluster, queued):
    """Free GPU capacity on live, unreserved nodes that no queued job can use, over all free GPU capacity."""
    queued = [job for job in queued if job.num_gpus > 0]
    total_free = cluster.free_gpus()
    if not queued or total_free <= 0:
        return 0.0
    live = cluster.alive & ~cluster.reserved
    free = np.where(cluster.exists & live[:, None], cluster.free, 0)
    usable = np.zeros(free.shape, dtype=bool)
    for job in queued:
        if cluster.spans_nodes(job):
            empty = cluster.alive & (cluster.whole_free() == cluster.gpu_count)
            if job.gpu_type is not None:
                empty &= cluster.gpu_type == job.gpu_type
            if cluster.gpu_count[empty].sum() >= job.num_gpus:
                usable |= empty[:, None] & cluster.exists
            continue
        need = job.gpu_milli if job.fractional else FULL_GPU
        usable |= cluster.fits(job)[:, None] & (free >= need)
    return float(free[~usable].sum()) / FULL_GPU / total_free
