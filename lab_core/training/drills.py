"""Small seeded training loops that run a student's exercise code: the graders assert on them and the
dashboard plots them, so both see the same numbers.

* :func:`micro_batches` -- random token batches for the tiny model, split into micro-batches.
* :class:`ResumeLoop` -- a loop whose every step draws from the torch, NumPy and Python generators (dropout,
  masking, a random crop) and reads a sharded loader, so only a complete checkpoint resumes it exactly;
  :func:`straight_run`, :func:`first_half` and :func:`resumed` are its uninterrupted and interrupted runs.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lab_core.llm.config import get_config
from lab_core.store.object_store import ObjectStore
from lab_core.training.loader import ShardedLoader
from lab_core.training.parallel import WarmupCosine
from lab_core.training.protocol import Batch
from lab_core.training.shards import write_shards

SEQ = 16
VOCAB, LOOP_SEQ, LOOP_BATCH, STEPS = 97, 12, 4, 8


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: models this small run ~30x slower when two threads
    contend for two busy cores (a served dashboard's machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def micro_batches(k: int, micro: int, seed: int) -> list[Batch]:
    """``k`` micro-batches of ``micro`` random sequences of ``SEQ`` tokens (inputs, next-token targets)."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, get_config("tiny").vocab_size, (k * micro, SEQ + 1), generator=gen)
    return [(data[i * micro : (i + 1) * micro, :-1], data[i * micro : (i + 1) * micro, 1:]) for i in range(k)]


class DropoutLM(nn.Module):
    """A small bigram-style LM with dropout, so a resumed run depends on the torch RNG."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, 32)
        self.drop = nn.Dropout(0.2)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, VOCAB)
        torch.random.set_rng_state(gen_state)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy."""
        h = self.drop(torch.relu(self.hidden(self.drop(self.embed(x)))))
        return F.cross_entropy(self.head(h).flatten(0, 1), y.flatten())


def toy_store() -> ObjectStore:
    """An in-memory object store with 60 random documents as token shards (seeded: the same every call)."""
    store = ObjectStore(f"memory://syslab-grader-{uuid.uuid4().hex}")
    gen = np.random.default_rng(0)
    docs = [gen.integers(0, VOCAB - 1, int(gen.integers(20, 60))).tolist() for _ in range(60)]
    write_shards(store, "train", docs, shard_tokens=512, eos_id=VOCAB - 1, meta={})
    return store


class ResumeLoop:
    """Everything a training step touches, built fresh (as a restarted job would build it)."""

    def __init__(self, store: ObjectStore, seed: int) -> None:
        self.model = DropoutLM(seed).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=3e-2, weight_decay=0.1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine(3, STEPS, 0.1))
        self.loader = ShardedLoader(store, "train", seq_len=LOOP_SEQ, batch_size=LOOP_BATCH, seed=3)

    def step(self) -> float:
        """One optimiser step; returns its loss."""
        x, y = self.loader.next_batch()
        # Random token masking (NumPy) and a random crop (Python): the resume must restore those streams too.
        mask = torch.from_numpy(np.random.random(x.shape) < 0.1)
        x = x.masked_fill(mask, 0)
        t = random.randint(LOOP_SEQ // 2, LOOP_SEQ)
        loss = self.model(x[:, :t], y[:, :t])
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def kwargs(self) -> dict:
        """The keyword arguments a save or load takes."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "loader": self.loader}


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def straight_run(store: ObjectStore) -> tuple[list[float], list[torch.Tensor]]:
    """``STEPS`` steps without a stop: their losses and the final weights."""
    _seed_all(1)
    loop = ResumeLoop(store, seed=0)
    losses = [loop.step() for _ in range(STEPS)]
    return losses, [p.detach().clone() for p in loop.model.parameters()]


def first_half(store: ObjectStore, save: Callable, path: Path) -> ResumeLoop:
    """The same run's first ``STEPS // 2`` steps, then ``save(path, step=..., **parts)``."""
    _seed_all(1)
    loop = ResumeLoop(store, seed=0)
    for _ in range(STEPS // 2):
        loop.step()
    save(path, step=STEPS // 2, **loop.kwargs())
    return loop


def resumed(store: ObjectStore, load: Callable, path: Path) -> tuple[int, list[float], list[torch.Tensor]]:
    """A restarted process: other weights and generator states, ``load(path, **parts)``, the remaining steps.
    Returns the step ``load`` gave, the remaining steps' losses and the final weights."""
    _seed_all(12345)
    loop = ResumeLoop(store, seed=99)
    for _ in range(2):  # a restarted process has used its generators before it loads
        torch.rand(3), np.random.random(), random.random()
    step = load(path, **loop.kwargs())
    losses = [loop.step() for _ in range(STEPS - STEPS // 2)]
    return step, losses, [p.detach().clone() for p in loop.model.parameters()]
