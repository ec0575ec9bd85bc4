"""Measure small, simulate large: the calibrated simulator against the real feed on the same workload.

``lab_core.feed.calibrate`` fits the simulator's ``CostModel`` from timings of the real system
(``publish`` + ``FanoutWorker`` + ``FeedService.read``) on one 300-user graph, then replays another
graph's simulated workload through both. The fan-out writes per post are a count and must match
exactly. The simulator's mean fan-out time per pushed post and mean read time must be within
**50 %** of the real system's (TOLERANCE). How the test stays robust on a shared 2-core machine,
where other jobs can slow one pass by tens of percent: each real time is the median of three
passes; each held-out graph is validated right after its own calibration, so a change in load
hits both sides; the test takes the median ratio over three held-out graphs; and when other jobs
still skew that, the whole measurement is repeated (at most three attempts). On a quiet machine
the errors are a few percent to ~30 % (``docs/labs/03_feed.md``), so 50 % leaves room for noise
while still catching a model that is off by a factor (the uncalibrated defaults put the cost per
pushed follower at 10 us against ~40-60 us measured on real Redis).
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from conftest import need
from lab_core.feed.calibrate import (
    FANOUT_TIME,
    ONE_PIPELINE,
    READ_TIME,
    WRITES_PER_POST,
    RealRun,
    Validation,
    calibrated_cost_model,
    fit,
    measure,
    validate,
)
from lab_core.feed.simulate import CostModel
from lab_core.sim.calibration import COLUMNS

# The simulator against timings of the real system: run alone, not beside another worker.
pytestmark = pytest.mark.timed

TOLERANCE = 0.50  # relative error allowed on mean fan-out and read time
HELD_OUT_SEEDS = (12, 13, 14)
ATTEMPTS = 3  # full re-measurements allowed when the machine's load shifts mid-test


@pytest.fixture(autouse=True)
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # url=None must mean fakeredis


def test_simulator_predicts_real_fanout_writes_per_post_exactly_on_fakeredis():
    table = validate(CostModel(), None, posts=120, reads=60, repeats=1, seed=12).table()
    real, sim = table.attrs["real_writes"], table.attrs["sim_writes"]
    assert real.size == sim.size > 50
    assert real.sum() > 0 and (real == 0).any()  # pushed posts and pulled/no-follower posts
    np.testing.assert_array_equal(real, sim)
    assert table.set_index("metric").loc[WRITES_PER_POST, "rel_error"] == 0


def test_validation_table_is_the_shared_one():
    v = Validation(
        real_writes=np.array([0, 4, 8]),
        sim_writes=np.array([0, 4, 8]),
        real_fanout_mean=2e-3,
        sim_fanout_mean=3e-3,
        real_read_mean=1e-3,
        sim_read_mean=0.5e-3,
    )
    table = v.table()
    assert list(table.columns) == list(COLUMNS)
    by = table.set_index("metric")
    assert by.loc[WRITES_PER_POST, ["unit", "measured", "predicted", "rel_error"]].tolist() == ["writes/post", 4, 4, 0]
    assert by.loc[FANOUT_TIME, "unit"] == by.loc[READ_TIME, "unit"] == "ms"
    assert by.loc[FANOUT_TIME, ["measured", "predicted"]].tolist() == pytest.approx([2.0, 3.0])
    assert 1 + by.loc[FANOUT_TIME, "rel_error"] == pytest.approx(v.fanout_ratio)
    assert 1 + by.loc[READ_TIME, "rel_error"] == pytest.approx(v.read_ratio)
    np.testing.assert_array_equal(table.attrs["real_writes"], v.real_writes)


def test_fit_recovers_known_costs():
    g = np.random.default_rng(0)
    n = g.integers(1, 200, size=80)
    pulled = g.integers(0, 6, size=120)
    run = RealRun(
        followers=n,
        fanout_writes=n,
        fanout_time=300e-6 + 20e-6 * n,
        post_write=np.full(80, 150e-6),
        pulled=pulled,
        read_time=400e-6 + 100e-6 * (pulled > 0) + 25e-6 * pulled,
        celebrity=np.zeros(80, dtype=bool),
    )
    cal = fit(run)
    assert cal.fanout_overhead == pytest.approx(300e-6) and cal.zadd == pytest.approx(20e-6)
    assert cal.timeline_read == pytest.approx(400e-6)
    assert cal.pull_round_trip == pytest.approx(100e-6) and cal.celebrity_pull == pytest.approx(25e-6)
    assert cal.post_write == pytest.approx(150e-6)
    model = cal.cost_model()
    assert model.fanout_batch == ONE_PIPELINE and model.fanout_workers == 1 and model.read_workers == 1
    assert model.batch_time(100) == pytest.approx(300e-6 + 100 * 20e-6)


def _time_ratios(url) -> tuple[float, float, list[float], list[float]]:
    """Median over the held-out graphs of simulated / real mean fan-out time and read time."""
    fanout, read = [], []
    for seed in HELD_OUT_SEEDS:
        # Calibrate (on graph 11) right before each validation, so a change in the machine's load
        # hits both sides of the comparison alike.
        cost = measure(url).cost_model()
        assert cost.zadd > 0 and cost.fanout_batch_overhead > 0 and cost.timeline_read > 0
        table = validate(cost, url, seed=seed).table()
        np.testing.assert_array_equal(table.attrs["real_writes"], table.attrs["sim_writes"])  # a count: exact
        errors = table.set_index("metric")["rel_error"]  # simulated / real - 1
        fanout.append(1 + errors[FANOUT_TIME])
        read.append(1 + errors[READ_TIME])
    return statistics.median(fanout), statistics.median(read), fanout, read


def _check_times(url) -> None:
    # Other jobs on a shared machine can slow the calibration and not the validation (or the
    # reverse) for seconds at a time; a model that is really off fails every attempt.
    for _ in range(ATTEMPTS):
        f, r, fanout, read = _time_ratios(url)
        if abs(f - 1) <= TOLERANCE and abs(r - 1) <= TOLERANCE:
            break
    assert abs(f - 1) <= TOLERANCE, f"simulated / real mean fan-out time: {fanout} (median {f:.2f})"
    assert abs(r - 1) <= TOLERANCE, f"simulated / real mean read time: {read} (median {r:.2f})"


@pytest.mark.slow
def test_calibrated_simulator_predicts_fakeredis_times():
    _check_times(None)


@pytest.mark.slow
@pytest.mark.redis_server
def test_calibrated_simulator_predicts_real_redis_times(redis_server):
    need("redis-server", "the calibration times the feed on a real redis-server")
    _check_times(redis_server)


@pytest.mark.redis_server
def test_calibrated_cost_model_measures_the_real_server(redis_server):
    cost = calibrated_cost_model(redis_server, posts=60, reads=60, repeats=1)
    assert isinstance(cost, CostModel)
    assert cost != CostModel()  # measured, not the assumed defaults
    assert 0 < cost.zadd < 1e-3 and 0 < cost.timeline_read < 0.05 and 0 < cost.post_write < 0.05
