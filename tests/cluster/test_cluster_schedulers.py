"""Queue policies on generated workloads: invariants that must always hold, and each policy's point."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab_core.cluster import SCHEDULERS, Cluster, Job, SimConfig, Simulation, synthetic

CHECKED = SimConfig(check_invariants=True)


def run(jobs, scheduler, placer="best_fit", cluster=None, **config):
    sim = Simulation(
        cluster or Cluster.build(racks=2, nodes_per_rack=2),
        jobs,
        scheduler,
        placer,
        SimConfig(check_invariants=True, **config),
    )
    return sim, sim.run()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    st.sampled_from(sorted(SCHEDULERS)),
    st.sampled_from(["first_fit", "best_fit", "topology"]),
    st.sampled_from(["published", "heavy8", "sharing"]),
    st.integers(0, 10_000),
)
def test_every_policy_finishes_every_job_without_double_booking(scheduler, placer, mix, seed):
    jobs = synthetic(80, rate=1 / 120, mix=mix, seed=seed, priorities=3, max_gpus=16)
    sim, result = run(jobs, scheduler, placer)
    assert (result.jobs["state"] == "done").all()
    assert (result.jobs["start"] >= result.jobs["submit"] - 1e-9).all()
    assert (result.jobs["end"] - result.jobs["start"] >= result.jobs["duration"] - 1e-6).all()
    assert not sim.cluster.allocations and sim.cluster.free_gpus() == sim.cluster.total_gpus


@pytest.mark.parametrize("scheduler", ["easy_backfill", "conservative_backfill", "reservation"])
@pytest.mark.parametrize("seed", range(4))
def test_backfill_never_delays_the_reserved_head(scheduler, seed):
    _, result = run(synthetic(150, rate=1 / 60, mix="heavy8", seed=seed), scheduler)
    promised = result.jobs.dropna(subset=["reserved_start"])
    assert len(promised) > 0  # the workload does make heads wait
    assert (promised["start"] <= promised["reserved_start"] + 1e-6).all()


def test_fifo_starts_jobs_in_submission_order():
    _, result = run(synthetic(150, rate=1 / 60, mix="heavy8", seed=1), "fifo")
    starts = result.jobs.sort_values("submit")["start"].to_numpy()
    assert (starts[1:] >= starts[:-1] - 1e-9).all()


def test_backfill_beats_fifo_on_a_queue_of_big_jobs():
    def jobs():
        return synthetic(200, rate=1 / 60, mix="heavy8", seed=2)

    _, fifo = run(jobs(), "fifo")
    _, easy = run(jobs(), "easy_backfill")
    assert easy.summary["mean_jct"] < fifo.summary["mean_jct"]
    assert easy.summary["utilisation"] > fifo.summary["utilisation"]


def test_greedy_starves_the_big_job_that_reservation_protects():
    one_node = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8)

    def stream():
        jobs = [Job(0, 0, 100, num_gpus=1)]
        jobs += [Job(1, 1, 100, num_gpus=8)]
        jobs += [Job(i, 2 + 20 * (i - 2), 100, num_gpus=1) for i in range(2, 60)]  # always ~5 running
        return jobs

    _, greedy = run(stream(), "greedy", cluster=one_node)
    _, reserve = run(stream(), "reservation", cluster=Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8))

    def wait(r):
        return float(r.jobs.set_index("id").loc[1, "wait"])

    assert wait(reserve) == pytest.approx(99)  # starts when job 0 ends
    assert wait(greedy) > 10 * wait(reserve)


def test_priority_preempts_and_the_victim_resumes_from_its_checkpoint():
    c = Cluster.build(racks=1, nodes_per_rack=1, gpus_per_node=8)
    low = Job(1, 0, 1000, num_gpus=8, priority=0, checkpoint_interval=100)
    high = Job(2, 250, 100, num_gpus=4, priority=5)
    sim, result = run([low, high], "priority", cluster=c)
    jobs = result.jobs.set_index("id")
    assert jobs.loc[2, "wait"] == 0 and jobs.loc[1, "restarts"] == 1
    assert jobs.loc[1, "lost_gpu_hours"] == pytest.approx(50 * 8 / 3600)  # 250 s worked, 200 s checkpointed
    assert jobs.loc[1, "end"] == pytest.approx(350 + 800)  # resumes after the high-priority job, 800 s left


def test_defrag_migrates_small_jobs_so_the_head_fits():
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8)
    # 1 and 2 fill node 0, 3 lands on node 1; when 2 ends each node has 4 free GPUs: 8 in all, none whole
    jobs = [Job(1, 0, 10_000, num_gpus=4), Job(2, 0, 10, num_gpus=4), Job(3, 1, 10_000, num_gpus=4)]
    jobs.append(Job(5, 20, 100, num_gpus=8))
    sim, result = run(jobs, "defrag", placer="first_fit", cluster=c, migration_seconds=60)
    table = result.jobs.set_index("id")
    assert table.loc[5, "wait"] < 100 and table["migrations"].sum() >= 1
    _, fifo = run(
        [Job(j.id, j.submit, j.duration, num_gpus=j.num_gpus) for j in jobs],
        "fifo",
        placer="first_fit",
        cluster=Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8),
    )
    assert fifo.jobs.set_index("id").loc[5, "wait"] > 9000
    moved = table[table["migrations"] > 0]
    assert (moved["end"] - moved["start"] >= moved["duration"] + 60 - 1e-6).all()  # the move cost time


def test_gang_jobs_start_all_at_once_on_whole_nodes():
    c = Cluster.build(racks=2, nodes_per_rack=2, gpus_per_node=8)
    jobs = [Job(1, 0, 500, num_gpus=1), Job(2, 1, 500, num_gpus=32), Job(3, 2, 100, num_gpus=1)]
    sim, result = run(jobs, "easy_backfill", cluster=c)
    t = result.jobs.set_index("id")
    assert t.loc[2, "start"] == pytest.approx(500)  # all four nodes are whole only after job 1 ends
    assert t.loc[3, "start"] == pytest.approx(2)  # backfilled: it ends before the reservation


def test_conservative_protects_every_reservation_easy_only_the_head():
    def jobs():
        return [
            Job(1, 0, 100, num_gpus=8),  # fills node 0 until 100
            Job(2, 0, 150, num_gpus=4),  # half of node 1 until 150
            Job(3, 1, 100, num_gpus=8),  # the head: node 0 at 100
            Job(4, 2, 100, num_gpus=8),  # next: node 1 at 150 (conservative reserves it)
            Job(5, 3, 500, num_gpus=4),  # fits on node 1 now, for 500 s
        ]

    def starts(scheduler):
        _, result = run(jobs(), scheduler, placer="first_fit", cluster=Cluster.build(racks=1, nodes_per_rack=2))
        return result.jobs.set_index("id")["start"]

    easy, cons = starts("easy_backfill"), starts("conservative_backfill")
    assert easy[3] == cons[3] == 100
    assert easy[5] == 3 and easy[4] == 200  # EASY backfills job 5, which pushes job 4 back to node 0 after the head
    assert cons[4] == 150 and cons[5] > 3  # conservative keeps node 1 for job 4


def test_easy_backfills_onto_the_reserved_node_what_reservation_keeps_off():
    def jobs():
        return [
            Job(1, 0, 100, num_gpus=4),  # half the only node until 100
            Job(2, 1, 100, num_gpus=8),  # the head: the node at 100
            Job(3, 2, 50, num_gpus=2),  # fits now and ends at 52, before the head's start
            Job(4, 3, 500, num_gpus=2),  # fits now but would run past 100
        ]

    def starts(scheduler):
        _, result = run(jobs(), scheduler, cluster=Cluster.build(racks=1, nodes_per_rack=1))
        return result.jobs.set_index("id")["start"]

    easy, held = starts("easy_backfill"), starts("reservation")
    assert easy[3] == 2 and easy[2] == 100 and easy[4] == 200
    assert held[3] == 200 and held[2] == 100  # the reserved node takes nothing new
