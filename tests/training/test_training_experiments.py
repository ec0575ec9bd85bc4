"""What Lab 08's dashboard runs, without the dashboard: the one strategy-to-mesh rule, the studies over the
calculators, the exercise drills with right and wrong student functions, and the live runs' launcher."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

from lab_core.llm.gpus import GPUS
from lab_core.training import experiments as ex
from lab_core.training import live, reference
from lab_core.training.calculators import GB, STRATEGIES, job_mtbf, memory_per_gpu, young_daly_interval
from lab_core.training.config import MODEL_AXES, Mesh, TrainConfig, strategy_mesh
from lab_core.training.parallel import flops_per_token


def test_train_config_mesh_keeps_its_rule() -> None:
    assert TrainConfig(strategy="ddp").mesh(2) == Mesh(2, 1, 1)
    assert TrainConfig(strategy="fsdp").mesh(4) == Mesh(4, 1, 1)
    assert TrainConfig(strategy="tp").mesh(2) == Mesh(1, 2, 1), "pure TP with no size spreads over every rank"
    assert TrainConfig(strategy="pp").mesh(2) == Mesh(1, 1, 2)
    assert TrainConfig(strategy="fsdp+tp", tp=2).mesh(4) == Mesh(2, 2, 1)
    assert TrainConfig(strategy="single").mesh(1) == Mesh(1, 1, 1)
    with pytest.raises(ValueError, match="tp=2 x pp=1 must divide it"):
        TrainConfig(strategy="fsdp+tp", tp=2).mesh(3)
    with pytest.raises(ValueError, match="use 'fsdp\\+tp' to add data parallelism"):
        TrainConfig(strategy="tp", tp=2).mesh(4)
    with pytest.raises(ValueError, match="runs on one process"):
        TrainConfig(strategy="single").mesh(2)


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) | {"single"}))
def test_one_axis_rule_for_jobs_and_calculators(strategy: str) -> None:
    mesh = strategy_mesh(strategy, 16, tp=2, pp=4)
    assert mesh.tp == (2 if "tp" in MODEL_AXES[strategy] else 1)
    assert mesh.pp == (4 if "pp" in MODEL_AXES[strategy] else 1)
    assert mesh.world == 16, "the axes a strategy does not use become data parallelism"
    if strategy in STRATEGIES:  # the calculators accept exactly that mesh and refuse an unused axis
        memory_per_gpu(1_000_000, strategy, dp=mesh.dp, tp=mesh.tp, pp=mesh.pp)
        for axis in {"tp", "pp"} - MODEL_AXES[strategy]:
            with pytest.raises(ValueError, match=f"does not use {axis}"):
                memory_per_gpu(1_000_000, strategy, **{axis: 2})


def test_memory_study_puts_every_strategy_on_the_same_gpus_and_reports_progress() -> None:
    seen: list[tuple[int, int, str]] = []
    study = ex.memory_by_strategy("70B", dp=2, tp=8, pp=2, progress=lambda *a: seen.append(a))
    totals = study.totals()
    assert list(totals.index) == [
        "ddp dp32",
        "zero1 dp32",
        "zero2 dp32",
        "fsdp dp32",
        "tp dp4 tp8",
        "pp dp16 pp2",
        "fsdp+tp dp4 tp8",
    ]
    assert study.world == 32 and study.refused == []
    assert seen[0][:2] == (0, 7) and seen[-1] == (7, 7, "done")
    n = ex.MODELS["70B"].num_params()
    assert study.frame.query("setup == 'ddp dp32' and part == 'optimizer state'")["GB"].item() == pytest.approx(
        12 * n / GB
    )
    summary = study.summary("H200-SXM", ex.throughput("70B", "H200-SXM", 32, seq_len=4096), 0.4)
    assert "Fits a H200-SXM (141 GB)" in summary and "✓ **fsdp dp32**" in summary and "✗ **ddp dp32**" in summary


def test_throughput_is_mfu_times_peak_over_flops_per_token() -> None:
    speed = ex.throughput("8B", "H100-SXM", 1024, seq_len=4096, mfu=0.4)
    per_gpu = 0.4 * GPUS["H100-SXM"].peak_flops / flops_per_token(ex.MODELS["8B"], 4096)
    assert speed.tokens_per_s_per_gpu == pytest.approx(per_gpu)
    assert speed.days_per_trillion_tokens == pytest.approx(1e12 / (1024 * per_gpu) / 86400)
    with pytest.raises(ValueError, match="mfu"):
        ex.throughput("8B", "H100-SXM", 8, seq_len=4096, mfu=1.5)


def test_interval_study_has_its_optimum_and_the_sync_comparison() -> None:
    study = ex.checkpoint_interval(
        "8B",
        checkpoint_s=60,
        gpu_mtbf_hours=50_000,
        n_gpus=4096,
        restart_minutes=0,
        async_checkpoint=True,
        async_blocking_pct=10,
    )
    assert study.blocking_s == pytest.approx(6.0)
    assert study.best_s == pytest.approx(young_daly_interval(6.0, job_mtbf(50_000 * 3600, 4096)))
    assert study.table["total"].min() == pytest.approx(study.best_pct, rel=0.01)
    assert study.sync_pct is not None and study.sync_pct > 2 * study.best_pct
    assert f"{study.best_s / 60:.1f} min" in study.summary() and "Synchronous writes would lose" in study.summary()


def test_mesh_study_draws_the_first_ranks_but_describes_the_whole_mesh() -> None:
    study = ex.mesh_study("70B", dp=64, tp=8, pp=2, gpus_per_node=8, max_gpus=256)
    assert study.truncated and len(study.layout) == 256 and study.world == 1024 and study.problem == ""
    assert "a TP group is 8 neighbouring GPU(s)" in study.summary() and "each pipeline stage is 512" in study.summary()
    boxes = study.boxes()
    assert (boxes["x1"] <= 8).all() and boxes.groupby(["pp", "dp"])["node"].nunique().eq(1).all()
    assert "tp 3 does not divide n_heads 64" in ex.mesh_study("70B", dp=1, tp=3, pp=1).problem


def test_zero_states_of_the_reference_match_the_paper() -> None:
    frame = ex.zero_states(reference.zero_memory, 7_500_000_000, 64)
    assert frame["GB"].round(1).tolist() == [120.0, 31.4, 16.6, 1.9]


def no_scaling_step(model, micro_batches, optimizer, *, no_sync=contextlib.nullcontext, max_norm=1.0):
    """A plausible mistake: each micro-batch's loss counts fully (k times the gradient)."""
    losses = []
    for x, y in micro_batches:
        loss = model(x, y)
        loss.backward()
        losses.append(loss.item())
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad()
    return sum(losses) / len(losses)


