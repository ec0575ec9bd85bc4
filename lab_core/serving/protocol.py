"""The types every part of the serving lab speaks: what a client asks for, what streams back,
and the engine surface the gateway drives (the real engine or a test double)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

PAID, FREE = 0, 1
"""Priorities: a smaller number is served first (paid before free)."""


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
