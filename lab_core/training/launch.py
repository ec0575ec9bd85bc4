"""Start training jobs with ``torchrun``: check the config against the world size first, prepare the
dataset once, open a tracker run, and run the workers in their own process group.

``start`` returns at once (the dashboard polls the tracker); ``run`` waits with a progress bar. Elastic
jobs pass ``nnodes="MIN:MAX"`` and a rendezvous endpoint, and ``torchrun`` restarts the workers on the
nodes that are left, up to ``max_restarts`` times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lab_core.procs import free_port, stop_process
from lab_core.training.config import TrainConfig
from lab_core.training.dataset import prepare_dataset
from lab_core.training.paths import default_workdir
from lab_core.training.tracker import Tracker


@dataclass
class RunInfo:
    """Where a training run reports: its tracker run, its folder (config, checkpoints, log)."""

    run_id: str
    tracker_path: Path
    run_dir: Path
    config: TrainConfig

    @property
    def checkpoint_dir(self) -> Path:
        """The job's checkpoints."""
        return self.run_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        """torchrun's and the workers' combined output."""
        return self.run_dir / "log.txt"

    @cached_property
    def tracker(self) -> Tracker:
        """The tracker this run logs to (one connection, reused by every poll)."""
        return Tracker(self.tracker_path)

    def step(self) -> int:
        """The last step the tracker has for this run (0 before the first)."""
        frame = self.tracker.metrics(self.run_id, ["loss"])
        return int(frame["step"].max()) if len(frame) else 0


@dataclass
class LaunchedRun(RunInfo):
    """A running (or finished) ``torchrun`` job."""

    proc: subprocess.Popen | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the job; its exit code."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop torchrun and every worker it started."""
        stop_process(self.proc)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the job's output, for error messages."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def torchrun_command(
    worker_args: list[str],
    *,
    nproc: int,
    nnodes: str = "1",
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "syslab",
    max_restarts: int = 0,
    rdzv_conf: str | None = None,
) -> list[str]:
    """The ``torchrun`` command line: a fixed single-node world by default, or an elastic one with a
    c10d rendezvous when ``rdzv_endpoint`` is given."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--nnodes",
        nnodes,
        "--max-restarts",
        str(max_restarts),
    ]
    cmd += [
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        rdzv_endpoint or f"127.0.0.1:{free_port()}",
        "--rdzv-id",
        rdzv_id,
    ]
    if rdzv_conf:
        cmd += ["--rdzv-conf", rdzv_conf]
    return cmd + ["-m", "lab_core.training.worker", *worker_args]


def worker_env() -> dict[str, str]:
    """One thread per rank (the ranks share the cores), and this checkout importable."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def prepare_run(
    config: TrainConfig,
    *,
    workdir: Path | None = None,
    world_sizes: tuple[int, ...] = (1,),
    run_name: str | None = None,
    run_id: str | None = None,
) -> tuple[Path, Path, str, str]:
    """Check ``config`` for every world size the job may take, prepare the dataset, open the tracker run
    and write the config. Returns (workdir, run folder, run id, dataset URL)."""
    for world in world_sizes:
        config.mesh(world)
    workdir = Path(workdir or default_workdir())
    data_url = str(workdir / "data")
    prepare_dataset(data_url)
    tracker = Tracker(workdir / "tracker.db")
    run_id = tracker.start_run(
        run_name or f"{config.strategy}-{config.model}", json.loads(config.to_json()), run_id=run_id
    )
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    return workdir, run_dir, run_id, data_url


def worker_args(run_dir: Path, workdir: Path, run_id: str, data_url: str, fail_at_step: int | None = None) -> list[str]:
    """The worker's flags for a prepared run."""
    args = [
        "--config",
        str(run_dir / "config.json"),
        "--data",
        data_url,
        "--checkpoints",
        str(run_dir / "checkpoints"),
        "--tracker",
        str(workdir / "tracker.db"),
        "--run-id",
        run_id,
    ]
    return args + (["--fail-at-step", str(fail_at_step)] if fail_at_step is not None else [])


def start(
    config: TrainConfig,
    *,
    workdir: Path | None = None,
    nproc: int = 1,
    run_name: str | None = None,
    fail_at_step: int | None = None,
    max_restarts: int = 0,
) -> LaunchedRun:
    """Launch ``nproc`` workers on this machine; returns while they run. ValueError before launch when
    the config does not fit ``nproc`` ranks."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer; got {nproc!r}")
    workdir, run_dir, run_id, data_url = prepare_run(config, workdir=workdir, world_sizes=(nproc,), run_name=run_name)
    cmd = torchrun_command(
        worker_args(run_dir, workdir, run_id, data_url, fail_at_step),
        nproc=nproc,
        max_restarts=max_restarts,
        rdzv_id=run_id,
    )
    with open(run_dir / "log.txt", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env(), start_new_session=True)
    return LaunchedRun(run_id, workdir / "tracker.db", run_dir, config, proc)


def run(
    config: TrainConfig,
    *,
    workdir: Path | None = None,
    nproc: int = 1,
    run_name: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    fail_at_step: int | None = None,
    max_restarts: int = 0,
) -> LaunchedRun:
    """``start`` and wait, with a tqdm bar of optimiser steps. RuntimeError with the job's output when it
    fails."""
    from tqdm.auto import tqdm

    job = start(
        config, workdir=workdir, nproc=nproc, run_name=run_name, fail_at_step=fail_at_step, max_restarts=max_restarts
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    with tqdm(total=config.steps, desc=f"{config.strategy} x{nproc}", unit="step", disable=not progress) as bar:
        while job.proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                job.stop()
                raise RuntimeError(f"training run {job.run_id} passed its {timeout} s timeout:\n{job.log_tail()}")
            bar.update(job.step() - bar.n)
            time.sleep(0.5)
        bar.update(job.step() - bar.n)
    if job.proc.returncode != 0:
        job.tracker.finish(job.run_id, "failed")
        raise RuntimeError(f"training run {job.run_id} failed (exit {job.proc.returncode}):\n{job.log_tail()}")
    return job


def run_in_process(config: TrainConfig, *, workdir: Path | None = None, run_name: str | None = None) -> RunInfo:
    """The same job in this process, without torchrun (one rank; ``strategy`` "single" or "ddp"): the
    quick path for notebooks under ``SYSLAB_FAST``, where a launch's start-up would dominate."""
    from lab_core.training.trainer import train

    workdir, run_dir, run_id, data_url = prepare_run(config, workdir=workdir, world_sizes=(1,), run_name=run_name)
    train(
        config,
        data_url=data_url,
        checkpoint_dir=run_dir / "checkpoints",
        tracker_path=workdir / "tracker.db",
        run_id=run_id,
    )
    return RunInfo(run_id, workdir / "tracker.db", run_dir, config)
