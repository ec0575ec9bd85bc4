"""Arrival processes: seeded, sorted, in range, and statistically what they claim to be."""

import math

import numpy as np
import pytest
import simpy

from lab_core.sim import arrivals, drive

SEEDED = {
    "poisson": lambda seed: arrivals.poisson(50, 10, seed=seed),
    "gamma": lambda seed: arrivals.gamma(50, 10, cv=2.0, seed=seed),
    "on_off": lambda seed: arrivals.on_off(50, 1, 1, 10, rate_off=5, seed=seed),
    "diurnal": lambda seed: arrivals.diurnal(50, 10, period=5, seed=seed),
}


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_streams_reproducible_sorted_and_in_range(name):
    make = SEEDED[name]
    a, b, c = make(1), make(1), make(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(make(None), make(None))
    assert a.dtype == np.float64 and a.ndim == 1 and a.size > 0
    assert np.all(np.diff(a) >= 0)
    assert a.min() >= 0 and a.max() < 10


def test_poisson_mean_rate_and_exponential_gaps():
    rate, duration = 100.0, 100.0
    times = arrivals.poisson(rate, duration, seed=7)
    expected = rate * duration
    assert abs(times.size - expected) < 5 * math.sqrt(expected)
    gaps = np.diff(times)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_rate_and_cv(cv):
    rate, duration = 1000.0, 50.0
    times = arrivals.gamma(rate, duration, cv=cv, seed=3)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)


def test_gamma_cv_zero_is_periodic():
    times = arrivals.gamma(4.0, 3.0, cv=0)
    assert np.allclose(times, np.arange(1, 12) / 4.0)
    assert times.max() < 3.0


def test_on_off_silent_in_off_periods():
    on, off = 2.0, 3.0
    times = arrivals.on_off(50, on, off, 100, seed=5)
    assert np.all(np.mod(times, on + off) < on)
    expected = 50 * on * 20
    assert abs(times.size - expected) < 5 * math.sqrt(expected)


def test_on_off_rate_off_applies_in_off_periods():
    on, off = 1.0, 4.0
    times = arrivals.on_off(100, on, off, 200, rate_off=10, seed=5)
    in_off = times[np.mod(times, on + off) >= on]
    expected = 10 * off * 40
    assert abs(in_off.size - expected) < 5 * math.sqrt(expected)


def test_diurnal_peak_vs_trough():
    mean, period = 1000.0, 100.0
    times = arrivals.diurnal(mean, period, period=period, peak_to_mean=1.5, seed=11)
    peak = np.count_nonzero((times >= 20) & (times < 30))
    trough = np.count_nonzero((times >= 70) & (times < 80))
    # Mean of sin(2*pi*t/100) over [20, 30) is (cos(0.4pi) - cos(0.6pi)) / (0.2pi).
    s = (math.cos(0.4 * math.pi) - math.cos(0.6 * math.pi)) / (0.2 * math.pi)
    expected_ratio = (1 + 0.5 * s) / (1 - 0.5 * s)
    assert peak / trough == pytest.approx(expected_ratio, abs=0.25)
    assert abs(times.size - mean * period) < 5 * math.sqrt(mean * period)


def test_diurnal_phase_moves_the_peak():
    times = arrivals.diurnal(1000, 100, period=100, peak_to_mean=1.5, phase=math.pi, seed=11)
    first_half = np.count_nonzero(times < 50)
    assert first_half < times.size - first_half


def test_uniform_is_evenly_spaced_with_offset():
    times = arrivals.uniform(4, 2, offset=0.1)
    assert np.allclose(times, 0.1 + np.arange(8) / 4)
    assert np.array_equal(arrivals.uniform(10, 1), np.arange(10) / 10)


def test_burst_with_and_without_spread():
    assert np.array_equal(arrivals.burst(5.0, 3), [5.0, 5.0, 5.0])
    assert np.allclose(arrivals.burst(1.0, 4, spread=2.0), [1.0, 1.5, 2.0, 2.5])
    assert arrivals.burst(1.0, 0).size == 0


