"""The lab's own implementations of the notebook's exercise seams (:mod:`lab_core.training.protocol`): single
process, one file, what the dashboard runs beside the student's. The jobs themselves use the distributed
versions (``Parallel.micro_step``, :class:`~lab_core.training.checkpoint.CheckpointManager`).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lab_core.training.calculators import zero_memory
from lab_core.training.protocol import Batch

__all__ = ["accumulation_step", "load_checkpoint", "save_checkpoint", "zero_memory"]


def accumulation_step(
    model: nn.Module,
    micro_batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    max_norm: float = 1.0,
) -> float:
    """One optimiser step over ``micro_batches``, all-reducing once (the last backward runs outside ``no_sync``)."""
    k = len(micro_batches)
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        with no_sync() if i < k - 1 else contextlib.nullcontext():
            loss = model(x, y)
            (loss / k).backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / k


def save_checkpoint(
    path: str | os.PathLike,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
) -> None:
    """Everything a bit-exact resume needs, in one file, replaced atomically."""
    path = os.fspath(path)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "loader": loader.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
    }
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-ckpt-")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(
    path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, loader: Any
) -> int:
    """Restore what :func:`save_checkpoint` wrote into the given objects; returns the saved step."""
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    loader.load_state_dict(state["loader"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    return state["step"]
