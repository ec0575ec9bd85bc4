"""The FGD fragmentation measure and the stranded-GPU ratio, on states worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.cluster import (
    FULL_GPU,
    Cluster,
    Job,
    Workload,
    fragmentation_ratio,
    fragmented_gpus,
    stranded_gpus,
    stranded_mask,
    stranded_ratio,
)
from lab_core.cluster.fragmentation import node_fragmentation


def workload(*shapes: tuple[int, int, float]) -> Workload:
    return Workload(
        num_gpus=np.array([s[0] for s in shapes]),
        gpu_milli=np.array([s[1] for s in shapes]),
        cpu_milli=np.zeros(len(shapes)),
        memory_mib=np.zeros(len(shapes)),
        popularity=np.array([s[2] for s in shapes]),
    )


def test_node_fragmentation_follows_the_paper_cases():
    free = np.array([[1000, 500, 300, 0]])
    cpu = np.array([10_000])
    mem = np.array([10_000])
    half = workload((1, 500, 1.0))
    assert node_fragmentation(free, cpu, mem, half)[0] == 300  # only the 0.3-free GPU is useless to a 0.5 job
    two = workload((2, FULL_GPU, 1.0))
    assert node_fragmentation(free, cpu, mem, two)[0] == 1800  # 1.8 GPUs free in total: a 2-GPU job cannot run
    roomier = np.array([[1000, 1000, 500, 300]])
    assert node_fragmentation(roomier, cpu, mem, two)[0] == 800  # it runs; the partial GPUs are its fragments
    four = workload((4, FULL_GPU, 1.0))
    assert node_fragmentation(free, cpu, mem, four)[0] == 1800  # cannot run at all: everything is fragment
    cpu_only = workload((0, 0, 1.0))
    assert node_fragmentation(free, cpu, mem, cpu_only)[0] == 1800
    mix = workload((1, 500, 0.5), (4, FULL_GPU, 0.5))
    assert node_fragmentation(free, cpu, mem, mix)[0] == pytest.approx(0.5 * 300 + 0.5 * 1800)
    starved = workload((1, 500, 1.0))
    starved = Workload(
        starved.num_gpus, starved.gpu_milli, np.array([20_000.0]), starved.memory_mib, starved.popularity
    )
    assert node_fragmentation(free, cpu, mem, starved)[0] == 1800  # not enough CPU: the job cannot run here


def test_cluster_fragmentation_ratio_ignores_dead_nodes():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=2, nvlink_domain=2)
    c.allocate(Job(1, 0, 1, gpu_milli=700), ((0, 0, 700),))
    w = workload((1, FULL_GPU, 1.0))
    assert fragmented_gpus(c, w) == pytest.approx(0.3)
    assert fragmentation_ratio(c, w) == pytest.approx(0.3 / 3.3)
    c.alive[0] = False
    assert fragmented_gpus(c, w) == 0 and fragmentation_ratio(c, w) == 0


def test_seven_free_gpus_are_stranded_for_an_eight_gpu_job():
    c = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8)
    c.allocate(Job(1, 0, 1), ((0, 3, FULL_GPU),))
    assert stranded_gpus(c, [Job(2, 0, 1, num_gpus=8)]) == 7
    assert stranded_ratio(c, [Job(2, 0, 1, num_gpus=8)]) == 1.0
    assert stranded_ratio(c, [Job(2, 0, 1, num_gpus=8), Job(3, 0, 1, num_gpus=2)]) == 0.0
    assert stranded_ratio(c, []) == 0.0  # nothing waits: idle, not stranded


def test_partial_gpus_strand_for_whole_gpu_jobs_only():
    c = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=4, nvlink_domain=4)
    c.allocate(Job(1, 0, 1, gpu_milli=600), ((0, 0, 600),))
    assert stranded_gpus(c, [Job(2, 0, 1)]) == pytest.approx(0.4)
    assert stranded_gpus(c, [Job(2, 0, 1, gpu_milli=300)]) == 0
    assert stranded_ratio(c, [Job(2, 0, 1)]) == pytest.approx(0.4 / 3.4)


def test_reserved_nodes_are_not_stranded():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8)
    c.allocate(Job(1, 0, 1, num_gpus=4), ((0, 0, FULL_GPU), (0, 1, FULL_GPU), (0, 2, FULL_GPU), (0, 3, FULL_GPU)))
    c.allocate(Job(2, 0, 1, num_gpus=7), tuple((1, g, FULL_GPU) for g in range(7)))
    queued = [Job(3, 0, 1, num_gpus=8)]
    assert stranded_gpus(c, queued) == 5
    c.reserved[0] = True
    assert stranded_gpus(c, queued) == 1
    assert stranded_ratio(c, queued) == pytest.approx(1 / 5)


def test_wide_jobs_use_empty_nodes_only_when_enough_exist():
    c = Cluster.build(racks=1, nodes_per_rack=3, gpus_per_node=8)
    c.allocate(Job(1, 0, 1), ((0, 0, FULL_GPU),))
    assert stranded_gpus(c, [Job(2, 0, 1, num_gpus=16)]) == 7
    assert stranded_gpus(c, [Job(2, 0, 1, num_gpus=24)]) == 23


def test_stranded_mask_on_a_hand_made_cluster():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8, nvlink_domain=4)
    c.allocate(Job(1, 0.0, 60.0, num_gpus=7), tuple((0, g, FULL_GPU) for g in range(7)))
    two = Job(2, 0.0, 60.0, num_gpus=2)
    mask = stranded_mask(c, [two])
    assert mask[0, 7] and mask.sum() == 1  # the lone free GPU of node 0 is too small for a 2-GPU job
    assert not stranded_mask(c, [Job(3, 0.0, 60.0, num_gpus=1)]).any()
    wide = Job(4, 0.0, 60.0, num_gpus=16)
    mask = stranded_mask(c, [wide])
    assert mask[0, 7] and mask[1].all() and mask.sum() == 9  # one empty node is not enough for 16 GPUs
    assert not stranded_mask(c, []).any()  # idle is not stranded
