"""Lab 07's experiments, as the dashboard, notebook and benchmarks call them: one per-request table, the
live runner (an AsyncEngine on its own thread, read through snapshots), the sweeps with progress=, the
worked example the page shows before the first press, and the queue orders named apart."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from lab_core.serving import experiments as ex
from lab_core.serving.blocks import BlockAllocator
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.fleet import SLA, FleetConfig, Workload
from lab_core.serving.protocol import PAID, QUEUE_ORDERS, SamplingParams
from lab_core.serving.timeline import COLUMNS, phase_bars, request_table
from widgets.serving import FLEET_ORDERS, dashboard
from widgets.serving_live import LIVE_ORDERS

TINY = EngineConfig(model="tiny", num_blocks=48, block_size=16, token_budget=128)


def test_request_table_times_phases_and_tiers() -> None:
    eng = LLMEngine(TINY)
    t0 = eng.clock()
    a = eng.add_request("hello there", SamplingParams(max_tokens=5, ignore_eos=True), priority=PAID)
    b = eng.add_request("x", SamplingParams(max_tokens=1, ignore_eos=True))
    eng.step()
    c = eng.add_request("late one", SamplingParams(max_tokens=3, ignore_eos=True))
    eng.abort(c)
    while eng.has_work():
        eng.step()
    t = request_table(eng, t0).set_index("request")
    assert list(request_table(eng, t0).columns) == COLUMNS
    assert t.loc[a, "tier"] == "paid" and t.loc[b, "tier"] == "free" and t.loc[a, "prompt_len"] == 12  # BOS + 11
    assert t.loc[a, "state"] == "done" and t.loc[c, "state"] == "aborted" and np.isnan(t.loc[c, "finish"])
    assert np.isnan(t.loc[b, "tpot"]), "a one-token answer has no gap between tokens"
    done = t.loc[[a, b]]
    np.testing.assert_allclose(done.ttft, done.first_token - done.arrival)
    np.testing.assert_allclose(done.e2e, done.finish - done.arrival)
    assert t.loc[a, "tpot"] == pytest.approx((t.loc[a, "finish"] - t.loc[a, "first_token"]) / 4)
    bars = phase_bars(t.loc[[a]].reset_index(), now=10.0)
    assert list(bars.phase) == ["queued", "prefill", "decode"] and (bars.end >= bars.start).all()


def test_live_run_serves_on_its_thread_and_publishes_snapshots() -> None:
    run = ex.LiveRun(TINY, label="ref", every=0.0)
    try:
        run.send(ex.live_requests(4, seed=3))
        assert run.wait(60) and run.idle
        snap = run.snapshot()
        assert len(snap.timeline) == 4 and snap.timeline.finish.notna().all() and not snap.running
        assert run.version >= 2 and len(snap.kv) == snap.steps and snap.total_blocks == 48
        assert run.engine.blocks.num_used == 0
        run.send(ex.live_requests(2, seed=4))  # the same engine serves the next click
        assert run.wait(60) and len(run.snapshot().timeline) == 6
    finally:
        run.close()


def test_live_run_reports_the_students_exception() -> None:
    class Blank(BlockAllocator):
        pass

    run = ex.LiveRun(TINY, block_manager=Blank)
    try:
        run.send(ex.live_requests(2, seed=1))
        assert run.wait(60) and isinstance(run.exception, NotImplementedError)
        assert len(run.snapshot().timeline) == 2, "a snapshot is taken once the thread has stopped"
    finally:
        run.close()


def test_live_updates_are_applied_on_the_event_loop_like_a_notebook_kernel() -> None:
    # A notebook has no server session: the dashboard's periodic callback runs on the kernel's loop
    # (here asyncio's) and is the only place the drawn snapshot changes; nothing calls wait().
    async def serve() -> tuple[object, set[int]]:
        d = dashboard(live_requests=3, live_pause=0)
        threads: set[int] = set()
        d.live_tab.param.watch(lambda _e: threads.add(threading.get_ident()), "live")
        d.live_tab.send()
        for _ in range(1200):
            await asyncio.sleep(0.05)
            t = d.live_tab.live.timeline
            if len(t) == 3 and t.finish.notna().all():
                break
        d.close()
        return d, threads

    d, threads = asyncio.run(serve())
    t = d.live_tab.live.timeline
    assert len(t) == 3 and t.finish.notna().all(), "the loop's callback drew the finished run"
    assert threads == {threading.get_ident()}, "updates came from the loop's thread, never the engine's"


def test_sweeps_report_progress_and_name_their_units() -> None:
    cfg, wl = FleetConfig(decode_gpus=2), Workload(rate=20.0, duration=5.0, seed=1)
    seen: list[tuple[int, int, str]] = []
    table = ex.goodput_sweep(cfg, wl, [10.0, 40.0], SLA(), progress=lambda *a: seen.append(a))
    assert list(table.columns) == ex.SWEEP_COLUMNS and len(table) == 2
    assert seen == [(0, 2, "10 req/s"), (1, 2, "40 req/s"), (2, 2, "done")]
    plan = ex.fleet_plan(cfg, wl, [20.0], SLA(), max_gpus=8)
    assert list(plan.columns) == ex.PLAN_COLUMNS and plan.ttft_p99_ms.iloc[0] > 1, "milliseconds, not seconds"


def test_the_page_shows_a_worked_example_before_the_first_press() -> None:
    d = dashboard(duration=5.0)
    for sweep in (d.sweep, d.plan):
        assert sweep.example and len(sweep.table) > 0 and sweep.table.notna().any(axis=None)
    assert "worked example" in d.sweep_note().object and "worked example" in d.plan_note().object
    d.run_sweep()
    assert not d.sweep.example and "worked example" not in d.sweep_note().object


@pytest.mark.slow
def test_the_worked_example_is_what_the_defaults_compute() -> None:
    d = dashboard()
    example = ex.worked_example()
    assert example["setting"] == d.setting()
    rates = ex.load_rates(d.run.offered_rate, ex.SWEEP)
    np.testing.assert_allclose(
        ex.goodput_sweep(d.run.config, d.run.workload, rates).to_numpy(dtype=float),
        example["sweep"].to_numpy(dtype=float),
    )


def test_one_kv_peak_in_the_headline_and_the_plot() -> None:
    d = dashboard(duration=5.0, rate=80.0)
    peak = f"{100 * d.run.summary['peak_kv_utilization']:.1f}%"
    title = d.kv_plot().opts.get().kwargs["title"]
    assert f"peak KV use {peak}" in d.headline().object and peak in title


def test_queue_orders_have_distinct_names_on_the_page() -> None:
    fleet = {label.split(" (")[0] for label in FLEET_ORDERS}
    live = {label.split(" (")[0] for label in LIVE_ORDERS}
    assert fleet | live <= set(QUEUE_ORDERS) and "paid-first, aged" in fleet and "paid-first" in live
    assert "tier + length + age" in QUEUE_ORDERS, "the gateway's order is named too"


def test_log_ticks_are_few_round_and_in_range() -> None:
    assert ex.log_ticks(150, 400) == [200, 300]
    ticks = ex.log_ticks(3, 5000)
    assert 2 <= len(ticks) <= 6 and all(3 <= t <= 5000 for t in ticks)
