"""The simulator as an API user meets it: validation, live submission, cancel, samples and progress."""

from __future__ import annotations

import pytest

from lab_core.cluster import Cluster, Job, JobError, SimConfig, Simulation, State, synthetic
from lab_core.cluster.simulator import per_tenant


def sim_with(jobs=(), **kwargs) -> Simulation:
    return Simulation(Cluster.build(racks=1, nodes_per_rack=2), jobs, "easy_backfill", "best_fit", SimConfig(**kwargs))


@pytest.mark.parametrize(
    "job, word",
    [
        (Job(1, 0, 10, num_gpus=17), "the cluster has 16"),
        (Job(1, 0, 10, gpu_type="T4"), "gpu_type"),
        (Job(1, 0, 10, num_gpus=12), "multiple of 8"),
        (Job(1, 0, 10, cpu_milli=10**9), "milli-CPU"),
    ],
)
def test_jobs_that_can_never_run_are_rejected_at_submission(job, word):
    sim = sim_with([Job(7, 0, 10)])
    with pytest.raises(JobError, match=word):
        sim.submit(job)
    with pytest.raises(JobError, match=word):
        sim_with([job])
    sim.run()
    assert list(sim.jobs) == [7] and sim.jobs[7].state.value == "done"  # what was there is untouched


def test_duplicate_ids_are_rejected():
    with pytest.raises(JobError, match="already taken"):
        sim_with([Job(1, 0, 10), Job(1, 5, 10)])


def test_live_submission_step_and_cancel():
    sim = sim_with()
    a = sim.submit(Job(sim.next_id(), 0, 100, num_gpus=8))
    b = sim.submit(Job(sim.next_id(), 0, 100, num_gpus=16))
    sim.step(1)
    assert a.state is State.RUNNING and b.state is State.QUEUED
    sim.cancel(a.id)
    sim.step(1)
    assert a.state is State.CANCELLED and b.state is State.RUNNING
    with pytest.raises(JobError, match="already cancelled"):
        sim.cancel(a.id)
    sim.step(200)
    assert b.state is State.DONE and b.end == pytest.approx(101)


def test_samples_and_progress():
    seen = []
    result = Simulation(Cluster.build(), synthetic(100, seed=4), "fifo", "best_fit", SimConfig(sample_every=600)).run(
        progress=lambda done, total, label: seen.append((done, total, label))
    )
    done = [d for d, _, _ in seen]
    assert len(seen) > 2 and done == sorted(done) and {t for _, t, _ in seen} == {100}
    assert seen[-1] == (100, 100, "done") and all(d < 100 for d in done[:-1])  # full only once finished
    s = result.samples
    assert {"t", "utilisation", "fragmentation", "stranded", "queue", "running", "free_gpus"} <= set(s.columns)
    assert (s["t"].diff().dropna() == 600).all()
    assert s["utilisation"].between(0, 1).all() and s["stranded"].between(0, 1).all()
    assert result.summary["done"] == 100 and 0 < result.summary["utilisation"] <= 1
    jct = result.recorder.latency_table(by="kind").set_index("kind")
    assert jct.loc["jct", "count"] == 100 and jct.loc["jct", "mean"] == pytest.approx(result.summary["mean_jct"])


def test_per_tenant_table_and_fairness():
    jobs = [
        Job(1, 0, 100, num_gpus=8, tenant="a"),
        Job(2, 0, 100, num_gpus=8, tenant="b"),
        Job(3, 0, 100, num_gpus=8, tenant="b"),
    ]
    result = Simulation(Cluster.build(racks=1, nodes_per_rack=1), jobs, "fifo", "best_fit").run()
    table = per_tenant(result.jobs).set_index("tenant")
    assert table.loc["a", "mean_slowdown"] == 1 and table.loc["b", "mean_slowdown"] == pytest.approx((2 + 3) / 2)
    assert table["share"].tolist() == pytest.approx([1 / 3, 2 / 3])
    expected = (1 + 2.5) ** 2 / (2 * (1 + 2.5**2))
    assert result.summary["fairness"] == pytest.approx(expected)


def test_run_is_watched_step_by_step_and_says_why_it_stopped():
    jobs = synthetic(30, seed=2)
    span = max(j.submit + j.duration for j in jobs)
    seen = []
    result = Simulation(Cluster.build(racks=1, nodes_per_rack=2), jobs, "fifo", "best_fit").run(
        steps=10, observe=lambda sim: seen.append(sim.env.now)
    )
    assert result.stopped is None and result.summary["done"] == 30
    assert seen[0] == 0 and seen[1] == pytest.approx(span / 10) and seen == sorted(seen) and len(seen) >= 11
    idle = Simulation(Cluster.build(racks=1, nodes_per_rack=2), synthetic(5, seed=2), lambda view: None).run(
        give_up_after=3
    )
    assert "5 jobs still waiting" in idle.stopped and idle.summary["done"] == 0
    slow = Simulation(Cluster.build(racks=1, nodes_per_rack=2), synthetic(30, seed=2), "fifo").run(max_wall_seconds=0)
    assert "of computing" in slow.stopped and slow.summary["done"] < 30


def test_a_run_to_a_time_goes_past_the_last_job():
    sim = Simulation(Cluster.build(racks=1, nodes_per_rack=1), [Job(1, 0, 100, num_gpus=1)], "fifo")
    result = sim.run(until=5000)
    assert sim.env.now == 5000 and result.summary["done"] == 1 and result.stopped is None


def test_utilisation_while_jobs_arrive_is_not_diluted_by_the_drain():
    # Four 1-GPU jobs fill the 4-GPU node while jobs arrive (t <= 500); the last one then runs alone to t = 101,000.
    jobs = [Job(i, 0, 1_000, num_gpus=1) for i in range(4)] + [Job(4, 500, 100_000, num_gpus=1)]
    cluster = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=4, nvlink_domain=4)
    result = Simulation(cluster, jobs, "fifo", config=SimConfig(sample_every=50)).run()
    s = result.samples
    assert result.summary["arrival_utilisation"] == pytest.approx(s.loc[s["t"] <= 500, "utilisation"].mean())
    assert result.summary["arrival_utilisation"] > 0.9  # all but the sample at t = 0, before the first pass
    assert result.summary["utilisation"] == pytest.approx((4 * 1_000 + 100_000) / (4 * 101_000))
