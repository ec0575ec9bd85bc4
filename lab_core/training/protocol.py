"""The student seams of Lab 08: the functions the notebook's exercises write, which the graders and the
dashboard (``dashboard(accumulation_step=..., zero_bytes_per_gpu=..., save_checkpoint=..., load_checkpoint=...)``)
call. The lab's own implementations are in :mod:`lab_core.training.reference`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class AccumulationStep(Protocol):
    """Exercise 1: one optimiser step over ``micro_batches`` (inputs, targets), each loss counting 1/k,
    gradients all-reduced once (every micro-step but the last inside ``no_sync()``), clipped to ``max_norm``,
    then ``optimizer.step()`` and cleared gradients. Returns the mean of the unscaled micro-batch losses."""

    def __call__(
        self,
        model: nn.Module,
        micro_batches: Sequence[Batch],
        optimizer: torch.optim.Optimizer,
        *,
        no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        max_norm: float = 1.0,
    ) -> float: ...


class ZeroBytesPerGPU(Protocol):
    """Exercise 2: model-state bytes per GPU at ZeRO ``stage`` (0..3) over ``dp`` data-parallel ranks, with 2 bytes
    of weights, 2 of gradients and ``k`` of optimiser state per parameter; ValueError for another stage."""

    def __call__(self, num_params: float, stage: int, dp: int, *, k: float = 12) -> float: ...


class SaveCheckpoint(Protocol):
    """Exercise 3: write ``step``, the model, optimiser, scheduler, loader position and the torch, Python and
    NumPy generators to one file at ``path``, atomically (temporary file, fsync, rename)."""

    def __call__(
        self,
        path: str | os.PathLike,
        *,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loader: Any,
    ) -> None: ...


class LoadCheckpoint(Protocol):
    """Exercise 3: restore everything :class:`SaveCheckpoint` wrote into the given objects; returns the step."""

    def __call__(
        self,
        path: str | os.PathLike,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loader: Any,
    ) -> int: ...
