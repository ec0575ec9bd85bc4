"""What Lab 08's dashboard draws, prepared in lab_core: the exercise drills as frames and verdicts, the mesh's
axes, a run's series and status, and a live launch in the background with its failures reported."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lab_core.training import experiments as ex
from lab_core.training import live, reference
from lab_core.training.tracker import Tracker


def _unscaled_step(model, micro_batches, optimizer, *, no_sync=None, max_norm=1.0):  # type: ignore[no-untyped-def]
    """A wrong accumulation step: the micro-batch losses are not divided by k."""
    total = 0.0
    for x, y in micro_batches:
        loss = model(x, y)
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total / len(micro_batches)


def _broken(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise ZeroDivisionError("student bug")


def test_exercise_drills_draw_every_drill_that_ran_and_report_the_rest() -> None:
    errors: dict[str, str] = {}

    def attempt(name, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- what the dashboard's attempt does
            errors[name] = type(exc).__name__
            return None

    drills = ex.exercise_drills(
        10**9,
        8,
        4,
        zero=[("reference", reference.zero_memory), ("yours", _broken)],
        accumulation=("yours", _unscaled_step),
        checkpoints=[("reference", reference.save_checkpoint, reference.load_checkpoint), ("yours", _broken, _broken)],
        attempt=attempt,
    )
    assert errors == {
        "zero_bytes_per_gpu": "ZeroDivisionError",
        "save_checkpoint / load_checkpoint": "ZeroDivisionError",
    }
    assert drills.zero["who"].unique().tolist() == ["reference"]
    assert drills.zero["stage"].tolist() == ["ZeRO-0", "ZeRO-1", "ZeRO-2", "ZeRO-3"]
    assert drills.zero["GB"].iloc[0] == pytest.approx(16.0)  # 16 bytes per parameter without sharding
    baseline, yours = drills.accumulation
    assert baseline["run"].unique().tolist() == ["one batch of 8 (reference)"]
    assert yours["run"].unique().tolist() == ["4 micro-batches (yours)"]
    assert [f["run"].str.endswith("(reference)").all() for f in drills.resume] == [True]
    assert drills.verdicts[0].startswith("✗ Accumulation (4 micro-batches (yours))")
    assert drills.verdicts[1].startswith("✓ Resume with the reference checkpoint functions")


def test_exercise_drills_of_the_reference_alone_agree_with_it() -> None:
    drills = ex.exercise_drills(
        10**9,
        8,
        2,
        zero=[("reference", reference.zero_memory)],
        accumulation=("reference", reference.accumulation_step),
        checkpoints=[("reference", reference.save_checkpoint, reference.load_checkpoint)],
    )
    assert [v[0] for v in drills.verdicts] == ["✓", "✓"]
    whole, split = drills.accumulation
    assert (split["loss"] - whole["loss"]).abs().max() < 1e-4


def test_mesh_axes_follow_the_boxes() -> None:
    mesh = ex.mesh_study("8B", dp=2, tp=4, pp=2, gpus_per_node=8)
    assert mesh.node_ticks() == [(-0.5, "node 0"), (pytest.approx(-2.0), "node 1")]
    assert mesh.slot_ticks() == [(i + 0.5, f"GPU {i}") for i in range(8)]
    assert mesh.plot_height() == 220  # two node rows: the floor
    big = ex.mesh_study("8B", dp=64, tp=8, pp=1, gpus_per_node=8)
    assert big.plot_height() == 900 and big.plot_height(most=2000) > 900


def test_run_series_and_losses_are_tidy() -> None:
    metrics = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.5, 2.0], "eval_loss": [None, 2.7, None]})
    info = {"run_id": "r1", "updated": 5.0, "status": "running", "last_step": 3, "config": {"steps": 10}}
    snap = live.RunSnapshot(info, metrics)
    assert snap.version == ("r1", 5.0, "running", 3) and live.RunSnapshot(None).version is None
    assert snap.series("eval_loss").to_dict("list") == {"step": [2], "eval_loss": [2.7]}
    assert snap.series("lr").empty and list(snap.series("lr").columns) == ["step", "lr"]
    losses = snap.losses()
    assert losses[["step", "series"]].values.tolist() == [[1, "train"], [2, "train"], [3, "train"], [2, "eval"]]
    assert ex.example_run().losses()["series"].unique().tolist() == ["train"]


def test_status_progress_and_polling_say_what_the_view_shows(tmp_path: Path) -> None:
    runs = ex.LiveRuns(tmp_path / "tracker.db")
    example = ex.example_run()
    assert runs.status(example).startswith(f"No runs in `{tmp_path / 'tracker.db'}` yet: below is a worked example")
    assert runs.progress(example) == (60, 60) and not runs.busy(example)
    tracker = Tracker(tmp_path / "tracker.db")
    rid = tracker.start_run("ddp-x2", {"steps": 40, "strategy": "ddp"})
    snap = runs.snapshot(rid)
    assert runs.status(snap) == snap.summary() and runs.busy(snap)
    runs.launching, runs.prep = True, (100, 500, "preparing the dataset: clean")
    assert runs.status(example) == "Launching: preparing the dataset: clean…" and runs.progress(snap) == (100, 500)
    tracker.close()
    runs.close()


class _Job:
    def __init__(self) -> None:
        self.proc = self

    def poll(self) -> int | None:
        return None


def test_a_background_launch_reports_its_progress_and_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "_running", [])
    monkeypatch.setattr(live, "prepare_dataset", lambda url, progress=None: progress("clean", 1, 2))
    seen: list[object] = []

    def refuse(config, **kw):  # type: ignore[no-untyped-def]
        seen.append(runs.prep)
        raise ValueError("pipeline size 9 exceeds the model's 2 layers")

    monkeypatch.setattr(live.launch, "start", refuse)
    runs = ex.LiveRuns(tmp_path / "tracker.db")
    runs.start_in_background("pp", 2, 10).join()
    assert seen == [(150, 500, "preparing the dataset: clean")]
    assert not runs.launching and runs.prep is None
    assert runs.news() == 'Could not start the run: ValueError("pipeline size 9 exceeds the model\'s 2 layers")'
    assert runs.news() == "", "a failure is reported once"
    monkeypatch.setattr(live.launch, "start", lambda config, **kw: _Job())
    runs.start_in_background("ddp", 2, 10).join()
    assert runs.running() and runs.launch_failure is None
    with pytest.raises(RuntimeError, match="still going"):
        runs.start_in_background("ddp", 2, 10)
    runs.launched = None


def test_retarget_reads_another_tracker_and_keeps_the_job(tmp_path: Path) -> None:
    a, b = Tracker(tmp_path / "a.db"), Tracker(tmp_path / "b.db")
    a.start_run("in-a", {}), b.start_run("in-b", {})
    runs = ex.LiveRuns(tmp_path / "a.db")
    runs.launched = job = _Job()  # type: ignore[assignment]
    assert runs.runs()["name"].tolist() == ["in-a"]
    runs.retarget(tmp_path / "b.db")
    assert runs.runs()["name"].tolist() == ["in-b"] and runs.launched is job and runs.workdir == tmp_path
    runs.launched = None
    runs.close(), a.close(), b.close()
