"""Lab 07 dashboard without a browser: it builds and renders, each control moves the numbers the way a
practitioner expects, the sweeps fill their plots, the live engine draws every request's phases, and the
student's block manager and scheduler plug in."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import pytest
from bokeh.document import Document

from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.experiments import latency_ecdf
from lab_core.serving.scheduler import Scheduler
from widgets.serving import ServingDashboard, app, dashboard
from widgets.serving_live import YOURS

SHORT = {"duration": 5.0}


@pytest.fixture(scope="module")
def dash() -> ServingDashboard:
    return dashboard(**SHORT)


def test_it_builds_renders_and_shows_the_sla_numbers(dash: ServingDashboard) -> None:
    root = pn.Row(dash.controls(), dash.main()).get_root(Document())
    assert root is not None
    for view in (
        dash.ttft_plot,
        dash.tpot_plot,
        dash.kv_plot,
        dash.queue_plot,
        dash.goodput_plot,
        dash.fleet_plot,
        dash.live_tab.timeline_plot,
        dash.live_tab.kv_plot,
    ):
        hv.render(view())
    s = dash.summary()
    assert s["requests"] > 0 and s["finished"] == s["requests"]
    assert 0 <= s["goodput_fraction"] <= 1 and s["ttft_p99"] >= s["ttft_p50"] > 0
    text = dash.headline().object
    assert "colocated GPUs" in text and "Recomputed in" in text
    assert isinstance(app(), pn.template.FastListTemplate)


def test_more_decode_gpus_lower_tpot_and_more_load_raises_ttft() -> None:
    d = dashboard(**SHORT, rate=60.0, decode_gpus=2)
    tight = d.summary()
    d.decode_gpus = 6
    roomy = d.summary()
    assert roomy["tpot_p99"] < tight["tpot_p99"] and roomy["goodput_fraction"] >= tight["goodput_fraction"]
    d.rate = 150.0
    loaded = d.summary()
    assert loaded["ttft_p99"] > roomy["ttft_p99"] and loaded["requests"] > roomy["requests"]


def test_disaggregated_pools_burstiness_and_the_70b_model_recompute() -> None:
    d = dashboard(**SHORT)
    d.param.update(prefill_gpus=2, decode_gpus=4)
    assert "2 prefill + 4 decode GPUs" in d.headline().object
    calm = d.summary()["ttft_p99"]
    d.burstiness = 4.0
    assert d.summary()["ttft_p99"] > calm, "bursts queue requests"
    d.param.update(model="70B", prefill_gpus=0, decode_gpus=3)
    assert d.run.config.tp >= 2 and d.run.config.decode_gpus % d.run.config.tp == 0
    assert "rounded up" in d.run.note and d.summary()["requests"] > 0


def test_the_ecdfs_are_per_tier_and_end_at_one_when_all_finish(dash: ServingDashboard) -> None:
    for metric in ("ttft", "tpot"):
        frame = latency_ecdf(dash.run.result, metric)
        assert set(frame["tier"]) >= {"all", "paid", "free"}
        for _, part in frame.groupby("tier"):
            assert part["share"].is_monotonic_increasing and part["share"].max() == pytest.approx(1.0)


def test_sweeps_fill_goodput_vs_load_and_fleet_size_vs_load() -> None:
    d = dashboard(**SHORT)
    d.run_sweep()
    table = d.sweep.table
    assert len(table) == 8 and table["rate"].is_monotonic_increasing
    assert table["goodput_pct"].iloc[0] >= table["goodput_pct"].iloc[-1], "more load, less goodput"
    d.run_plan()
    plan = d.plan.table
    assert len(plan) == 4 and plan["total_gpus"].is_monotonic_increasing
    assert plan["total_gpus"].iloc[-1] > plan["total_gpus"].iloc[0]
    d.decode_gpus = 5
    assert "press again" in d.sweep_note().object


def test_the_live_engine_draws_each_request_queued_prefill_decode() -> None:
    d = dashboard(live_requests=6, live_pause=0)
    d.live_tab.send()
    snap = d.live_tab.wait(60)
    t = snap.timeline
    assert len(t) == 6 and t["finish"].notna().all()
    assert (t["arrival"] <= t["scheduled"]).all() and (t["scheduled"] <= t["first_token"]).all()
    assert (t["first_token"] <= t["finish"]).all()
    phases = d.live_tab.phases()
    assert set(phases["phase"]) <= {"queued", "prefill", "decode"} and (phases["end"] >= phases["start"]).all()
    assert d.live_tab.engine.blocks.num_used == 0, "every block is back after the requests finish"
    assert "6 of 6 requests done" in d.live_tab.status().object


def test_student_classes_plug_in_and_bad_ones_are_refused() -> None:
    class Mine(BlockManager):
        pass

    class MySched(Scheduler):
        pass

    d = dashboard(block_manager=Mine, scheduler=MySched, live_requests=3, live_pause=0)
    assert d.live_tab.live_block_manager == YOURS and d.live_tab.live_scheduler == YOURS
    d.live_tab.send()
    d.live_tab.wait(60)
    assert type(d.live_tab.engine.blocks) is Mine and type(d.live_tab.engine.scheduler) is MySched
    assert "yours" in d.live_tab.status().object

    class Blank(BlockAllocator):
        pass

    broken = dashboard(block_manager=Blank, live_requests=2, live_pause=0)
    broken.live_tab.send()
    broken.live_tab.wait(60)
    assert "NotImplementedError" in broken.errors["live engine"], "the student's unfinished code is reported"
    assert "NotImplementedError" in broken.error_view().object
    for bad in (BlockManager(4, 4), int):
        with pytest.raises(TypeError, match="block_manager"):
            dashboard(block_manager=bad)
    with pytest.raises(TypeError, match="scheduler"):
        dashboard(scheduler=dict)
