"""Simulated traffic: deterministic per seed, the boundary attack, shared IPs, and the summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab_core.ratelimit import (
    Client,
    FixedWindow,
    Rule,
    RulesEngine,
    SlidingWindowLog,
    TokenBucket,
    behind_one_ip,
    boundary_attacker,
    bursty,
    simulate,
    steady,
)

PER_CLIENT_COLUMNS = ["client", "kind", "offered", "admitted", "rejected", "reject_pct"]
PER_SECOND_COLUMNS = ["t", "client", "offered", "admitted"]
EVENT_COLUMNS = ["t", "client", "kind", "user", "ip", "allowed", "remaining", "rule"]


def mixed_clients(seed: int) -> list[Client]:
    return [
        steady("calm", 3.0, 30, seed=seed),
        bursty("spiky", 6.0, 30, cv=3.0, seed=seed + 1),
        boundary_attacker("edge", 5, 1.0, 30),
    ]


def run_mixed(seed: int, algorithm=TokenBucket):
    return simulate(lambda clock: algorithm(5, 1, clock=clock), mixed_clients(seed), 30)


def test_same_seed_same_run():
    a, b = run_mixed(7), run_mixed(7)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.per_client(), b.per_client())
    pd.testing.assert_frame_equal(a.per_second(), b.per_second())


def test_different_seed_different_run():
    a, b = run_mixed(7), run_mixed(8)
    assert not a.events[["t", "client"]].equals(b.events[["t", "client"]])


def test_engine_runs_are_deterministic_too():
    rules = [Rule("u", "user", 4, 1, algorithm="sliding_window_counter"), Rule("g", "global", 12, 1)]
    clients = mixed_clients(3)

    def once():
        return simulate(lambda clock: RulesEngine(rules, clock=clock), clients, 30).events

    pd.testing.assert_frame_equal(once(), once())


def test_events_table():
    result = run_mixed(1)
    ev = result.events
    assert list(ev.columns) == EVENT_COLUMNS
    assert ev["t"].is_monotonic_increasing
    assert ((ev["t"] >= 0) & (ev["t"] < 30)).all()
    assert set(ev["client"]) == {"calm", "spiky", "edge"}
    assert set(ev["kind"]) == {"steady", "bursty", "boundary"}
    assert ev["allowed"].dtype == bool
    assert ev["rule"].isna().all()  # a bare limiter has no rules
    # each client arrives exactly as generated
    for client in mixed_clients(1):
        np.testing.assert_array_equal(ev.loc[ev["client"] == client.name, "t"].to_numpy(), client.arrivals)


def test_simulate_refuses_bad_duration():
    with pytest.raises(ValueError, match="duration must be > 0"):
        simulate(lambda clock: TokenBucket(1, 1, clock=clock), [], 0)


# --- the boundary attack ---------------------------------------------------------------------

LIMIT, PERIOD, DURATION = 10, 1.0, 20


def attack(algorithm):
    attacker = boundary_attacker("mallory", LIMIT, PERIOD, DURATION)
    return simulate(lambda clock: algorithm(LIMIT, PERIOD, clock=clock), [attacker], DURATION)


def test_boundary_attacker_shape():
    c = boundary_attacker("m", LIMIT, PERIOD, DURATION, spread=0.02)
    assert c.kind == "boundary" and c.user == "m"
    edges = np.arange(PERIOD, DURATION, PERIOD)
    assert len(c.arrivals) == 2 * LIMIT * len(edges)
    nearest = np.abs(c.arrivals[:, None] - edges[None, :]).min(axis=1)
    assert nearest.max() <= 0.02 + 1e-9  # everything within the spread of a window edge
    assert (c.arrivals < DURATION).all() and (np.diff(c.arrivals) >= 0).all()


def test_boundary_attacker_gets_twice_the_limit_through_a_fixed_window():
    result = attack(FixedWindow)
    assert result.max_admitted_in_window(PERIOD) == 2 * LIMIT
    # and per aligned window it never exceeds the limit: the attack exploits only the alignment
    admitted = result.events[result.events["allowed"]]
    per_window = admitted.groupby(np.floor(admitted["t"] / PERIOD)).size()
    assert per_window.max() == LIMIT


def test_sliding_log_holds_the_line():
    result = attack(SlidingWindowLog)
    assert result.max_admitted_in_window(PERIOD) <= LIMIT
    assert result.max_admitted_in_window(PERIOD) == LIMIT  # but it does not starve the client either


# --- many users behind one IP --------------------------------------------------------------------


def office(seed: int = 5):
    return behind_one_ip("emp", 6, 2.0, 30, seed=seed)


def test_behind_one_ip_clients():
    clients = office()
    assert len(clients) == 6
    assert {c.ip for c in clients} == {"203.0.113.7"}
    assert len({c.user for c in clients}) == 6
    assert all(c.kind == "nat" for c in clients)
    assert all(len(c.arrivals) > 30 for c in clients)  # ~2/s for 30 s each


def test_per_ip_rule_limits_the_office_together():
    rules = [
        Rule("per-user", "user", limit=5, period=1, burst=10),
        Rule("per-ip", "ip", limit=6, period=1, algorithm="sliding_window_log"),
    ]
    result = simulate(lambda clock: RulesEngine(rules, clock=clock), office(), 30)
    ev = result.events
    offered = len(ev)  # ~12/s from one address, allowed 6/s
    assert result.max_admitted_in_window(1.0) <= 6
    assert ev["allowed"].sum() <= 6 * 30
    assert ev["allowed"].sum() < 0.7 * offered
    refused = ev[~ev["allowed"]]
    assert set(refused["rule"]) == {"per-ip"}  # nobody exceeded their own limit
    per_client = result.per_client()
    assert (per_client["rejected"] > 0).all()  # everyone behind the NAT pays


def test_per_user_rules_alone_do_not_limit_the_office():
    rules = [Rule("per-user", "user", limit=5, period=1, burst=10)]
    result = simulate(lambda clock: RulesEngine(rules, clock=clock), office(), 30)
    assert result.events["allowed"].all()  # 2/s each, well under 5/s with a burst of 10
    assert result.per_client()["reject_pct"].eq(0).all()


def test_a_bare_limiter_counts_each_user_on_its_own():
    result = simulate(lambda clock: SlidingWindowLog(6, 1, clock=clock), office(), 30)
    # the same traffic that the per-ip rule cut back passes almost entirely per user
    assert result.events["allowed"].mean() > 0.95


# --- summary tables --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [TokenBucket, FixedWindow, SlidingWindowLog])
def test_per_client_table(algorithm):
    result = run_mixed(11, algorithm)
    table = result.per_client()
    assert list(table.columns) == PER_CLIENT_COLUMNS
    ev = result.events
    for row in table.itertuples():
        mine = ev[ev["client"] == row.client]
        assert row.offered == len(mine)
        assert row.admitted == mine["allowed"].sum()
        assert row.rejected == row.offered - row.admitted
        assert row.reject_pct == pytest.approx(100 * row.rejected / row.offered)
    assert table["offered"].sum() == len(ev)
    assert table["admitted"].sum() == ev["allowed"].sum()
    assert table["rejected"].sum() > 0  # these limits bite


@pytest.mark.parametrize("window", [1.0, 2.0, 5.0])
def test_per_second_table_sums_to_the_totals(window: float):
    result = run_mixed(13)
    table = result.per_second(window)
    assert list(table.columns) == PER_SECOND_COLUMNS
    assert (table["admitted"] <= table["offered"]).all()
    assert ((table["t"] > 0) & (table["t"] <= 30)).all()
    # rates are per second over `window`-long buckets: rate * window counts requests
    totals = result.per_client().set_index("client")
    for client, part in table.groupby("client"):
        assert part["offered"].sum() * window == pytest.approx(totals.loc[client, "offered"])
        assert part["admitted"].sum() * window == pytest.approx(totals.loc[client, "admitted"])
        assert part["t"].is_monotonic_increasing and part["t"].is_unique
        assert len(part) == 30 / window


def test_per_second_shows_the_limit():
    result = simulate(lambda clock: FixedWindow(5, 1, clock=clock), [steady("flood", 40.0, 10, seed=2)], 10)
    table = result.per_second(1.0)
    assert (table["admitted"] <= 5).all()
    assert (table["admitted"] == 5).all()  # 40/s offered: every second is full
    assert table["offered"].mean() > 30


@pytest.mark.parametrize("clients", [[], [steady("late", 1.0, 10, seed=1)]], ids=["no-clients", "no-arrivals-yet"])
def test_empty_run_tables(clients):
    """Regression: per_second() raised ValueError when nothing had been recorded."""
    result = simulate(lambda clock: TokenBucket(1, 1, clock=clock), clients, 0.001)
    assert result.events.empty and list(result.events.columns) == EVENT_COLUMNS
    assert result.per_second().empty and list(result.per_second().columns) == PER_SECOND_COLUMNS
    assert result.per_client().empty and list(result.per_client().columns) == PER_CLIENT_COLUMNS
    assert result.max_admitted_in_window(1.0) == 0
