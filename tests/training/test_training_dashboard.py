"""Lab 08 dashboard without a browser: it builds and renders, the memory, interval and mesh tabs move the way the
formulas say, and the live tab plots a tracker run's rows as they arrive (no training is launched here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from bokeh.document import Document

from lab_core.llm.gpus import GPUS
from lab_core.training import reference
from lab_core.training.calculators import GB, job_mtbf, young_daly_interval
from lab_core.training.experiments import MODELS
from lab_core.training.tracker import Tracker
from widgets.training import TrainingDashboard, app, dashboard


def curves(obj: hv.core.Dimensioned) -> list[pd.DataFrame]:
    """The data of every Curve inside a plotted object (columns named by dimension name, not label)."""
    return [c.dframe() for c in obj.traverse(lambda e: e, [hv.Curve])]


@pytest.fixture
def empty_tracker(tmp_path: Path) -> str:
    return str(tmp_path / "nothing-here" / "tracker.db")


def test_it_builds_and_renders_every_tab(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker)
    assert pn.Row(dash.controls(), dash.main()).get_root(Document()) is not None
    for pane in (dash._memory_plot, dash._interval_plot, dash._mesh_plot, dash._loss, dash._lr, dash._speed):
        hv.render(pane.object)
    assert "No runs" in dash._status.object
    assert not Path(empty_tracker).exists(), "looking at a tracker path does not create a database"
    assert isinstance(app(), pn.template.FastListTemplate)


def test_memory_bars_follow_the_strategies(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker, model="8B", dp=8, seq_len=4096)
    totals = dash.memory.totals()
    assert list(totals.index) == ["ddp dp8", "zero1 dp8", "zero2 dp8", "fsdp dp8"]
    assert totals.is_monotonic_decreasing, "each ZeRO stage shards more"
    assert totals["ddp dp8"] > 80 > totals["fsdp dp8"], "8B does not fit DDP on an H100 but fits FSDP on 8"
    parts = dash.memory.frame.pivot(index="setup", columns="part", values="GB")
    n = MODELS["8B"].num_params()
    assert parts.loc["ddp dp8", "optimizer state"] == pytest.approx(12 * n / GB)
    assert parts.loc["fsdp dp8", "weights"] == pytest.approx(2 * n / 8 / GB)
    assert "tp needs tp > 1".replace(">", "&gt;") in dash._memory_text.object

    acts = parts["activations"].iloc[0]
    dash.activation_checkpointing = True
    assert dash.memory.frame.pivot(index="setup", columns="part", values="GB")["activations"].iloc[0] < acts / 5

    dash.param.update(model="70B", tp=8, pp=2, dp=2)
    totals = dash.memory.totals()
    assert {"tp dp4 tp8", "pp dp16 pp2", "fsdp+tp dp4 tp8", "ddp dp32"} <= set(totals.index)
    assert totals["fsdp+tp dp4 tp8"] < totals["tp dp4 tp8"] < totals["ddp dp32"]
    assert "70B on 32 GPUs" in dash._memory_plot.object.opts.get().kwargs["title"]


def test_a_tp_size_the_heads_refuse_is_named(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker, model="1b", dp=2)
    dash.tp = 3
    assert "tp 3 does not divide n_heads 32" in "; ".join(dash.memory.refused)
    assert not any(s.startswith(("tp ", "fsdp+tp ")) for s in dash.memory.totals().index)
    assert dash._mesh_error.visible and "within a node" in dash._mesh_error.object
    dash.tp = 4
    assert not dash._mesh_error.visible and "tp dp2 tp4" in dash.memory.totals().index


def test_checkpoint_interval_curve_has_its_minimum_at_young_daly(empty_tracker: str) -> None:
    dash = dashboard(
        tracker_path=empty_tracker, checkpoint_s=60.0, gpu_mtbf_hours=50000.0, n_gpus=4096, restart_minutes=0.0
    )
    table = dash.interval.table
    best = young_daly_interval(60.0, job_mtbf(50000 * 3600, 4096)) / 60
    assert table["interval_min"].iloc[int(table["total"].idxmin())] == pytest.approx(best, rel=0.05)
    drawn = curves(dash._interval_plot.object)
    assert len(drawn) == 3 and any(np.allclose(c["pct"], table["total"]) for c in drawn)
    assert all(np.allclose(c["interval_min"], table["interval_min"]) for c in drawn)
    assert f"{best:.1f} min" in dash._interval_text.object

    sync_lost = table["total"].min()
    dash.async_checkpoint = True
    assert dash.interval.blocking_s == pytest.approx(6.0)
    assert dash.interval.table["total"].min() < sync_lost / 2
    assert "Synchronous writes would lose" in dash._interval_text.object
    lost = dash.interval.table["total"].min()
    dash.n_gpus = 16384
    assert dash.interval.job_mtbf_s == pytest.approx(50000 * 3600 / 16384)
    assert dash.interval.table["total"].min() > lost, "four times the GPUs fail four times as often"
    assert f"{young_daly_interval(6.0, dash.interval.job_mtbf_s) / 60:.1f} min" in dash._interval_text.object


def test_mesh_boxes_one_per_gpu_coloured_by_stage(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker, model="70B", dp=2, tp=4, pp=2, gpus_per_node=8)
    frame = dash.mesh.boxes()
    assert len(frame) == 16 and sorted(frame["stage"].unique()) == ["stage 0", "stage 1"]
    boxes, outlines = (r.dframe() for r in dash._mesh_plot.object.traverse(lambda e: e, [hv.Rectangles]))
    assert len(boxes) == 16 and set(boxes["node"]) == {0, 1}
    assert len(outlines) == 4, "one dashed outline per TP group: dp x pp of them"
    assert (outlines["x1"] - outlines["x0"]).round(6).nunique() == 1, "every TP group is 4 slots wide"
    # A TP group (same pp, dp) sits side by side on one node.
    assert frame.groupby(["pp", "dp"])["node"].nunique().eq(1).all()
    assert "16 GPUs on 2 node(s)" in dash._mesh_text.object
    dash.dp = 64
    assert len(dash.mesh.boxes()) == 256 and "first 256 GPUs" in dash._mesh_text.object


def log_steps(tracker: Tracker, run_id: str, steps: range) -> None:
    tracker.log_many(
        run_id,
        [
            (
                s,
                {
                    "loss": 5.5 - 0.05 * s,
                    "lr": 3e-3 * min(1.0, s / 10),
                    "tokens_per_s": 9000.0 + s,
                    "step_time_s": 0.05,
                },
            )
            for s in steps
        ],
    )


def test_live_tab_plots_a_tracker_run_and_follows_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    tracker = Tracker(path)
    old = tracker.start_run("old-run", {"steps": 5, "strategy": "ddp", "model": "tiny"})
    log_steps(tracker, old, range(1, 6))
    tracker.finish(old)
    rid = tracker.start_run(
        "fsdp-x2", {"steps": 40, "strategy": "fsdp", "model": "tiny", "micro_batch": 8, "seq_len": 64}
    )
    log_steps(tracker, rid, range(1, 11))

    dash = dashboard(tracker_path=str(path))
    assert dash._run_select.value == rid, "the newest run is shown first"
    assert set(dash._run_select.options.values()) == {rid, old}
    loss = curves(dash._loss.object)[0]
    assert loss["step"].tolist() == list(range(1, 11))
    assert loss["value"].tolist() == pytest.approx([5.5 - 0.05 * s for s in range(1, 11)])
    assert curves(dash._lr.object)[0]["lr"].iloc[-1] == pytest.approx(3e-3)
    assert (dash._run_progress.value, dash._run_progress.max) == (10, 40)
    assert "running, step 10 of 40" in dash._status.object and "strategy fsdp" in dash._status.object

    log_steps(tracker, rid, range(11, 41))
    tracker.log(rid, 40, {"eval_loss": 3.9})
    dash.poll()
    assert curves(dash._loss.object)[0]["step"].max() == 40
    evals = dash._loss.object.traverse(lambda e: e, [hv.Scatter])[0].dframe()
    assert evals["value"].tolist() == [3.9]
    assert curves(dash._speed.object)[0]["tokens_per_s"].iloc[-1] == 9040.0
    tracker.finish(rid)
    dash.poll()
    assert "finished, step 40 of 40" in dash._status.object and dash._callback is None
    assert f"fsdp-x2 · finished · {rid}" in dash._run_select.options, "the picker shows the new status"

    dash.select_run(old)
    assert curves(dash._loss.object)[0]["step"].tolist() == [1, 2, 3, 4, 5]
    assert (dash._run_progress.value, dash._run_progress.max) == (5, 5)
    dash.close()
    tracker.close()


def test_a_launch_that_fails_is_reported_and_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The start button's two failure paths, with ``launch.start`` replaced: it raises before launching, and the
    job it launched (here a process that exits 3 after printing) dies."""
    import lab_core.training.launch as launch

    path = tmp_path / "tracker.db"
    dash = dashboard(tracker_path=str(path), live_strategy="pp", live_nproc=2)

    def refuse(config, **kw):  # type: ignore[no-untyped-def]
        raise ValueError(f"pipeline size {kw['nproc'] + 7} exceeds the model's 2 layers")

    monkeypatch.setattr(launch, "start", refuse)
    dash.start_run(wait=True)
    assert "ValueError: pipeline size 9 exceeds" in dash._error.object and dash._error.visible

    def dies(config, *, workdir, nproc, run_name):  # type: ignore[no-untyped-def]
        assert (config.strategy, config.model, nproc, workdir) == ("pp", "tiny", 2, tmp_path)
        run_id = Tracker(workdir / "tracker.db").start_run(run_name, {"steps": config.steps})
        run_dir = workdir / "runs" / run_id
        run_dir.mkdir(parents=True)
        with open(run_dir / "log.txt", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "print('rank 1: out of memory'); raise SystemExit(3)"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc.wait(30)
        return launch.LaunchedRun(run_id, workdir / "tracker.db", run_dir, config, proc)

    monkeypatch.setattr(launch, "start", dies)
    dash.start_run(wait=True)
    assert "exited with code 3" in dash._error.object and "rank 1: out of memory" in dash._error.object
    assert Tracker(path).runs()["status"].tolist() == ["failed"]
    assert "pp-x2" in dash._status.object and "failed" in dash._status.object
    dash.close()


def test_dashboard_is_one_object_per_session(empty_tracker: str) -> None:
    a, b = dashboard(tracker_path=empty_tracker), dashboard(tracker_path=empty_tracker, model="1b")
    assert isinstance(a, TrainingDashboard) and a.memory is not b.memory
    assert a.memory.totals().sum() > b.memory.totals().sum()


def test_an_empty_tracker_shows_the_worked_example_not_empty_axes(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker)
    loss = curves(dash._loss.object)[0]
    assert len(loss) == 60 and loss["value"].iloc[-1] < loss["value"].iloc[0]
    assert all(len(curves(p.object)[0]) == 60 for p in (dash._lr, dash._speed))
    assert "Worked example" in dash._loss.object.opts.get().kwargs["title"]
    assert "No runs in" in dash._status.object and "worked example: ddp-x2" in dash._status.object
    assert (dash._run_progress.value, dash._run_progress.max) == (60, 60)


def test_the_gpu_comes_from_the_shared_datasheets_and_no_label_sits_on_the_bars(empty_tracker: str) -> None:
    dash = dashboard(tracker_path=empty_tracker, gpu="H200-SXM")
    assert set(dash.param["gpu"].objects) == set(GPUS)
    lines = dash._memory_plot.object.traverse(lambda e: e, [hv.HLine])
    assert [line.data for line in lines] == [141.0]
    assert not dash._memory_plot.object.traverse(lambda e: e, [hv.Text]), "the GPU's name is in the title and key"
    assert "one H200-SXM" in dash._memory_plot.object.opts.get().kwargs["title"]


def labels(pane: pn.pane.HoloViews) -> list[str]:
    return [c.label for c in pane.object.traverse(lambda e: e, [hv.Curve])]


def bars(pane: pn.pane.HoloViews) -> pd.DataFrame:
    return pane.object.traverse(lambda e: e, [hv.Bars])[0].dframe()


def test_every_exercise_plugs_in_and_the_references_pass(empty_tracker: str) -> None:
    refs = {name: plugin.reference for name, plugin in TrainingDashboard.plugins.items()}
    assert set(refs) == {"accumulation_step", "zero_bytes_per_gpu", "save_checkpoint", "load_checkpoint"}
    dash = dashboard(tracker_path=empty_tracker, **refs)
    assert dash.errors == {} and set(dash.yours) == set(refs)
    zero = bars(dash._zero_plot)
    assert sorted(zero["who"].unique()) == ["reference", "yours"]
    assert np.allclose(zero[zero.who == "yours"]["GB"], zero[zero.who == "reference"]["GB"])
    assert labels(dash._accum_plot) == ["one batch of 8 (reference)", "4 micro-batches (yours)"]
    accum = curves(dash._accum_plot.object)
    assert len(accum) == 2 and np.allclose(accum[0]["loss"], accum[1]["loss"], atol=1e-4)
    assert {"resumed (yours)", "resumed (reference)", "uninterrupted (yours)"} <= set(labels(dash._resume_plot))
    text = dash._exercise_text.object
    assert "✗" not in text and text.count("✓") == 3 and "Resume with your checkpoint functions" in text


def test_a_students_wrong_or_broken_code_is_shown_as_such(empty_tracker: str) -> None:
    from test_training_experiments import load_without_generators, no_scaling_step, save_without_generators

    def zero_no_param_sharding(num_params, stage, dp, *, k=12):  # type: ignore[no-untyped-def]
        return reference.zero_memory(num_params, min(stage, 2), dp, k=k)

    dash = dashboard(
        tracker_path=empty_tracker,
        accumulation_step=no_scaling_step,
        zero_bytes_per_gpu=zero_no_param_sharding,
        save_checkpoint=save_without_generators,
        load_checkpoint=load_without_generators,
    )
    assert dash.errors == {}
    zero = bars(dash._zero_plot).pivot(index="stage", columns="who", values="GB")
    assert zero.loc["ZeRO-3", "yours"] > zero.loc["ZeRO-3", "reference"] * 1.5
    assert zero.loc["ZeRO-2", "yours"] == pytest.approx(zero.loc["ZeRO-2", "reference"])
    text = dash._exercise_text.object
    assert "✗ Accumulation (4 micro-batches (yours))" in text and "✗ Resume with your" in text
    assert "✓ Resume with the reference" in text

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("not written yet")

    dash = dashboard(tracker_path=empty_tracker, zero_bytes_per_gpu=broken, accumulation_step=broken)
    assert set(dash.errors) == {"zero_bytes_per_gpu", "accumulation_step"}
    assert "RuntimeError: not written yet" in dash.errors["zero_bytes_per_gpu"]
    assert bars(dash._zero_plot)["who"].unique().tolist() == ["reference"], "the reference is still drawn"
    assert dash.error_view().visible and "not written yet" in dash.error_view().object
    dash.accum_k = 2
    assert set(dash.errors) == {"zero_bytes_per_gpu", "accumulation_step"}, "a recompute keeps reporting them"
    with pytest.raises(TypeError, match="ZeroBytesPerGPU"):
        dashboard(tracker_path=empty_tracker, zero_bytes_per_gpu=42)


def test_a_launch_that_finishes_during_a_poll_is_still_followed(tmp_path: Path) -> None:
    """The race a real Start click hit: the launch thread set the job and cleared "launching" while the click's own
    poll was reading the tracker, and that poll, seeing neither, stopped polling; the new run never showed."""
    import lab_core.training.launch as launch
    from lab_core.training.config import TrainConfig

    path = tmp_path / "tracker.db"
    tracker = Tracker(path)
    old = tracker.start_run("old-run", {"steps": 5})
    log_steps(tracker, old, range(1, 6))
    tracker.finish(old)
    dash = dashboard(tracker_path=str(path))
    assert dash._callback is None
    rid = tracker.start_run("ddp-x2", {"steps": 40, "strategy": "ddp"})
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    read = dash.live.snapshot

    def launch_finishes_meanwhile(run_id):  # type: ignore[no-untyped-def]
        dash.live.launched = launch.LaunchedRun(rid, path, tmp_path / "runs" / rid, TrainConfig(), proc)
        dash.live.launching = False
        return read(run_id)

    try:
        dash.live.launching = True
        dash.live.snapshot = launch_finishes_meanwhile  # type: ignore[method-assign]
        dash.poll()
        dash.live.snapshot = read  # type: ignore[method-assign]
        assert dash._callback is not None, "a job started here keeps the poll going"
        dash.poll()
        assert (
            dash._run_select.value == rid and "ddp-x2** (" in dash._status.object and "running" in dash._status.object
        )
    finally:
        proc.kill()
        proc.wait()
    dash.poll()
    assert dash.live.launched is None and dash._callback is None
    dash.close()


def test_a_served_page_may_not_start_runs_unless_the_server_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab_core.training import live

    def start_button(page: pn.template.FastListTemplate) -> pn.widgets.Button:
        buttons = pn.Column(*page.main, *page.sidebar).select(pn.widgets.Button)
        return next(b for b in buttons if "Start" in b.label or "Starting" in b.label)

    monkeypatch.delenv(live.ALLOW_RUNS_ENV, raising=False)
    off = start_button(app())
    assert off.disabled and off.label == "Starting runs is off on this server"
    monkeypatch.setenv(live.ALLOW_RUNS_ENV, "1")
    on = start_button(app())
    assert not on.disabled and on.label.startswith("Start a run")
    assert dashboard().allow_runs  # a notebook is the student's own machine
