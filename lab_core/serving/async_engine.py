"""An engine replica for asyncio servers: the engine steps on its own thread and each request's
tokens reach its coroutine through an ``asyncio.Queue``.

Only the engine thread touches the engine; requests and aborts reach it as commands, so there are
no locks around the model. A stream whose consumer goes away (client disconnect, cancellation)
aborts its request, which frees its KV blocks before the next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import torch

from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.protocol import FREE, EngineError, EngineStats, SamplingParams, TokenEvent


async def relay(tokens: asyncio.Queue, on_abandon: Callable[[], object]) -> AsyncIterator[TokenEvent]:
    """The events put on ``tokens`` up to the finished one (an exception put there is raised);
    ``on_abandon`` runs when the consumer stops before the end (a client gone: abort)."""
    finished = False
    try:
        while not finished:
            item = await tokens.get()
            if isinstance(item, Exception):
                finished = True
                raise item
            finished = item.finished
            yield item
    finally:
        if not finished:
            on_abandon()


class AsyncEngine:
    """``AsyncEngineLike`` over an ``LLMEngine`` running on a background thread."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        engine: LLMEngine | None = None,
        model_name: str = "tiny",
        torch_threads: int | None = 1,
        keep_finished: bool = False,
    ) -> None:
        """``keep_finished`` keeps finished requests in ``engine.sequences`` (a dashboard draws
        them); a server drops each once it has streamed to its end."""
        self.engine = engine or LLMEngine(config)
        self.model_name = model_name
        self.max_context = self.engine.max_context
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._live: set[str] = set()
        self._stats = self.engine.stats()
        self._error: str | None = None
        self.exception: Exception | None = None
        self._keep_finished = keep_finished
        self._closed = False
        self._torch_threads = torch_threads
        self.on_step: Callable[[LLMEngine], None] | None = None
        self._thread = threading.Thread(target=self._loop, name=f"engine-{model_name}", daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """False once the engine thread has died."""
        return self._error is None and self._thread.is_alive()

    def tokenize(self, text: str) -> list[int]:
        """Prompt ids (with BOS) as the engine will see them."""
        return self.engine.tokenizer.encode(text, bos=True)

    def stats(self) -> EngineStats:
        """The load as of the last step."""
        return self._stats

    def _loop(self) -> None:
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        try:
            while not self._closed:
                self._drain()
                if self.engine.has_work():
                    for event in self.engine.step():
                        if event.finished and not self._keep_finished:  # a server keeps nothing per request
                            self.engine.sequences.pop(event.request_id, None)
                    if self.on_step is not None:
                        self.on_step(self.engine)
                else:
                    self._wake.wait(0.05)
                    self._wake.clear()
                self._stats = self.engine.stats()
        except Exception as exc:
            self.exception = exc
            self._error = traceback.format_exc()
            raise

    def _drain(self) -> None:
        while True:
            try:
                kind, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                request_id, ids, params, priority, deliver = payload
                try:
                    self.engine.add_request(ids, params, request_id=request_id, priority=priority, on_token=deliver)
                except ValueError as exc:
                    deliver(exc)
            else:
                self.engine.abort(payload)
                self.engine.sequences.pop(payload, None)
                self._live.discard(payload)

    def submit(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        *,
        request_id: str,
        priority: int = FREE,
        on_token: Callable[[TokenEvent | Exception], None] | None = None,
    ) -> None:
        """Queue a request from any thread without waiting for it; ``on_token`` gets each event on
        the engine thread (or the ValueError of a request the engine refuses)."""
        self._commands.put(("add", (request_id, prompt, params, priority, on_token or (lambda _item: None))))
        self._wake.set()

    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, *, request_id: str, priority: int = FREE
    ) -> AsyncIterator[TokenEvent]:
        """Tokens of one request as they are generated; ValueError for a request the engine
        refuses, EngineError when the replica is down."""
        if not self.healthy:
            raise EngineError(f"engine {self.model_name} is not running: {self._error or 'closed'}")
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[TokenEvent | Exception] = asyncio.Queue()

        def deliver(item: TokenEvent | Exception) -> None:
            try:
                loop.call_soon_threadsafe(tokens.put_nowait, item)
            except RuntimeError:  # the caller's event loop is gone: nobody listens, stop generating
                self._commands.put(("abort", request_id))

        self._live.add(request_id)
        self._commands.put(("add", (request_id, list(prompt_ids), params, priority, deliver)))
        self._wake.set()
        try:
            async with aclosing(relay(tokens, lambda: self.abort(request_id))) as events:
                async for event in events:
                    yield event
        finally:
            self._live.discard(request_id)

    def abort(self, request_id: str) -> bool:
        """Ask the engine thread to stop ``request_id``; False when it is not in flight."""
        if request_id not in self._live:
            return False
        self._commands.put(("abort", request_id))
        self._wake.set()
        return True

    def close(self) -> None:
        """Stop the engine thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
