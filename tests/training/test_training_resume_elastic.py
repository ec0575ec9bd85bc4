"""Faults for real: a worker that dies mid-run is restarted by torchrun and resumes onto the same loss curve;
an elastic job that loses a node carries on with fewer ranks; the trained model goes through the registry
into Lab 07's gateway."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import run_asgi
from lab_core.llm.registry import ModelRegistry
from lab_core.serving.demo import close_replicas, create_app
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.protocol import SamplingParams
from lab_core.training import launch
from lab_core.training.checkpoint import CheckpointManager
from lab_core.training.config import TrainConfig
from lab_core.training.elastic import start_elastic
from lab_core.training.publish import publish_run
from lab_core.training.tracker import Tracker

CONFIG = TrainConfig(steps=10, micro_batch=8, seq_len=32, warmup_steps=2, checkpoint_every=4, keep_last=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[launch.LaunchedRun, launch.LaunchedRun]:
    """The same 2-rank DDP job twice in one workdir: straight through, and killed after step 6."""
    workdir = tmp_path_factory.mktemp("resume")
    straight = launch.run(CONFIG, workdir=workdir, nproc=2, progress=False, timeout=300)
    crashed = launch.run(CONFIG, workdir=workdir, nproc=2, progress=False, timeout=300, fail_at_step=6, max_restarts=1)
    return straight, crashed


def test_a_killed_worker_resumes_onto_the_same_loss_curve(runs: tuple[launch.LaunchedRun, launch.LaunchedRun]) -> None:
    straight, crashed = runs
    tracker = Tracker(straight.tracker_path)
    a, b = tracker.wide(straight.run_id), tracker.wide(crashed.run_id)
    assert list(a["step"]) == list(b["step"]) == list(range(1, 11))
    # Model, optimiser, LR schedule, data position and RNG all restored: exact in fp32.
    assert list(a["loss"]) == list(b["loss"])
    assert list(a["lr"]) == list(b["lr"])
    assert "failed (exitcode: 1)" in crashed.log_path.read_text()  # it did die, and torchrun restarted it
    assert "failed (exitcode: 1)" not in straight.log_path.read_text()
    assert tracker.run(crashed.run_id)["status"] == "finished"


def test_checkpoints_keep_the_last_k(runs: tuple[launch.LaunchedRun, launch.LaunchedRun]) -> None:
    straight, _ = runs
    infos = CheckpointManager(straight.checkpoint_dir).list()
    assert [i.step for i in infos] == [8, 10]
    assert all(i.world_size == 2 for i in infos)
    assert not list(straight.checkpoint_dir.glob(".tmp-*"))


def test_the_trained_model_is_registered_evaluated_and_served(
    runs: tuple[launch.LaunchedRun, launch.LaunchedRun], tmp_path: Path
) -> None:
    straight, _ = runs
    workdir = straight.run_dir.parent.parent
    version, result = publish_run(
        straight.run_dir, str(workdir / "data"), tmp_path / "registry", "lab08-tiny", run_id=straight.run_id
    )
    assert version.stage == "staging" and version.run_id == straight.run_id
    assert version.metrics["step"] == 10 and result.perplexity < 512
    assert version.eval["samples"] and version.eval["metrics"]["eval_ppl"] == pytest.approx(result.perplexity)
    registry = ModelRegistry(tmp_path / "registry")
    registry.set_stage("lab08-tiny", version.version, "production")
    model, tokenizer = registry.load("lab08-tiny", stage="production")
    assert tokenizer.vocab_size == model.cfg.vocab_size > 259
    engine = LLMEngine(EngineConfig(model=model.cfg), model=model, tokenizer=tokenizer)
    done = engine.generate(["The scheduler"], SamplingParams(max_tokens=12, ignore_eos=True))[0]
    assert done.text == tokenizer.decode(done.token_ids) and len(done.token_ids) == 12

    app, router = create_app([], registered=["lab08-tiny"], registry=str(tmp_path / "registry"))

    async def scenario(client):
        models = (await client.get("/v1/models", headers={"Authorization": "Bearer sk-paid-demo"})).json()
        answer = await client.post(
            "/v1/completions",
            headers={"Authorization": "Bearer sk-paid-demo"},
            json={"model": "lab08-tiny", "prompt": "The scheduler", "max_tokens": 8},
        )
        return models, answer

    try:
        models, answer = run_asgi(app, scenario)
    finally:
        close_replicas(router)
    assert [m["id"] for m in models["data"]] == ["lab08-tiny"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] >= 1


def test_registered_models_need_a_registry() -> None:
    with pytest.raises(ValueError, match="--registered needs --registry"):
        create_app([], registered=["lab08-tiny"])


def test_an_elastic_job_that_loses_a_node_resumes_with_fewer_ranks(tmp_path: Path) -> None:
    config = TrainConfig(steps=16, micro_batch=8, seq_len=32, warmup_steps=2, checkpoint_every=4)
    job = start_elastic(config, nodes=2, min_nodes=1, workdir=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while job.step() < 6:
            assert time.monotonic() < deadline, "\n".join(p.read_text()[-2000:] for p in job.logs)
            assert all(a.poll() is None for a in job.agents), "\n".join(p.read_text()[-2000:] for p in job.logs)
            time.sleep(0.2)
        job.kill_node(1)
        killed_at = job.step()
        codes = job.wait(timeout=240)
    finally:
        job.stop()
    assert codes[0] == 0, job.logs[0].read_text()[-4000:]
    frame = Tracker(job.tracker_path).wide(job.run_id)
    assert list(frame["step"]) == list(range(1, 17))
    sizes = frame.set_index("step")["world_size"]
    resumed = sizes[sizes == 1].index.min()
    # Steps after the last checkpoint before the loss were redone by the one rank left.
    assert sizes.loc[: resumed - 1].eq(2).all() and sizes.loc[resumed:].eq(1).all()
    # The node dies at step 6 or a little later on a busy machine (the poll above is not instant):
    # the survivor resumes from the last checkpoint the two ranks completed before the loss.
    assert (resumed - 1) % config.checkpoint_every == 0 and 4 <= resumed - 1 <= killed_at + 1, (resumed, killed_at)
    assert Tracker(job.tracker_path).run(job.run_id)["status"] == "finished"
