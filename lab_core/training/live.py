"""The runs of one experiment tracker, for a live view: list them, read one as it grows, start a short real
``torchrun`` job on this machine and notice when it dies. The dashboard polls :meth:`LiveRuns.snapshot`.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab_core.sim import Progress
from lab_core.training import launch
from lab_core.training.config import TrainConfig
from lab_core.training.dataset import prepare_dataset
from lab_core.training.tracker import Tracker

EXAMPLE = Path(__file__).with_name("example_run.json")
#: prepare_dataset's stages, in order, so its progress reads as one bar.
DATASET_STAGES = ("corpus", "clean", "bpe", "encode", "shards")
RUN_COLUMNS = ["run_id", "name", "status"]
# Set to "1" by `syslab serve --allow-training-runs`: served dashboards may then start jobs.
ALLOW_RUNS_ENV = "SYSLAB_ALLOW_TRAINING_RUNS"
# Training jobs this process may run at once, whoever asks: each takes every core it is given, and a
# served dashboard is shared by strangers.
MAX_RUNS = 1
_running: list[launch.LaunchedRun] = []
_running_lock = threading.Lock()


class RunsOff(PermissionError):
    """Starting training jobs is off here (a served dashboard, unless the server allows it)."""


class TooManyRuns(RuntimeError):
    """This process already runs :data:`MAX_RUNS` training jobs."""


@dataclass(frozen=True)
class RunSnapshot:
    """One run as the tracker holds it now: its row (``info``: run_id, name, status, config, last_step) and its
    metrics, one row per step. ``example`` marks the recorded worked example, not a run of this tracker."""

    info: dict[str, Any] | None
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["step"]))
    example: bool = False

    @property
    def version(self) -> tuple | None:
        """What changes whenever the run does (id, last update, status, last step); None without a run."""
        info = self.info
        return None if info is None else (info["run_id"], info["updated"], info["status"], info["last_step"])

    @property
    def steps(self) -> tuple[int, int]:
        """(last step logged, steps planned), (0, 1) without a run."""
        if self.info is None:
            return 0, 1
        last = int(self.info["last_step"] or 0)
        return last, max(int(self.info["config"].get("steps", 0)), last, 1)

    def summary(self) -> str:
        """One Markdown line: the run, its status and step, its setup, and its latest loss and speed."""
        if self.info is None:
            return "No run chosen."
        info, cfg = self.info, self.info["config"]
        latest = self.metrics.iloc[-1] if not self.metrics.empty else {}

        def metric(key: str, fmt: str) -> str:
            return format(float(latest[key]), fmt) if key in latest and not pd.isna(latest[key]) else "–"

        return (
            f"**{html.escape(info['name'])}** ({html.escape(info['run_id'])}): {info['status']}, step "
            f"{self.steps[0]} of {self.steps[1]}; strategy {cfg.get('strategy', '?')}, model "
            f"{cfg.get('model', '?')}, micro-batch {cfg.get('micro_batch', '?')} × {cfg.get('seq_len', '?')} "
            f"tokens. Loss {metric('loss', '.3f')} nats/token, {metric('tokens_per_s', ',.0f')} tokens/s, "
            f"{metric('step_time_s', '.3f')} s/step."
        )

    def series(self, key: str) -> pd.DataFrame:
        """Columns step and ``key``: the steps that logged it (none when the run never did)."""
        frame = self.metrics
        return frame[["step", key]].dropna() if key in frame else pd.DataFrame({"step": [], key: []}, dtype=float)

    def losses(self) -> pd.DataFrame:
        """Columns step, value, series: the training loss per step ("train") and the validation loss ("eval")
        where the run evaluated."""
        train = self.series("loss").rename(columns={"loss": "value"}).assign(series="train")
        evals = self.series("eval_loss").rename(columns={"eval_loss": "value"}).assign(series="eval")
        return pd.concat([train, evals], ignore_index=True) if not evals.empty else train


def example_run() -> RunSnapshot:
    """A real 60-step DDP run of the tiny model on 2 CPU ranks, recorded when the lab was built: what the live
    view shows before this tracker has runs of its own."""
    data = json.loads(EXAMPLE.read_text())
    return RunSnapshot({**data["run"], "note": data["note"]}, pd.DataFrame(data["metrics"]), example=True)


def _dataset_progress(progress: Progress) -> Any:
    n = len(DATASET_STAGES)

    def report(stage: str, done: int, total: int) -> None:
        i = DATASET_STAGES.index(stage) if stage in DATASET_STAGES else 0
        progress(i * 100 + int(100 * done / max(total, 1)), n * 100, f"preparing the dataset: {stage}")

    return report


class LiveRuns:
    """The runs in the tracker at ``tracker_path`` (jobs started here write their data and runs beside it).
    ``allow_start=False`` refuses to start jobs; at most :data:`MAX_RUNS` run at once in this process."""

    def __init__(self, tracker_path: str | Path, *, allow_start: bool = True) -> None:
        self.path = Path(tracker_path).expanduser()
        self.allow_start = allow_start
        self.launched: launch.LaunchedRun | None = None
        self._tracker: Tracker | None = None
        # A launch on a thread (start_in_background): under way, its dataset's progress, why it failed.
        self.launching = False
        self.prep: tuple[int, int, str] | None = None
        self.launch_failure: Exception | None = None

    def retarget(self, tracker_path: str | Path) -> None:
        """Read the tracker at ``tracker_path`` from now on; a job started here is still followed."""
        self.close()
        self.path = Path(tracker_path).expanduser()

    @property
    def workdir(self) -> Path:
        """Where started jobs keep their dataset, run folders and this tracker."""
        return self.path.parent

    def tracker(self) -> Tracker | None:
        """The tracker (opened once), or None while its file does not exist: looking creates nothing."""
        if self._tracker is None and self.path.exists():
            self._tracker = Tracker(self.path)
        return self._tracker

    def runs(self) -> pd.DataFrame:
        """run_id, name, status of every run, newest first (none while there is no file)."""
        tracker = self.tracker()
        return tracker.runs()[RUN_COLUMNS] if tracker is not None else pd.DataFrame(columns=RUN_COLUMNS)

    def options(self) -> dict[str, str]:
        """A run picker's choices, newest first: "name · status · run_id" -> run_id."""
        return {f"{r.name} · {r.status} · {r.run_id}": r.run_id for r in self.runs().itertuples()}

    def snapshot(self, run_id: str | None) -> RunSnapshot:
        """The run's row and metrics now (an empty snapshot for None)."""
        tracker = self.tracker()
        if tracker is None or run_id is None:
            return RunSnapshot(None)
        return RunSnapshot(tracker.run(run_id), tracker.wide(run_id))

    def running(self) -> bool:
        """Whether a job started here is still going."""
        return self.launched is not None and self.launched.proc.poll() is None

    def start(self, strategy: str, nproc: int, steps: int, *, progress: Progress | None = None) -> launch.LaunchedRun:
        """Launch a short run of the tiny model on ``nproc`` local ranks and return while it runs. The dataset is
        prepared first (seconds, once per workdir) with ``progress``; a config the mesh refuses raises first."""
        if not self.allow_start:
            raise RunsOff(
                "starting training runs is off on this server (syslab serve --allow-training-runs turns it on)"
            )
        if self.running():
            raise RuntimeError("a run started here is still going: stop it first")
        config = TrainConfig(model="tiny", strategy=strategy, steps=steps)
        config.mesh(nproc)
        with _running_lock:
            _running[:] = [job for job in _running if job.proc.poll() is None]
            if len(_running) >= MAX_RUNS:
                raise TooManyRuns(
                    f"this server already runs {len(_running)} training job(s), the most it runs at "
                    "once; start yours when it ends"
                )
            prepare_dataset(str(self.workdir / "data"), progress=_dataset_progress(progress) if progress else None)
            self.launched = launch.start(config, workdir=self.workdir, nproc=nproc, run_name=f"{strategy}-x{nproc}")
            _running.append(self.launched)
        return self.launched

    def start_in_background(self, strategy: str, nproc: int, steps: int) -> threading.Thread:
        """:meth:`start` on a thread, so a page stays live while the dataset is prepared: ``launching``, ``prep``
        (done, total, label) and ``launch_failure`` say how it goes. Refused while a run started here goes on."""
        if self.launching or self.running():
            raise RuntimeError("A run started here is still going: stop it first.")
        self.launching, self.launch_failure = True, None

        def report(done: int, total: int, label: str) -> None:
            self.prep = (done, total, label)

        def launch() -> None:
            try:
                self.start(strategy, nproc, steps, progress=report)
            except Exception as exc:  # noqa: BLE001 - a config the mesh refuses, a dataset that failed: reported
                self.launch_failure = exc
            finally:
                self.launching, self.prep = False, None

        thread = threading.Thread(target=launch, name="training-launch", daemon=True)
        thread.start()
        return thread

    def news(self, describe: Callable[[BaseException], str] = repr) -> str:
        """What went wrong since the last call, or "": a job started here that died (its output's tail), else a
        background launch that failed before its job started (the exception, as ``describe`` writes it)."""
        failure, self.launch_failure = self.launch_failure, None
        return self.check_launched() or (f"Could not start the run: {describe(failure)}" if failure else "")

    def busy(self, snapshot: RunSnapshot) -> bool:
        """Whether a view should keep polling: a launch under way, a job started here not yet seen to end (it can
        finish while the view reads), or the run shown still running."""
        running = snapshot.info is not None and snapshot.info["status"] == "running"
        return self.launching or self.launched is not None or running

    def progress(self, snapshot: RunSnapshot) -> tuple[int, int]:
        """(done, total) for a progress bar: the dataset's preparation during a launch, else the run's steps."""
        return self.prep[:2] if self.prep else snapshot.steps

    def status(self, snapshot: RunSnapshot) -> str:
        """Markdown above the live plots: the launch under way, or the run's summary (saying when it is the
        worked example because the tracker has no runs yet)."""
        if self.launching:
            return f"Launching: {(self.prep or (0, 0, ''))[2] or 'starting torchrun'}…"
        if not (snapshot.example and snapshot.info):
            return snapshot.summary()
        return (
            f"No runs in `{html.escape(str(self.path))}` yet: below is a worked example, "
            f"{html.escape(snapshot.info['note'])}. Start a run to see your own.  \n" + snapshot.summary()
        )

    def check_launched(self) -> str:
        """Once a job started here has exited: forget it, and if it failed mark its run failed and return its
        output's tail (an empty string otherwise)."""
        job = self.launched
        if job is None or job.proc.poll() is None:
            return ""
        self.launched = None
        rc = job.proc.returncode
        if rc == 0:
            return ""
        tracker = self.tracker()
        if tracker is not None and tracker.run(job.run_id)["status"] == "running":
            tracker.finish(job.run_id, "failed")
        return f"The run {job.run_id} exited with code {rc}:\n\n```\n{job.log_tail(1500)}\n```"

    def stop(self) -> None:
        """Stop the job started here and mark its run killed."""
        job, self.launched = self.launched, None
        if job is None:
            return
        job.stop()
        tracker = self.tracker()
        if tracker is not None and tracker.run(job.run_id)["status"] == "running":
            tracker.finish(job.run_id, "killed")

    def close(self) -> None:
        """Close the tracker; a job started here keeps running."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
