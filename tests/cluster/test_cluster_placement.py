"""Placement policies: always legal, None only when nothing fits, and each with its own preference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.cluster import FGD, FULL_GPU, PLACERS, Cluster, Job, Workload, best_fit, first_fit, topology_aware
from lab_core.cluster.fragmentation import node_fragmentation
from lab_core.cluster.placement import whole_nodes

SHAPES = [(1, 250), (1, 500), (1, FULL_GPU), (2, FULL_GPU), (3, FULL_GPU), (4, FULL_GPU), (8, FULL_GPU), (16, FULL_GPU)]
WORKLOAD = Workload.from_jobs([Job(i, 0, 1, num_gpus=n, gpu_milli=m) for i, (n, m) in enumerate(SHAPES)])


@st.composite
def busy_cluster(draw) -> Cluster:
    c = Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    for i in range(draw(st.integers(0, 20))):
        n, m = draw(st.sampled_from(SHAPES[:-1]))
        job = Job(1000 + i, 0, 1, num_gpus=n, gpu_milli=m)
        p = first_fit(c, job)
        if p is not None and draw(st.booleans()):
            c.allocate(job, p)
    c.alive[draw(st.integers(0, 3))] = draw(st.booleans())
    return c


PLACE_ALL = {**PLACERS, "fgd": FGD(WORKLOAD)}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(busy_cluster(), st.sampled_from(SHAPES), st.sampled_from(sorted(PLACE_ALL)))
def test_placements_are_legal_and_complete(cluster, shape, name):
    job = Job(1, 0, 1, num_gpus=shape[0], gpu_milli=shape[1])
    placement = PLACE_ALL[name](cluster, job)
    possible = whole_nodes(cluster, job) is not None if cluster.spans_nodes(job) else cluster.fits(job).any()
    assert (placement is not None) == possible
    if placement is not None:
        cluster.allocate(job, placement)  # raises on any broken rule
        assert not cluster.invariant_errors()


def test_first_fit_takes_lowest_node_best_fit_the_tightest():
    c = Cluster.build(racks=1, nodes_per_rack=3, gpus_per_node=8, nvlink_domain=4)
    c.allocate(Job(1, 0, 1, num_gpus=6), best_fit(c, Job(1, 0, 1, num_gpus=6)))
    c.allocate(Job(2, 0, 1, num_gpus=4), ((2, 0, FULL_GPU), (2, 1, FULL_GPU), (2, 2, FULL_GPU), (2, 3, FULL_GPU)))
    job = Job(3, 0, 1, num_gpus=2)
    assert {n for n, _, _ in first_fit(c, job)} == {0}
    assert {n for n, _, _ in best_fit(c, job)} == {0}  # node 0 has 2 free: the tightest
    assert {n for n, _, _ in best_fit(c, Job(4, 0, 1, num_gpus=3))} == {2}  # 4 free beats 8 free


def test_best_fit_keeps_a_job_inside_one_nvlink_domain():
    c = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8, nvlink_domain=4)
    c.allocate(Job(1, 0, 1), ((0, 0, FULL_GPU),))  # domain 0 has 3 free, domain 1 has 4
    four = best_fit(c, Job(2, 0, 1, num_gpus=4))
    assert {c.domain[0, g] for _, g, _ in four} == {1}
    unaware = first_fit(c, Job(2, 0, 1, num_gpus=4))
    assert {c.domain[0, g] for _, g, _ in unaware} == {0, 1}
    three = best_fit(c, Job(3, 0, 1, num_gpus=3))
    assert {c.domain[0, g] for _, g, _ in three} == {0}  # the fuller domain that still fits


def test_topology_prefers_a_node_with_a_whole_domain():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    # node 0: 3 free, split over both domains; node 1: one domain entirely free
    c.allocate(
        Job(1, 0, 1, num_gpus=5),
        ((0, 0, FULL_GPU), (0, 1, FULL_GPU), (0, 4, FULL_GPU), (0, 5, FULL_GPU), (0, 6, FULL_GPU)),
    )
    c.allocate(Job(2, 0, 1, num_gpus=4), ((1, 0, FULL_GPU), (1, 1, FULL_GPU), (1, 2, FULL_GPU), (1, 3, FULL_GPU)))
    job = Job(3, 0, 1, num_gpus=3)
    assert {n for n, _, _ in best_fit(c, job)} == {0}
    assert {n for n, _, _ in topology_aware(c, job)} == {1}


def test_wide_jobs_get_whole_nodes_in_one_rack():
    c = Cluster.build(racks=2, nodes_per_rack=3, gpus_per_node=8)
    c.allocate(Job(1, 0, 1), ((0, 0, FULL_GPU),))  # rack 0 has two empty nodes, rack 1 three
    placement = best_fit(c, Job(2, 0, 1, num_gpus=16))
    nodes = {n for n, _, _ in placement}
    assert len(nodes) == 2 and set(c.rack[list(nodes)]) == {1}
    assert best_fit(c, Job(3, 0, 1, num_gpus=48)) is None


def test_exclude_keeps_nodes_clear():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8)
    keep = np.array([True, False])
    assert {n for n, _, _ in best_fit(c, Job(1, 0, 1), exclude=keep)} == {1}
    assert best_fit(c, Job(1, 0, 1), exclude=np.array([True, True])) is None


def test_fgd_takes_the_smallest_fragmentation_increase():
    c = Cluster.build(racks=1, nodes_per_rack=3, gpus_per_node=4, nvlink_domain=4)
    c.allocate(Job(1, 0, 1, gpu_milli=500), ((0, 0, 500),))
    c.allocate(Job(2, 0, 1, num_gpus=2), ((1, 0, FULL_GPU), (1, 1, FULL_GPU)))
    job = Job(3, 0, 1, gpu_milli=500)
    ((node, gpu, _),) = FGD(WORKLOAD)(c, job)
    # brute force every legal spot
    deltas = {}
    for n in range(3):
        for g in range(4):
            if c.free[n, g] >= 500:
                trial = c.free[n].copy()
                trial[g] -= 500
                args = (c.cpu_free[[n]], c.mem_free[[n]], WORKLOAD)
                deltas[(n, g)] = node_fragmentation(trial[None], *args)[0] - node_fragmentation(c.free[[n]], *args)[0]
    assert np.isclose(deltas[(node, gpu)], min(deltas.values()))
    assert (node, gpu) == (0, 0)  # completing the half-used GPU creates no new fragment
