"""Continuous batching: each step, decide which sequences run and how many tokens each computes.

Every step has a token budget. Running sequences go first, in policy order: a decode costs one
token, an unfinished chunked prefill takes what is left of the budget. When a sequence needs a
new block and none is free, the lowest-ranked running sequence is preempted by recompute (its
blocks are freed; it waits and is prefilled again later). Then, if nothing was preempted, waiting
sequences are admitted in policy order while blocks, budget and the sequence cap allow; with
chunked prefill a long prompt takes the leftover budget and continues next step, so decodes are
never held up behind it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from lab_core.serving.blocks import BlockAllocator
from lab_core.serving.sequence import Sequence, Status

POLICIES = ("fcfs", "priority")


@dataclass(frozen=True)
class SchedulerConfig:
    """Per-step limits: ``token_budget`` tokens, ``max_seqs`` running sequences; ``policy`` is
    ``"fcfs"`` (arrival order) or ``"priority"`` (paid before free, then arrival)."""

    token_budget: int = 512
    max_seqs: int = 64
    chunked_prefill: bool = True
    policy: str = "fcfs"

    def __post_init__(self) -> None:
        for name in ("token_budget", "max_seqs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")


@dataclass
class StepPlan:
    """What one step computes: ``work`` pairs a sequence with its number of new tokens."""

    work: list[tuple[Sequence, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        """Tokens computed in the step (at most the budget)."""
        return sum(n for _, n in self.work)

    @property
    def decode_batch(self) -> int:
        """Sequences decoding one token."""
        return sum(1 for s, n in self.work if n == 1 and s.remaining_prefill == 1)

    @property
    def prefill_tokens(self) -> int:
        """Tokens of prompts (or recomputed sequences) being prefilled."""
        return self.num_tokens - self.decode_batch


def policy_key(policy: str) -> Callable[[Sequence], tuple]:
    """Sort key of a policy: earlier sorts first, the last running sequence is the first victim."""
    if policy == "priority":
        return lambda s: (s.priority, s.arrival, s.order)
    return lambda s: (s.arrival, s.order)


class SchedulerBase:
    """Owns the waiting and running lists and the block manager's use; ``schedule`` (one step's
    plan) is left to subclasses (the notebook's exercise subclasses this)."""

    def __init__(self, blocks: BlockAllocator, config: SchedulerConfig | None = None) -> None:
        self.blocks, self.config = blocks, config or SchedulerConfig()
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.preemptions = 0
        self.prefix_hit_tokens = 0
        self._counter = itertools.count()
        self._key = policy_key(self.config.policy)

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence."""
        seq.order = next(self._counter)
        self.waiting.append(seq)

    def has_work(self) -> bool:
        """True while any sequence waits or runs."""
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take ``seq`` out (finished or aborted) and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
            self.blocks.free_sequence(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = Status.FINISHED

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_sequence(seq)
        seq.computed = 0
        seq.status = Status.WAITING
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.append(seq)

    def ordered(self, seqs: list[Sequence]) -> list[Sequence]:
        """``seqs`` in policy order (the first is served first, the last preempted first)."""
        return sorted(seqs, key=self._key)

    def reserve(self, seq: Sequence, n: int, plan: StepPlan) -> bool:
        """Blocks for ``n`` more tokens of running ``seq``, preempting the lowest-ranked running
        sequences not yet in ``plan`` while none is free; False when ``seq`` itself had to go
        (now or earlier in this step)."""
        if seq.status is not Status.RUNNING:
            return False
        planned = {id(s) for s, _ in plan.work}
        while not self.blocks.can_grow(seq, seq.computed + n):
            victim = next(s for s in reversed(self.ordered(self.running)) if id(s) not in planned)
            self._preempt(victim)
            plan.preempted.append(victim)
            if victim is seq:
                return False
        self.blocks.grow(seq, seq.computed + n)
        return True

    def admit(self, seq: Sequence) -> bool:
        """Move waiting ``seq`` to running with blocks for all its tokens (sharing any cached
        prefix, which counts as computed); False when the free blocks are too few."""
        if not self.blocks.can_allocate(seq):
            return False
        seq.computed = seq.cached_tokens = self.blocks.allocate(seq)
        self.prefix_hit_tokens += seq.cached_tokens
        self.waiting.remove(seq)
        self.running.append(seq)
        seq.status = Status.RUNNING
        return True

    def schedule(self) -> StepPlan:
        """Plan the next step."""
        raise NotImplementedError


class Scheduler(SchedulerBase):
    """The reference scheduler."""

    def schedule(self) -> StepPlan:
        """Plan the next step: running sequences first (decodes cost one token), then new ones."""
        plan, budget = StepPlan(), self.config.token_budget
        chunked = self.config.chunked_prefill
        for seq in self.ordered(self.running):
            n = min(seq.remaining_prefill, budget)
            if n == 0 or (not chunked and n < seq.remaining_prefill):
                break
            if not self.reserve(seq, n, plan):
                break
            plan.work.append((seq, n))
            budget -= n
        if plan.preempted:
            return plan
        for seq in self.ordered(self.waiting):
            if budget == 0 or len(self.running) >= self.config.max_seqs:
                break
            whole = len(seq.tokens) - self.blocks.cached_tokens(seq)
            if not chunked and whole > budget and plan.work:
                break
            if not self.admit(seq):
                break
            n = seq.remaining_prefill if not chunked else min(seq.remaining_prefill, budget)
            plan.work.append((seq, n))
            budget -= n
        return plan
