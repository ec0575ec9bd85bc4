"""Jobs: what a user submits (shape, duration, priority, tenant, checkpointing) and how it fares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

FULL_GPU = 1000  # milli-GPUs in one whole GPU, as in Kubernetes' gpu_milli


class JobError(ValueError):
    """A job description that cannot be run; the message names the field."""


class State(str, Enum):  # noqa: UP042 - StrEnum would change str() of a member, which messages and events print
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(eq=False)  # a job is an identity (the queue removes *this* job), not a value
class Job:
    """A request for ``num_gpus`` GPUs (each ``gpu_milli``/1000 of a GPU) for ``duration`` seconds.

    ``estimate`` is the user's walltime guess that backfill plans with (defaults to the true
    duration); ``checkpoint_interval`` bounds the work lost when the job is killed (None: all of it).
    A job wider than one node needs whole nodes (gang, all-or-nothing).
    """

    id: int
    submit: float
    duration: float
    num_gpus: int = 1
    gpu_milli: int = FULL_GPU
    cpu_milli: int = 0
    memory_mib: int = 0
    priority: int = 0
    tenant: str = "default"
    gpu_type: str | None = None
    checkpoint_interval: float | None = None
    estimate: float | None = None
    name: str = ""
    # Filled in by the simulator.
    state: State = State.QUEUED
    start: float | None = None
    end: float | None = None
    progress: float = 0.0  # seconds of work kept (checkpointed) across restarts
    restarts: int = 0
    migrations: int = 0
    lost_gpu_seconds: float = 0.0  # GPU-seconds of work thrown away by kills
    reserved_start: float | None = None  # first start time a reservation promised
    events: list[tuple[float, str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        _check_number("submit", self.submit, minimum=0.0)
        _check_number("duration", self.duration, minimum=0.0, strict=True)
        if not isinstance(self.num_gpus, (int,)) or isinstance(self.num_gpus, bool) or self.num_gpus < 0:
            raise JobError(f"num_gpus must be a whole number >= 0, got {self.num_gpus!r}")
        if not isinstance(self.gpu_milli, int) or not 0 <= self.gpu_milli <= FULL_GPU:
            raise JobError(f"gpu_milli must be a whole number in 0..{FULL_GPU}, got {self.gpu_milli!r}")
        if self.num_gpus == 0:
            self.gpu_milli = 0
        elif self.gpu_milli == 0:
            raise JobError("gpu_milli is 0 but num_gpus > 0: a GPU job needs some share of each GPU")
        if self.num_gpus > 1 and self.gpu_milli != FULL_GPU:
            raise JobError(
                f"a job with num_gpus={self.num_gpus} must use whole GPUs (gpu_milli={FULL_GPU}); "
                f"only single-GPU jobs may share a GPU, got gpu_milli={self.gpu_milli}"
            )
        for name in ("cpu_milli", "memory_mib", "priority"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or (name != "priority" and value < 0):
                raise JobError(f"{name} must be a whole number{' >= 0' if name != 'priority' else ''}, got {value!r}")
        if self.checkpoint_interval is not None:
            _check_number("checkpoint_interval", self.checkpoint_interval, minimum=0.0, strict=True)
        if self.estimate is None:
            self.estimate = self.duration
        _check_number("estimate", self.estimate, minimum=0.0, strict=True)
        if not isinstance(self.tenant, str) or not self.tenant:
            raise JobError(f"tenant must be a non-empty string, got {self.tenant!r}")

    @property
    def gpus(self) -> float:
        """GPUs asked for, in whole-GPU units (0.5 for a half-GPU job)."""
        return self.num_gpus * self.gpu_milli / FULL_GPU

    @property
    def fractional(self) -> bool:
        """True for a job that shares one GPU with others."""
        return self.num_gpus == 1 and self.gpu_milli < FULL_GPU

    @property
    def remaining(self) -> float:
        """Seconds of work still to do."""
        return max(self.duration - self.progress, 0.0)

    @property
    def wait(self) -> float | None:
        """Queueing delay: first start minus submission."""
        return None if self.start is None else self.start - self.submit

    @property
    def jct(self) -> float | None:
        """Job completion time: end minus submission."""
        return None if self.end is None else self.end - self.submit

    def kept_progress(self, worked: float) -> float:
        """Work that survives a kill after ``worked`` seconds in total: the last checkpoint."""
        if self.checkpoint_interval is None:
            return 0.0
        return math.floor(worked / self.checkpoint_interval) * self.checkpoint_interval

    def fresh(self) -> Job:
        """An unrun copy (the simulator fills in a job's state as it runs, so each run needs its own)."""
        return Job(
            id=self.id,
            submit=self.submit,
            duration=self.duration,
            num_gpus=self.num_gpus,
            gpu_milli=self.gpu_milli,
            cpu_milli=self.cpu_milli,
            memory_mib=self.memory_mib,
            priority=self.priority,
            tenant=self.tenant,
            gpu_type=self.gpu_type,
            checkpoint_interval=self.checkpoint_interval,
            estimate=self.estimate,
            name=self.name,
        )

    def log(self, t: float, what: str) -> None:
        """Append a timestamped event to the job's history."""
        self.events.append((t, what))

    def as_dict(self) -> dict:
        """A JSON-ready view (for the HTTP API and tables)."""
        return {
            "id": self.id,
            "name": self.name,
            "submit": self.submit,
            "duration": self.duration,
            "estimate": self.estimate,
            "num_gpus": self.num_gpus,
            "gpu_milli": self.gpu_milli,
            "cpu_milli": self.cpu_milli,
            "memory_mib": self.memory_mib,
            "priority": self.priority,
            "tenant": self.tenant,
            "gpu_type": self.gpu_type,
            "checkpoint_interval": self.checkpoint_interval,
            "state": self.state.value,
            "start": self.start,
            "end": self.end,
            "progress": self.progress,
            "restarts": self.restarts,
            "migrations": self.migrations,
            "lost_gpu_hours": self.lost_gpu_seconds / 3600.0,
            "reserved_start": self.reserved_start,
            "events": [{"t": t, "event": e} for t, e in self.events],
        }


def _check_number(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise JobError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise JobError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
