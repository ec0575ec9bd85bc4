"""A request inside the engine: its tokens, how far its KV is computed, its blocks and its clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.serving.protocol import FREE, SamplingParams, TokenEvent


class Status(Enum):
    """Where a sequence is: waiting for admission, running (prefill or decode), or finished."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """One request. ``tokens`` is prompt then output; ``computed`` tokens have KV in the cache.
    After a preemption ``computed`` drops to 0 and the whole of ``tokens`` is prefilled again."""

    request_id: str
    prompt: list[int]
    params: SamplingParams
    priority: int = FREE
    arrival: float = 0.0
    on_token: Callable[[TokenEvent], None] | None = None
    tokens: list[int] = field(default_factory=list)
    computed: int = 0
    block_table: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    finish_reason: str | None = None
    preemptions: int = 0
    cached_tokens: int = 0
    first_scheduled: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    text: str = ""
    order: int = 0
    token_bytes: Callable[[int], bytes] = ByteTokenizer().token_bytes

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("prompt must hold at least one token")
        self.tokens = list(self.prompt)
        self._decoder = ByteTokenizer.stream_decoder()

    @property
    def output(self) -> list[int]:
        """Generated token ids so far."""
        return self.tokens[len(self.prompt) :]

    @property
    def remaining_prefill(self) -> int:
        """Tokens whose KV is still to compute before the next token can be sampled."""
        return len(self.tokens) - self.computed

    @property
    def in_prefill(self) -> bool:
        """True until the KV of all but the newest token is computed."""
        return self.remaining_prefill > 1

    def append_text(self, token: int) -> str:
        """Decode ``token`` (its bytes) incrementally; returns the new text."""
        piece = self._decoder.decode(self.token_bytes(token))
        self.text += piece
        return piece
