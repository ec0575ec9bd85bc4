"""Failures: a schedule given to the simulation, detection by heartbeats, restarts from checkpoints,
lost GPU-hours counted."""

from __future__ import annotations

import math

import pytest

from lab_core.cluster import Cluster, Failure, HealthConfig, Job, SimConfig, Simulation, detection_tradeoff


def one_job_sim(health: HealthConfig | None, checkpoint: float | None = 100.0, failures=()):
    c = Cluster.build(racks=2, nodes_per_rack=1, gpus_per_node=8)
    job = Job(1, 0, 1000, num_gpus=8, checkpoint_interval=checkpoint)
    sim = Simulation(c, [job], "fifo", "first_fit", SimConfig(health=health, check_invariants=True), failures=failures)
    return sim, job


def test_without_a_detector_a_failure_is_seen_at_once_and_the_job_resumes_from_its_checkpoint():
    sim, job = one_job_sim(None, failures=[Failure(250, node=0)])
    result = sim.run()
    assert job.restarts == 1 and job.end == pytest.approx(250 + 800)
    assert job.lost_gpu_seconds == pytest.approx(50 * 8)
    assert result.summary["lost_gpu_hours"] == pytest.approx(50 * 8 / 3600)
    assert (result.events["event"] == "node lost").sum() == 1


def test_heartbeat_timeout_delays_detection_and_the_wait_is_lost_work():
    sim, job = one_job_sim(HealthConfig(interval=10, timeout=30), failures=[Failure(255, node=0)])
    sim.run()
    table = sim.health.table()
    assert table["real"].tolist() == [True]
    delay = float(table["delay"].iloc[0])
    assert 30 - 10 <= delay <= 30 + 10  # silence for the timeout, noticed at the next tick
    assert job.lost_gpu_seconds == pytest.approx(
        (55 + delay) * 8
    )  # work since the checkpoint + GPUs idle until noticed
    assert job.end == pytest.approx(255 + delay + 800)


def test_job_without_checkpoints_starts_over():
    sim, job = one_job_sim(None, checkpoint=None, failures=[Failure(400, node=0)])
    sim.run()
    assert job.end == pytest.approx(1400) and job.lost_gpu_seconds == pytest.approx(400 * 8)


def test_rack_failure_and_repair():
    c = Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8)
    jobs = [Job(i, 0, 1000, num_gpus=8, checkpoint_interval=100) for i in range(4)]
    sim = Simulation(
        c,
        jobs,
        "fifo",
        "first_fit",
        SimConfig(check_invariants=True),
        failures=[Failure(100, rack=0, repair_after=500)],
    )
    result = sim.run()
    assert sorted(result.jobs[result.jobs["restarts"] > 0]["id"]) == [0, 1]
    assert (result.events["event"] == "node back").sum() == 2
    assert result.jobs["end"].max() == pytest.approx(600 + 900)  # restarted on the repaired rack
    with pytest.raises(ValueError, match="no rack 7"):
        sim.fail_rack(7)
    with pytest.raises(ValueError, match="no node 99"):
        sim.fail_nodes([99])


def test_failures_given_now_and_injected_later_are_the_same_run():
    c = Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8)

    def jobs():
        return [Job(i, 10 * i, 1000, num_gpus=4, checkpoint_interval=100) for i in range(8)]

    given = Simulation(
        c, jobs(), "easy_backfill", "best_fit", failures=[Failure(150, node=1, repair_after=300), Failure(600, rack=1)]
    ).run()
    later = Simulation(Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8), jobs(), "easy_backfill", "best_fit")
    later.env.timeout(150).callbacks.append(lambda _e: later.fail_nodes([1], repair_after=300))
    later.env.timeout(600).callbacks.append(lambda _e: later.fail_rack(1))
    injected = later.run()
    assert given.jobs.equals(injected.jobs) and given.events.equals(injected.events)
    assert given.summary["restarts"] > 0 and (given.events["event"] == "node back").sum() == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"at": 1.0}, "exactly one of node or rack"),
        ({"at": 1.0, "node": 0, "rack": 0}, "exactly one of node or rack"),
        ({"at": -1.0, "node": 0}, "at must be"),
        ({"at": 1.0, "node": 0, "repair_after": 0.0}, "repair_after must be"),
    ],
)
def test_a_failure_is_checked_when_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Failure(**kwargs)


@pytest.mark.parametrize("failure, message", [(Failure(5.0, node=4), "no node 4"), (Failure(5.0, rack=2), "no rack 2")])
def test_a_failure_outside_the_cluster_is_refused_before_the_run(failure, message):
    with pytest.raises(ValueError, match=message):
        Simulation(Cluster.build(racks=2, nodes_per_rack=2), [], failures=[failure])


def test_lost_heartbeats_cause_false_positives_that_a_longer_timeout_avoids():
    table = detection_tradeoff([10, 30, 60], interval=10, loss=0.1, nodes=16, hours=4, failures=6, seed=1)
    # A failure on a node already (wrongly) declared dead is never "detected": it was out of service.
    assert table["detected"].tolist()[1:] == [6, 6] and 4 <= table["detected"].iloc[0] <= 6
    fp = table["false_positives_per_node_day"].tolist()
    assert fp[0] > fp[1] > fp[2] == 0
    delays = table["mean_detection_delay"].tolist()
    assert delays[0] < delays[1] < delays[2] and all(math.isfinite(d) for d in delays)


@pytest.mark.parametrize(
    "kwargs, word", [({"interval": 0}, "interval"), ({"timeout": 5}, "timeout"), ({"loss": 1.0}, "loss")]
)
def test_health_config_is_checked(kwargs, word):
    with pytest.raises(ValueError, match=word):
        HealthConfig(**kwargs)