def test_accumulation_drill_tells_a_right_step_from_a_wrong_one() -> None:
    threads = torch.get_num_threads()
    whole = ex.accumulation_run(reference.accumulation_step, k=1)
    right = ex.accumulation_run(reference.accumulation_step, k=4)
    wrong = ex.accumulation_run(no_scaling_step, k=4)
    assert len(whole.losses) == 10 and whole.losses[-1] < whole.losses[0], "the fixed batches are being learnt"
    assert right.gap(whole) < 1e-4 and right.verdict(whole, "yours").startswith("✓")
    assert wrong.gap(whole) > 1e-3 and wrong.verdict(whole, "yours").startswith("✗")
    assert torch.get_num_threads() == threads, "the drill's one-thread setting is undone"
    with pytest.raises(ValueError, match="must divide the batch"):
        ex.accumulation_run(reference.accumulation_step, k=3)


def save_without_generators(path, *, step, model, optimizer, scheduler, loader):
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(),
        },
        path,
    )


def load_without_generators(path, *, model, optimizer, scheduler, loader):
    state = torch.load(path, weights_only=False)
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler), ("loader", loader)):
        obj.load_state_dict(state[name])
    return state["step"]


def test_resume_drill_is_exact_only_with_everything_restored() -> None:
    right = ex.resume_run(reference.save_checkpoint, reference.load_checkpoint)
    assert right.exact and right.verdict("your").startswith("✓")
    wrong = ex.resume_run(save_without_generators, load_without_generators)
    assert not wrong.exact and wrong.verdict("your").startswith("✗")
    assert wrong.resumed[0] != wrong.straight[4], "dropout after the resume draws other masks"
    assert wrong.frame("yours")["run"].unique().tolist() == ["uninterrupted (yours)", "resumed (yours)"]


