"""Migration cost from a real checkpoint written and read on this machine."""
from __future__ import annotations

import pytest

from lab_core.cluster.calibrate import CheckpointSpeed, measure_checkpoint, migration_seconds


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
