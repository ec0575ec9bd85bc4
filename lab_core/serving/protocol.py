"""The types every part of the serving lab speaks: what a client asks for, what streams back,
the engine surface the gateway drives (the real engine or a test double), and the two seams the
notebook's exercises fill (a block manager and a scheduler).

**Priority** means one thing everywhere: a request's tier, ``PAID`` (0) or ``FREE`` (1), a smaller
number served first. What differs between the parts is the *queue order* built on it, and each
has its own name (:data:`QUEUE_ORDERS`): the engine's strict ``paid-first``, the fleet
simulator's ``paid-first, aged`` and the gateway's ``tier + length + age`` score.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lab_core.serving.scheduler import StepPlan
    from lab_core.serving.sequence import Sequence

PAID, FREE = 0, 1
"""Priorities (tiers): a smaller number is served first (paid before free)."""
TIERS: dict[int, str] = {PAID: "paid", FREE: "free"}

QUEUE_ORDERS: dict[str, str] = {
    "fcfs": "arrival order (engine and fleet simulator, policy='fcfs')",
    "paid-first": "engine, policy='priority': paid before free, then arrival; free waits while paid waits",
    "paid-first, aged": (
        "fleet simulator, policy='priority': a free request ranks like a paid one arriving "
        "FleetConfig.aging s later (and longer prompts slightly later), so free is delayed, "
        "never starved"
    ),
    "tier + length + age": (
        "gateway queue: score = tier_weight*tier + length_weight*ln(prompt + max_tokens) "
        "- wait/aging_seconds, smallest first"
    ),
}
"""Each queue order built on the priority, by the name the pages and docs use for it."""


def tier_name(priority: int) -> str:
    """``"paid"`` or ``"free"`` for a priority (any other value in words)."""
    return TIERS.get(priority, f"priority {priority}")


@dataclass(frozen=True)
class SamplingParams:
    """How to generate: at most ``max_tokens`` new tokens; greedy when ``temperature`` is 0;
    stop early at EOS (unless ``ignore_eos``) or when the text ends with one of ``stop``."""

    max_tokens: int = 64
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of one request, as it streams. ``text`` is the new decoded text
    (may be empty while a multi-byte character is incomplete); the last event of a request has
    ``finish_reason`` set: ``"stop"`` (EOS or a stop string), ``"length"`` or ``"abort"``."""

    request_id: str
    token_id: int
    text: str
    index: int
    time: float
    finish_reason: str | None = None
    prompt_tokens: int = 0

    @property
    def finished(self) -> bool:
        """True for the request's last event."""
        return self.finish_reason is not None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of one engine replica's load."""

    running: int
    waiting: int
    kv_used_blocks: int
    kv_total_blocks: int
    preemptions: int = 0
    prefix_hit_tokens: int = 0
    max_context: int = 0

    @property
    def kv_utilization(self) -> float:
        """Fraction of KV-cache blocks in use, 0..1."""
        return self.kv_used_blocks / self.kv_total_blocks if self.kv_total_blocks else 0.0


class EngineError(RuntimeError):
    """The engine cannot serve a request (dead worker, request larger than the whole cache)."""


@runtime_checkable
class AsyncEngineLike(Protocol):
    """What the gateway needs from a model replica. ``stream`` yields the request's tokens and
    ends after the finished one; cancelling the iteration (client gone) must free the request's
    KV blocks at once, as ``abort`` does."""

    model_name: str
    max_context: int

    def stream(
        self, prompt_ids: list[int], params: SamplingParams, *, request_id: str, priority: int = FREE
    ) -> AsyncIterator[TokenEvent]:
        """Generate for ``prompt_ids``; raises EngineError when the replica cannot serve."""
        ...

    def abort(self, request_id: str) -> bool:
        """Stop ``request_id`` and free its blocks; False when it is unknown or done."""
        ...

    def stats(self) -> EngineStats:
        """Current load."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS)."""
        ...

    @property
    def healthy(self) -> bool:
        """False once the replica's worker has died or keeps failing."""
        ...


class BlockManagerSeam(Protocol):
    """The block-manager exercise: what the engine's scheduler calls on its KV block manager.

    A student's class subclasses ``lab_core.serving.blocks.BlockAllocator`` (which holds the free
    list, the prefix cache and ``can_allocate``/``grow``) and writes ``allocate`` and
    ``free_sequence``; the reference is ``lab_core.serving.blocks.BlockManager``."""

    block_size: int

    def allocate(self, seq: Sequence) -> int:
        """Give a waiting ``seq`` blocks for all its tokens, sharing cached prefix blocks; returns
        how many of its tokens are already computed (cached)."""
        ...

    def free_sequence(self, seq: Sequence) -> None:
        """Drop ``seq``'s references to its blocks (a block nobody references is free again)."""
        ...


class SchedulerSeam(Protocol):
    """The scheduler exercise: one engine step's plan.

    A student's class subclasses ``lab_core.serving.scheduler.SchedulerBase`` (which owns the
    waiting and running lists, ``ordered``, ``admit`` and ``reserve``) and writes ``schedule``;
    the reference is ``lab_core.serving.scheduler.Scheduler``."""

    def schedule(self) -> StepPlan:
        """Which sequences compute how many tokens in the next step (within the token budget)."""
        ...
