"""The experiment tracker: runs, metrics as tidy and wide frames, live reads, TensorBoard export."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from lab_core.sim.clock import ManualClock
from lab_core.training.tracker import METRIC_COLUMNS, Tracker, UnknownRun


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(tmp_path / "tracker.db", clock=ManualClock(1000.0))
    yield t
    t.close()


def test_run_lifecycle_and_listing(tracker):
    a = tracker.start_run("baseline", {"lr": 3e-4, "strategy": "ddp"})
    tracker.clock.advance(5)
    b = tracker.start_run("fsdp", {"lr": 1e-3}, run_id="fsdp-1")
    assert b == "fsdp-1" and a != b and len(a) == 12

    info = tracker.run(a)
    assert info["name"] == "baseline" and info["status"] == "running"
    assert info["config"] == {"lr": 3e-4, "strategy": "ddp"} and info["last_step"] is None
    assert info["created"] == 1000.0

    tracker.log(a, 0, {"loss": 5.5})
    tracker.log(a, 7, {"loss": 4.0})
    tracker.finish(a)
    tracker.finish(b, "failed")

    runs = tracker.runs()
    assert list(runs.columns) == ["run_id", "name", "status", "created", "updated", "last_step", "config"]
    assert list(runs["run_id"]) == [b, a]  # newest first
    assert dict(zip(runs["run_id"], runs["status"])) == {a: "finished", b: "failed"}
    assert runs.set_index("run_id").loc[a, "last_step"] == 7
    assert runs.set_index("run_id").loc[a, "config"] == {"lr": 3e-4, "strategy": "ddp"}


def test_resuming_a_run_keeps_its_metrics_and_overwrites_relogged_steps(tracker):
    run = tracker.start_run("job", {"steps": 10}, run_id="job-1")
    tracker.log_many(run, [(s, {"loss": 10.0 - s}) for s in range(4)])
    tracker.finish(run, "killed")
    # The restarted job resumes from the step-2 checkpoint and logs steps 2, 3, 4 again.
    assert tracker.start_run("job", {"steps": 10}, run_id="job-1") == run
    assert tracker.run(run)["status"] == "running"
    tracker.log_many(run, [(s, {"loss": 100.0 + s}) for s in (2, 3, 4)])
    m = tracker.metrics(run)
    assert list(m["step"]) == [0, 1, 2, 3, 4]
    assert list(m["value"]) == [10.0, 9.0, 102.0, 103.0, 104.0]


def test_tidy_and_wide_frames(tracker):
    run = tracker.start_run("r", {})
    for step in range(3):
        tracker.clock.advance(2.0)
        tracker.log(run, step, {"loss": 4.0 - step, "lr": 1e-3 * (step + 1), "grad_norm": 0.5})
    tracker.log(run, 2, {"eval_loss": 3.1, "eval_ppl": math.exp(3.1)}, wall=9999.0)

    tidy = tracker.metrics(run)
    assert list(tidy.columns) == METRIC_COLUMNS
    assert len(tidy) == 3 * 3 + 2
    loss = tidy[tidy["key"] == "loss"]
    assert list(loss["step"]) == [0, 1, 2] and list(loss["value"]) == [4.0, 3.0, 2.0]
    assert list(loss["wall"]) == [1002.0, 1004.0, 1006.0]

    only = tracker.metrics(run, keys=["lr", "eval_ppl"])
    assert set(only["key"]) == {"lr", "eval_ppl"} and len(only) == 4
    assert list(tracker.metrics(run, keys="loss")["value"]) == [4.0, 3.0, 2.0]

    wide = tracker.wide(run)
    assert list(wide.columns) == ["step", "wall", "eval_loss", "eval_ppl", "grad_norm", "loss", "lr"]
    assert list(wide["step"]) == [0, 1, 2]
    assert wide["lr"].tolist() == pytest.approx([1e-3, 2e-3, 3e-3])
    assert wide["eval_loss"].isna().tolist() == [True, True, False]
    assert wide.loc[2, "wall"] == 9999.0

    empty = tracker.start_run("empty", {})
    assert tracker.metrics(empty).empty and list(tracker.wide(empty).columns) == ["step", "wall"]


def test_nan_loss_is_recorded_as_nan(tracker):
    run = tracker.start_run("diverged", {})
    tracker.log(run, 0, {"loss": float("nan"), "grad_norm": float("inf")})
    m = tracker.metrics(run).set_index("key")["value"]
    assert math.isnan(m["loss"]) and m["grad_norm"] == math.inf


def test_bad_input_is_refused_with_the_field_named(tracker):
    run = tracker.start_run("r", {})
    with pytest.raises(UnknownRun, match="'nope'.*runs: " + run):
        tracker.log("nope", 0, {"loss": 1.0})
    with pytest.raises(ValueError, match="unknown run_id"):
        tracker.metrics("nope")
    with pytest.raises(ValueError, match="step"):
        tracker.log(run, -1, {"loss": 1.0})
    with pytest.raises(ValueError, match="metric 'loss' must be a number"):
        tracker.log(run, 0, {"loss": "low"})
    with pytest.raises(ValueError, match="metrics for step 0"):
        tracker.log(run, 0, {})
    with pytest.raises(ValueError, match="status"):
        tracker.finish(run, "done")
    with pytest.raises(ValueError, match="config is not JSON"):
        tracker.start_run("r", {"fn": object()})
    with pytest.raises(ValueError, match="run name"):
        tracker.start_run("  ", {})
    with pytest.raises(ValueError, match="run_id"):
        tracker.start_run("r", {}, run_id="../etc")
    # A batch with one bad row stores nothing.
    with pytest.raises(ValueError, match="metric 'lr'"):
        tracker.log_many(run, [(0, {"loss": 1.0}), (1, {"lr": None})])
    assert tracker.metrics(run).empty


def test_second_connection_sees_each_step_as_it_is_logged(tmp_path):
    path = tmp_path / "live.db"
    writer, reader = Tracker(path), Tracker(path)
    try:
        run = writer.start_run("live", {"steps": 3})
        assert reader.run(run)["status"] == "running"
        for step in range(3):
            writer.log(run, step, {"loss": 3.0 - step})
            assert reader.run(run)["last_step"] == step
            assert reader.metrics(run, keys=["loss"])["value"].iloc[-1] == 3.0 - step
        writer.finish(run)
        assert reader.runs().loc[0, "status"] == "finished"
    finally:
        writer.close()
        reader.close()


def test_reader_process_sees_rows_while_the_writer_keeps_its_connection_open(tmp_path):
    path = tmp_path / "live.db"
    writer = Tracker(path)
    run = writer.start_run("live", {})
    writer.log_many(run, [(s, {"loss": float(s), "lr": 0.1}) for s in range(5)])
    script = textwrap.dedent(
        f"""
        from lab_core.training.tracker import Tracker
        t = Tracker({str(path)!r})
        print(t.run({run!r})["status"], t.run({run!r})["last_step"], len(t.metrics({run!r})))
        """
    )
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["running", "4", "10"]
        writer.log(run, 5, {"loss": 5.0})
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ["running", "5", "11"], out.stderr
    finally:
        writer.close()


def test_tensorboard_export_reads_back_with_event_accumulator(tracker, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tracker.start_run("tb", {"model": "tiny", "lr": 0.001})
    for step in range(0, 50, 10):
        tracker.clock.advance(1.0)
        tracker.log(run, step, {"loss": 5.0 / (step + 1), "lr": 0.001, "tokens_per_s": 1000.0 + step})
    out = tracker.export_tensorboard(run, tmp_path / "tb")
    assert out == tmp_path / "tb" / run and any(out.glob("events.out.tfevents.*"))

    acc = EventAccumulator(str(out))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss", "lr", "tokens_per_s"}
    events = acc.Scalars("loss")
    assert [e.step for e in events] == [0, 10, 20, 30, 40]
    assert [e.value for e in events] == pytest.approx([5.0 / (s + 1) for s in range(0, 50, 10)], rel=1e-6)
    assert [e.wall_time for e in events] == pytest.approx([1001.0, 1002.0, 1003.0, 1004.0, 1005.0])
    assert [e.value for e in acc.Scalars("tokens_per_s")] == pytest.approx([1000, 1010, 1020, 1030, 1040])
    wide = tracker.wide(run)
    assert isinstance(wide, pd.DataFrame) and len(wide) == len(events)