def test_the_worked_example_is_a_real_recorded_run() -> None:
    snap = ex.example_run()
    assert snap.example and snap.info is not None and snap.steps == (60, 60)
    assert list(snap.metrics["step"]) == list(range(1, 61))
    assert snap.metrics["loss"].iloc[-5:].mean() < snap.metrics["loss"].iloc[:5].mean() - 1
    assert "finished, step 60 of 60" in snap.summary() and "nats/token" in snap.summary()


class FakeJob:
    """A launched run that is still going until ``done`` is set (no torchrun started)."""

    def __init__(self, *what: object) -> None:
        self.what, self.done = what, False
        self.proc = self

    def poll(self) -> int | None:
        return 0 if self.done else None


@pytest.fixture(autouse=True)
def no_runs_left_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "_running", [])


def test_a_served_dashboard_starts_no_run_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(live, "prepare_dataset", lambda url, progress=None: started.append("prepare"))
    monkeypatch.setattr(live.launch, "start", lambda config, **kw: started.append("launch") or FakeJob())
    with pytest.raises(live.RunsOff, match="--allow-training-runs"):
        ex.LiveRuns(tmp_path / "tracker.db", allow_start=False).start("ddp", 2, 10)
    assert started == [] and not tmp_path.joinpath("data").exists()


def test_one_training_run_at_a_time_per_server_whoever_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "prepare_dataset", lambda url, progress=None: None)
    monkeypatch.setattr(live.launch, "start", lambda config, **kw: FakeJob(config.strategy))
    first = ex.LiveRuns(tmp_path / "a" / "tracker.db").start("ddp", 2, 10)
    other_session = ex.LiveRuns(tmp_path / "b" / "tracker.db")
    with pytest.raises(live.TooManyRuns, match="already runs 1 training job"):
        other_session.start("ddp", 2, 10)
    first.done = True  # the first job exits: the next may start
    assert other_session.start("fsdp", 2, 10).what == ("fsdp",)


def test_live_runs_refuse_a_bad_config_before_preparing_and_report_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = ex.LiveRuns(tmp_path / "tracker.db")
    assert runs.runs().empty and runs.snapshot(None).info is None and not (tmp_path / "tracker.db").exists()
    prepared: list[str] = []

    def fake_prepare(url: str, progress=None) -> None:
        prepared.append(url)
        for stage in live.DATASET_STAGES:
            progress(stage, 0, 2), progress(stage, 2, 2)

    monkeypatch.setattr(live, "prepare_dataset", fake_prepare)
    monkeypatch.setattr(live.launch, "start", lambda config, **kw: FakeJob(config.strategy, kw["nproc"]))
    with pytest.raises(ValueError, match="runs on one process"):
        runs.start("single", 2, 10)
    assert prepared == []
    seen: list[tuple[int, int, str]] = []
    assert runs.start("ddp", 2, 10, progress=lambda *a: seen.append(a)).what == ("ddp", 2)
    assert prepared == [os.fspath(tmp_path / "data")]
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and seen[-1][:2] == (500, 500) and "preparing the dataset: shards" in seen[-1][2]
