"""Stranded ratio that counts the free GPUs of reserved nodes as stranded.

Those GPUs are idle on purpose (held for the head of the line); calling them stranded makes every
reservation look like waste.

Expected to fail: the visible test (half the nodes reserved: 0.5, not 1.0) and the comparison with
the reference.
"""

# %% grade_id: stranded_ratio
def stranded_ratio(cluster, queued):
    """Free GPU capacity on live nodes that no queued job can use, over all free GPU capacity."""
    queued = [job for job in queued if job.num_gpus > 0]
    total_free = cluster.free_gpus()
    if not queued or total_free <= 0:
        return 0.0
    live = cluster.alive
    free = np.where(cluster.exists & live[:, None], cluster.free, 0)
    usable = np.zeros(free.shape, dtype=bool)
    for job in queued:
        if cluster.spans_nodes(job):
            empty = live & ~cluster.reserved & (cluster.whole_free() == cluster.gpu_count)
            if job.gpu_type is not None:
                empty &= cluster.gpu_type == job.gpu_type
            if cluster.gpu_count[empty].sum() >= job.num_gpus:
                usable |= empty[:, None] & cluster.exists
            continue
        need = job.gpu_milli if job.fractional else FULL_GPU
        usable |= cluster.fits(job)[:, None] & (free >= need)
    return float(free[~usable].sum()) / FULL_GPU / total_free
