"""Cluster bookkeeping: allocations are checked, released exactly, and never double-book a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from lab_core.cluster import FULL_GPU, Cluster, Job, JobError, NodeSpec, PlacementError


def small() -> Cluster:
    return Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=4, nvlink_domain=2)


def test_build_shapes_topology():
    c = Cluster.build(racks=2, nodes_per_rack=3, gpus_per_node=8, nvlink_domain=4)
    assert c.num_nodes == 6 and c.total_gpus == 48
    assert c.rack.tolist() == [0, 0, 0, 1, 1, 1]
    assert c.domain[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert c.free_gpus() == 48 and c.utilisation() == 0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"racks": 0}, "racks"),
        ({"gpus_per_node": 8, "nvlink_domain": 3}, "nvlink_domain"),
        ({"gpu_type": "Z9"}, "gpu_type"),
    ],
)
def test_build_rejects_bad_shapes(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Cluster.build(**kwargs)


def test_allocate_and_release_restore_everything():
    c = small()
    before = c.free.copy(), c.cpu_free.copy()
    job = Job(1, 0, 10, num_gpus=2, cpu_milli=500)
    c.allocate(job, ((0, 0, FULL_GPU), (0, 1, FULL_GPU)))
    assert c.allocated_gpus() == 2 and c.cpu_free[0] == before[1][0] - 500
    assert c.owners()[0].tolist() == [1, 1, -1, -1]
    c.release(1)
    assert (c.free == before[0]).all() and (c.cpu_free == before[1]).all() and not c.invariant_errors()


def test_fractional_jobs_share_a_gpu_up_to_its_capacity():
    c = small()
    c.allocate(Job(1, 0, 10, gpu_milli=600), ((0, 0, 600),))
    c.allocate(Job(2, 0, 10, gpu_milli=400), ((0, 0, 400),))
    with pytest.raises(PlacementError, match="double-booked"):
        c.allocate(Job(3, 0, 10, gpu_milli=100), ((0, 0, 100),))
    assert c.free[0, 0] == 0 and not c.invariant_errors()


@pytest.mark.parametrize(
    "job, placement, word",
    [
        (Job(5, 0, 1, num_gpus=2), ((0, 0, FULL_GPU),), "asks for 2"),
        (Job(5, 0, 1, num_gpus=2), ((0, 0, FULL_GPU), (0, 0, FULL_GPU)), "listed twice"),
        (Job(5, 0, 1), ((0, 9, FULL_GPU),), "no GPU 9"),
        (Job(5, 0, 1), ((0, 0, 500),), "milli"),
        (Job(5, 0, 1, num_gpus=2), ((0, 0, FULL_GPU), (1, 0, FULL_GPU)), "split"),
        (Job(5, 0, 1, gpu_type="A100"), ((0, 0, FULL_GPU),), "A100"),
    ],
)
def test_check_names_what_is_wrong(job, placement, word):
    c = small()
    with pytest.raises(PlacementError, match=word):
        c.allocate(job, placement)
    assert c.free_gpus() == 8 and not c.allocations


def test_busy_and_dead_gpus_are_refused():
    c = small()
    c.allocate(Job(1, 0, 10), ((0, 0, FULL_GPU),))
    with pytest.raises(PlacementError, match="double-booked"):
        c.allocate(Job(2, 0, 10), ((0, 0, FULL_GPU),))
    c.alive[1] = False
    with pytest.raises(PlacementError, match="down"):
        c.allocate(Job(3, 0, 10), ((1, 0, FULL_GPU),))
    assert c.free_gpus() == 3  # node 1 is down, node 0 has one GPU busy


def test_cpu_only_job_takes_cpu_not_gpu():
    c = small()
    c.allocate(Job(1, 0, 10, num_gpus=0, cpu_milli=1000), ((1, -1, 0),))
    assert c.cpu_free[1] == c.cpu_total[1] - 1000 and c.free_gpus() == 8
    c.release(1)
    assert c.cpu_free[1] == c.cpu_total[1]


def test_heterogeneous_nodes_pad_missing_slots():
    c = Cluster([NodeSpec("a", 0, "T4", 2, 2, 1000, 1000), NodeSpec("b", 0, "H100", 8, 4, 1000, 1000)])
    assert c.total_gpus == 10 and c.exists[0].tolist() == [True, True] + [False] * 6
    assert c.free_gpus() == 10
    assert c.fits(Job(1, 0, 1, num_gpus=4)).tolist() == [False, True]
    assert c.fits(Job(1, 0, 1, gpu_type="T4")).tolist() == [True, False]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"duration": -1}, "duration"),
        ({"duration": float("nan")}, "duration"),
        ({"num_gpus": 2, "gpu_milli": 500}, "whole GPUs"),
        ({"gpu_milli": 1500}, "gpu_milli"),
        ({"num_gpus": -1}, "num_gpus"),
        ({"tenant": ""}, "tenant"),
        ({"checkpoint_interval": 0}, "checkpoint_interval"),
    ],
)
def test_bad_jobs_are_named(kwargs, word):
    args = {"id": 1, "submit": 0.0, "duration": 10.0, **kwargs}
    with pytest.raises(JobError, match=word):
        Job(**args)


def test_checkpoint_keeps_whole_intervals_only():
    job = Job(1, 0, 100, checkpoint_interval=30)
    assert job.kept_progress(89) == 60 and job.kept_progress(29) == 0
    assert Job(2, 0, 100).kept_progress(99) == 0
    assert np.isclose(Job(3, 0, 100, gpu_milli=250).gpus, 0.25)
