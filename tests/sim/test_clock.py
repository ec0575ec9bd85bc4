"""Clocks: manual time moves only forward, sim time follows simpy, real time follows the wall."""

import time

import pytest
import simpy

from lab_core.sim import Clock, ManualClock, RealClock, SimClock


def test_all_clocks_satisfy_protocol():
    env = simpy.Environment()
    for clock in (RealClock(), ManualClock(), SimClock(env)):
        assert isinstance(clock, Clock)


def test_manual_clock_advance_set_and_sleep():
    clock = ManualClock(start=10.0)
    assert clock.now() == 10.0
    assert clock.advance(2.5) == 12.5
    clock.set(20.0)
    assert clock.now() == 20.0
    clock.sleep(1.0)
    assert clock.now() == 21.0


def test_manual_clock_refuses_negative_advance():
    clock = ManualClock()
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        clock.advance(-1.0)
    assert clock.now() == 0.0


def test_manual_clock_refuses_going_back():
    clock = ManualClock(start=5.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(4.0)
    assert clock.now() == 5.0


def test_sim_clock_follows_env_with_offset():
    env = simpy.Environment()
    clock = SimClock(env, start=100.0)
    seen = []

    def proc():
        seen.append(clock.now())
        yield env.timeout(3.0)
        seen.append(clock.now())

    env.process(proc())
    env.run()
    assert seen == [100.0, 103.0]


def test_real_clock_matches_time_time():
    clock = RealClock()
    assert abs(clock.now() - time.time()) < 0.5
    before = clock.now()
    clock.sleep(0.01)
    assert clock.now() - before >= 0.009
