"""Migration cost from a real checkpoint written and read on this machine: the model, its validation
against a real torch job, and the simulator charging the measured cost."""

from __future__ import annotations

import pytest

from lab_core.cluster import Cluster, Job, SimConfig, Simulation
from lab_core.cluster.calibrate import (
    REFERENCE_GPUS,
    REFERENCE_PARAMS,
    CheckpointSpeed,
    measure_checkpoint,
    measured_migration_seconds,
    migration_seconds,
)
from lab_core.sim.calibration import COLUMNS


def test_measured_checkpoint_speed_is_plausible(tmp_path):
    speed = measure_checkpoint(size_mb=8, repeats=1, folder=str(tmp_path))
    assert speed.size_bytes == 8 * 2**20
    assert 1e6 < speed.write_bps < 1e11 and 1e6 < speed.read_bps < 1e11
    assert not list(tmp_path.iterdir())  # the checkpoint is cleaned up


def test_migration_time_scales_with_the_shard():
    speed = CheckpointSpeed(write_bps=1e9, read_bps=2e9, size_bytes=1)
    one = migration_seconds(1e9, 1, speed, restart_seconds=0)
    assert one == pytest.approx(14e9 / 1e9 + 14e9 / 2e9)
    assert migration_seconds(8e9, 8, speed, restart_seconds=0) == pytest.approx(one)  # 8x the model on 8x the ranks
    assert migration_seconds(1e9, 1, speed) == pytest.approx(one + 30)
    with pytest.raises(ValueError, match="gpus"):
        migration_seconds(1e9, 0, speed)


def test_the_simulator_charges_the_measured_migration_cost():
    cost = measured_migration_seconds()
    assert cost == measured_migration_seconds()  # measured once per process
    # The reference job's shard at any plausible disk speed, plus the restart.
    shard = REFERENCE_PARAMS * 14 / REFERENCE_GPUS
    assert 30 + 2 * shard / 1e11 < cost < 30 + 2 * shard / 1e6
    c = Cluster.build(racks=1, nodes_per_rack=2, gpus_per_node=8)
    # As in the defrag test: a move is needed so the 8-GPU job fits.
    jobs = [
        Job(1, 0, 10_000, num_gpus=4),
        Job(2, 0, 10, num_gpus=4),
        Job(3, 1, 10_000, num_gpus=4),
        Job(5, 20, 100, num_gpus=8),
    ]
    sim = Simulation(c, jobs, "defrag", "first_fit", SimConfig(check_invariants=True))
    assert sim.migration_seconds() == cost
    result = sim.run()
    moves = result.events[result.events["event"] == "migrated"]
    assert len(moves) >= 1
    gpus = result.jobs.set_index("id").loc[moves["job"].astype(int), "gpus"].to_numpy()
    assert moves["lost_gpu_hours"].to_numpy() == pytest.approx(cost * gpus / 3600)
    assert Simulation(c, [], config=SimConfig(migration_seconds=60)).migration_seconds() == 60  # a given cost wins


@pytest.mark.timed
def test_the_migration_model_predicts_a_real_torch_jobs_checkpoint_and_restore(tmp_path):
    from lab_core.cluster.validate import validate

    table = validate((1e6, 4e6), calibrate_mb=16, repeats=5, folder=str(tmp_path))
    assert tuple(table.columns) == COLUMNS and len(table) == 4
    size = table[table["unit"] == "MB"]
    seconds = table[table["unit"] == "s"]
    # 12 bytes per parameter (fp32 weights, Adam's two moments): the checkpoint's size to within 1 %.
    assert (size["rel_error"].abs() < 0.01).all(), size
    # Disk timings on a shared machine are noisy (page cache, fsync): within a factor of two.
    assert (seconds["measured"] > 0).all() and (seconds["rel_error"].abs() < 1.0).all(), seconds
    assert not list(tmp_path.iterdir())
