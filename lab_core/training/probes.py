"""Instruments Lab 08's graders attach to a student's code, to see what one process cannot see by results.

* :func:`recording_ddp` -- real ``DistributedDataParallel`` on a one-rank group whose comm hook records what
  each gradient all-reduce carries (every parameter's gradient, by name) and how many forwards had run by
  then: which micro-batch synchronises, and with what, shows although one rank's result is the same.
* :func:`watching_durability` -- records, in order, every ``os.fsync`` / ``os.fdatasync`` (which file, and
  its size then) and every ``os.replace`` / ``os.rename`` (from which folder, onto which path, which file),
  so a grader can ask whether the file that ends at a path was fsynced, whole, before it was renamed there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from lab_core.llm.model import build_model

__all__ = ["Fsync", "ReducedRound", "Rename", "recording_ddp", "watching_durability"]


@dataclass
class ReducedRound:
    """One gradient bucket all-reduced by DDP: after how many forwards, carrying which gradients."""

    forwards: int
    grads: dict[str, torch.Tensor]


@dataclass
class DDPRecording:
    """What a recording DDP saw since the last :meth:`reset`."""

    rounds: list[ReducedRound] = field(default_factory=list)
    forwards: int = 0

    def reset(self) -> None:
        """Forget the rounds and forwards seen so far (call before each optimiser step)."""
        self.rounds.clear()
        self.forwards = 0


def recording_ddp(seed: int) -> tuple[nn.Module, DDPRecording]:
    """The tiny model (seeded) in ``DistributedDataParallel`` on the current one-rank process group, and the
    record its comm hook and a forward hook fill."""
    from torch.nn.parallel import DistributedDataParallel

    module = build_model("tiny", seed=seed).train()
    names = {id(p): n for n, p in module.named_parameters()}
    model = DistributedDataParallel(module)
    seen = DDPRecording()

    def count_forward(*_: object) -> None:
        seen.forwards += 1

    # No annotations: DDP checks them at run time, and this module's are strings (postponed evaluation).
    def hook(state, bucket):
        grads = {names[id(p)]: g.detach().clone() for p, g in zip(bucket.parameters(), bucket.gradients())}
        seen.rounds.append(ReducedRound(seen.forwards, grads))
        fut: torch.futures.Future = torch.futures.Future()
        fut.set_result(bucket.buffer())  # one rank: the all-reduced mean is the local gradient
        return fut

    module.register_forward_pre_hook(count_forward)
    model.register_comm_hook(None, hook)
    return model, seen


@dataclass(frozen=True)
class Fsync:
    """``os.fsync`` (or ``fdatasync``) of one file: its device and inode, and its size at that moment."""

    dev: int
    ino: int
    size: int


@dataclass(frozen=True)
class Rename:
    """``os.replace`` / ``os.rename`` of the file (device, inode) from ``src_folder`` onto ``dst``."""

    src_folder: str
    dst: str
    dev: int
    ino: int


def _folder_of(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def watching_durability() -> Iterator[list[Fsync | Rename]]:
    """Inside the block, every fsync and rename through ``os`` is recorded (in order) and then done."""
    events: list[Fsync | Rename] = []
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "rename") if hasattr(os, name)}

    def syncing(name: str) -> Callable:
        def sync(fd: object) -> None:
            st = os.fstat(fd if isinstance(fd, int) else fd.fileno())  # type: ignore[attr-defined]
            events.append(Fsync(st.st_dev, st.st_ino, st.st_size))
            real[name](fd)

        return sync

    def moving(name: str) -> Callable:
        def move(src: str | os.PathLike, dst: str | os.PathLike, *args: object, **kwargs: object) -> None:
            st = os.stat(src)
            real[name](src, dst, *args, **kwargs)
            events.append(Rename(_folder_of(src), os.path.realpath(dst), st.st_dev, st.st_ino))

        return move

    for name in real:
        setattr(os, name, syncing(name) if name in ("fsync", "fdatasync") else moving(name))
    try:
        yield events
    finally:
        for name, fn in real.items():
            setattr(os, name, fn)
