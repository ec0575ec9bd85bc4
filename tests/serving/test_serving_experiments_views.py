"""What the serving dashboard's fleet tab draws, prepared as data in ``lab_core.serving.experiments``: the
captions and headline in words, the badges, the latency axes, the time series, the plan's pools, the
sweeps behind the buttons, and a default view that meets every target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab_core.serving import experiments as ex
from lab_core.serving.blocks import BlockManager
from lab_core.serving.fleet import SLA, FleetConfig, Workload
from lab_core.serving.scheduler import Scheduler
from widgets.serving import ServingDashboard, dashboard

KNOBS = {
    "rate": 40.0,
    "duration": 5.0,
    "burstiness": 1.0,
    "concurrency": 0,
    "seed": 1,
    "token_budget": 8192,
    "block_size": 16,
    "chunked_prefill": True,
    "policy": "fcfs",
}


@pytest.fixture(scope="module")
def run() -> ex.FleetRun:
    return ex.fleet_run("8B", "H100", 0, 2, sla=SLA(), **KNOBS)


def test_fleet_run_takes_the_dashboards_settings(run: ex.FleetRun) -> None:
    assert run.config.decode_gpus == 2 and run.config.prefill_gpus == 0 and run.config.token_budget == 8192
    assert run.workload == Workload(rate=40.0, duration=5.0, cv=1.0, concurrency=None, seed=1)
    closed = ex.fleet_run("8B", "H100", 0, 2, **{**KNOBS, "concurrency": 16})
    assert closed.workload.concurrency == 16 and closed.offered_rate == closed.summary["requests"] / 5.0
    rounded = ex.fleet_run("70B", "H100", 0, 3, **KNOBS)
    assert rounded.config.decode_gpus % rounded.config.tp == 0 and "rounded up" in rounded.note


def test_setting_and_headline_name_the_fleet_traffic_and_numbers(run: ex.FleetRun) -> None:
    assert ex.fleet_setting(run, "8B", "H100") == (
        "8B on 2 colocated H100s (tp 1), budget 8192, block 16, chunked prefill on, fcfs, cv 1, 40 req/s"
    )
    split = ex.fleet_run("8B", "H100", 1, 2, **{**KNOBS, "policy": "priority", "chunked_prefill": False})
    assert "on 1 prefill + 2 decode H100s" in ex.fleet_setting(split, "8B", "H100")
    assert "chunked prefill off, paid-first, aged" in ex.fleet_setting(split, "8B", "H100")
    text = ex.fleet_headline(run, "H100")
    s = run.summary
    assert text.startswith("**Llama-3-8B** on 2 colocated GPUs (H100, tp 1), 40 req/s (burstiness 1) for 5 s:")
    assert f"{s['requests']:.0f} requests" in text and f"peak KV use {run.kv_peak_pct:.1f}%" in text
    assert "1 prefill + 2 decode GPUs" in ex.fleet_headline(split, "H100")


def test_badges_hold_each_number_against_its_target(run: ex.FleetRun) -> None:
    badges = ex.sla_badges(run.summary, SLA())
    assert [b.label for b in badges] == ["TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "goodput"]
    ttft99 = badges[1]
    assert ttft99.value == pytest.approx(1e3 * run.summary["ttft_p99"]) and ttft99.target == 200 and ttft99.unit == "ms"
    assert badges[3].target == pytest.approx(1e3 / 30)
    goodput = badges[-1]
    assert goodput.higher_is_better and goodput.target == 95 and goodput.unit == "%"
    assert goodput.value == pytest.approx(100 * run.summary["goodput_fraction"])


def test_the_default_view_meets_every_target() -> None:
    """The first view shows a healthy fleet: every badge green, and the worked example is its own."""
    d = dashboard()
    assert all(
        (b.value >= b.target) if b.higher_is_better else (b.value <= b.target)
        for b in ex.sla_badges(d.summary(), SLA())
    ), ex.sla_badges(d.summary(), SLA())
    assert ex.worked_example()["setting"] == d.setting()


def test_latency_view_axes_ticks_and_label_side(run: ex.FleetRun) -> None:
    v = ex.latency_view(run.result, "ttft", 0.2)
    assert v.target_ms == 200 and v.lo <= v.frame["x"].min() and v.hi >= max(v.frame["x"].max(), 200)
    assert v.ticks == ex.log_ticks(v.lo, v.hi) and all(v.lo <= t <= v.hi for t in v.ticks)
    assert (v.label, v.halign) in ((" SLA 200 ms", "left"), ("SLA 200 ms ", "right"))
    far = ex.latency_view(run.result, "tpot", 10.0)  # the line far right of every request: label to its left
    assert far.halign == "right" and far.label == "SLA 10000 ms "
    empty = ex.latency_view(None, "ttft", 0.2)
    assert empty.frame.to_dict("list") == {"x": [200.0], "share": [0.0], "tier": ["all"]}


def test_fleet_series_for_the_kv_and_queue_plots(run: ex.FleetRun) -> None:
    s = ex.fleet_series(run)
    np.testing.assert_allclose(s.frame["kv_pct"], 100 * s.frame["kv_utilization"])
    assert set(s.queue["what"]) == set(ex.QUEUE_SERIES.values()) and len(s.queue) == 2 * len(s.frame)
    assert s.drain == (5.0, float(s.frame["t"].max())) and s.shaded == (s.drain[1] > 5.0)
    assert s.pool == "all" and s.kv_peak == run.kv_peak_pct
    assert s.kv_top == min(max(5.0, s.kv_peak * 1.15), 105)
    assert s.queue_top == pytest.approx(max(1.0, s.queue["requests"].max()) * 1.45)
    assert ex.fleet_series(ex.fleet_run("8B", "H100", 1, 2, **KNOBS)).pool == "decode"
    none = ex.fleet_series(None)
    assert none.drain == (0.0, 0.0) and not none.shaded and none.kv_peak == 0 and none.queue_top == 1.45


def test_plan_pools_are_tidy_rows_per_pool() -> None:
    plan = pd.DataFrame({"rate": [10.0, 20.0], "prefill_gpus": [0, 1], "decode_gpus": [2, 3], "total_gpus": [2, 4]})
    long = ex.plan_pools(plan)
    assert list(long.columns) == ["rate", "pool", "gpus"] and list(long["pool"].unique()) == list(ex.POOLS.values())
    assert long.set_index(["pool", "rate"]).loc[("total GPUs", 20.0), "gpus"] == 4


def test_sweeps_behind_the_buttons_are_timed_and_captioned(run: ex.FleetRun) -> None:
    seen: list[tuple] = []
    sweep = ex.timed_sweep(run, "sweep", "my setting", SLA(), progress=lambda *a: seen.append(a))
    assert list(sweep.table.columns) == ex.SWEEP_COLUMNS and len(sweep.table) == len(ex.SWEEP)
    assert list(sweep.table["rate"]) == ex.load_rates(run.offered_rate, ex.SWEEP) and sweep.seconds > 0
    assert seen[-1] == (len(ex.SWEEP), len(ex.SWEEP), "done") and not sweep.example
    assert ex.sweep_note(sweep, "my setting") == f"For my setting; 8 rates in {sweep.seconds:.1f} s."
    assert ex.sweep_note(sweep, "another").endswith("(settings changed since: press again).")
    example = ex.worked_sweeps()
    assert example["sweep"].example and example["plan"].example
    assert "(worked example at the default settings; press the button for yours)" in ex.sweep_note(
        example["plan"], "anything"
    )
    plan = ex.Sweep(pd.DataFrame({"rate": [1.0, 2.0], "total_gpus": [3, np.nan]}), "s", 1.0)
    assert ex.sweep_note(plan, "s").endswith("1 rate(s) need more than 64 GPUs (not drawn).")


def test_sweep_around_is_the_worked_examples_computation() -> None:
    run = ex.run_fleet(FleetConfig(decode_gpus=2), Workload(rate=20.0, duration=5.0, seed=1))
    plan = ex.sweep_around(run, "plan")
    assert list(plan["rate"]) == ex.load_rates(20.0, ex.PLAN) and list(plan.columns) == ex.PLAN_COLUMNS
    with pytest.raises(KeyError):
        ex.sweep_around(run, "everything")


def test_sla_note_and_plugin_checks() -> None:
    note = ex.sla_note(SLA())
    assert "TTFT ≤ 200 ms, TPOT ≤ 33.3 ms (30 tokens/s)" in note and "arriving 2 s later" in note
    ex.check_plugins(BlockManager, Scheduler)
    ex.check_plugins(None, None)
    with pytest.raises(TypeError, match="block_manager must be a subclass of BlockAllocator"):
        ex.check_plugins(BlockManager(4, 4), None)
    with pytest.raises(TypeError, match="scheduler must be a subclass of SchedulerBase"):
        ex.check_plugins(None, dict)
    assert ServingDashboard.param["decode_gpus"].default == 3