def test_trace_from_list_sorted_and_cut():
    times = arrivals.trace([3.0, 0.5, 2.0, 9.0], duration=5.0)
    assert np.array_equal(times, [0.5, 2.0, 3.0])


def test_trace_from_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("ts,user\n2.5,a\n0.25,b\n1.0,a\n")
    assert np.array_equal(arrivals.trace(path, column="ts"), [0.25, 1.0, 2.5])
    assert np.array_equal(arrivals.trace(str(path), column="ts", duration=2.0), [0.25, 1.0])


def test_trace_errors(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("ts,user\n2.5,a\nsoon,b\n")
    with pytest.raises(ValueError, match="column 'time'.*columns are"):
        arrivals.trace(path)
    with pytest.raises(ValueError, match="non-numeric.*'soon' at line 3 of"):
        arrivals.trace(path, column="ts")
    with pytest.raises(ValueError, match=r"negative time -1\.0 at index 1"):
        arrivals.trace([1.0, -1.0])
    with pytest.raises(ValueError, match="duration must be > 0"):
        arrivals.trace([1.0], duration=0)


def test_merge_sorts_all_streams():
    merged = arrivals.merge(arrivals.uniform(2, 2), arrivals.burst(0.75, 2), [0.1])
    assert np.array_equal(merged, [0.0, 0.1, 0.5, 0.75, 0.75, 1.0, 1.5])
    assert arrivals.merge().size == 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: arrivals.poisson(0, 10), r"rate must be > 0, got 0"),
        (lambda: arrivals.poisson(1, -1), r"duration must be > 0, got -1"),
        (lambda: arrivals.poisson(float("nan"), 1), r"rate must be finite"),
        (lambda: arrivals.gamma(1, 10, cv=-0.5), r"cv must be >= 0, got -0.5"),
        (lambda: arrivals.on_off(1, 0, 1, 10), r"on must be > 0, got 0"),
        (lambda: arrivals.on_off(1, 1, -1, 10), r"off must be >= 0, got -1"),
        (lambda: arrivals.on_off(1, 1, 1, 10, rate_off=-2), r"rate_off must be >= 0, got -2"),
        (lambda: arrivals.diurnal(-1, 10), r"mean_rate must be > 0, got -1"),
        (lambda: arrivals.diurnal(1, 10, period=0), r"period must be > 0, got 0"),
        (lambda: arrivals.diurnal(1, 10, peak_to_mean=0.5), r"peak_to_mean must be >= 1, got 0.5"),
        (lambda: arrivals.uniform(1, 10, offset=-1), r"offset must be >= 0, got -1"),
        (lambda: arrivals.burst(-1, 3), r"at must be >= 0, got -1"),
        (lambda: arrivals.burst(1, -3), r"count must be an integer >= 0, got -3"),
        (lambda: arrivals.burst(1, 2.5), r"count must be an integer >= 0, got 2.5"),
    ],
)
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_drive_calls_handler_at_env_times():
    env = simpy.Environment()
    calls = []
    drive(env, [2.5, 0.5, 1.0, 1.0], lambda t: calls.append((t, env.now)))
    env.run()
    assert [t for t, _ in calls] == [0.5, 1.0, 1.0, 2.5]
    assert all(now == pytest.approx(t) for t, now in calls)


def test_drive_starts_generator_handlers_without_blocking():
    env = simpy.Environment()
    started, finished = [], []

    def slow_request(t):
        started.append(env.now)
        yield env.timeout(10)
        finished.append(env.now)

    drive(env, [0.0, 1.0, 2.0], slow_request)
    env.run()
    assert started == [0.0, 1.0, 2.0]
    assert finished == [10.0, 11.0, 12.0]


def test_drive_refuses_times_in_the_past():
    env = simpy.Environment()
    env.run(until=5)
    with pytest.raises(ValueError, match="before env.now"):
        drive(env, [1.0, 6.0], lambda t: None)
