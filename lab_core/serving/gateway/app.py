"""The gateway's HTTP API (Starlette), OpenAI-compatible where it matters.

``POST /v1/completions`` and ``POST /v1/chat/completions`` (JSON or, with ``"stream": true``,
server-sent events ending in ``data: [DONE]``), ``GET /v1/models``, ``GET /health``,
``GET /metrics``. Every request passes, in order: auth (401) -> body and fields (400, 404 for
an unknown model) -> a usable replica exists (503) -> rate limits (429) -> priority queue (429
when full) -> a replica slot -> the engine. Every error is the lab's JSON error body.

Chat messages become a prompt with this template (one block per message, then the cue)::

    <|system|>\\n{content}\\n<|user|>\\n{content}\\n<|assistant|>\\n

A streamed response carries the rate-limit headers (they are decided before the first byte);
an engine failure after the stream has started ends it with ``data: {"error": {...}}``.
A client that goes away mid-request has its engine request aborted at once (KV blocks freed),
and every request refunds its unused token reservation however it ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lab_core import jsonapi
from lab_core.jsonapi import BadInput, error_response, read_json
from lab_core.serving.gateway.keys import ApiKey, TierLimits, keys_by_value
from lab_core.serving.gateway.limits import Admission, RequestTooLarge, Reservation
from lab_core.serving.gateway.queue import Dispatcher, QueueFull
from lab_core.serving.gateway.router import NoReplicaAvailable, Replica, Router, UnknownModel
from lab_core.serving.protocol import EngineError, SamplingParams, TokenEvent
from lab_core.sim.clock import Clock, RealClock
from lab_core.sim.metrics import percentiles

DEFAULT_MAX_TOKENS = 64
MAX_TOKENS_LIMIT = 4096
MAX_STOP = 4
ROLES = ("system", "user", "assistant")
METRICS_WINDOW = 10_000
_COMMON = {"model", "max_tokens", "temperature", "stop", "stream", "stream_options", "n", "seed"}
# OpenAI fields accepted and ignored, so ordinary clients work unchanged.
_IGNORED = {
    "top_p",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "echo",
    "best_of",
    "suffix",
    "response_format",
    "metadata",
    "store",
    "service_tier",
}
COMPLETION_FIELDS = _COMMON | _IGNORED | {"prompt"}
CHAT_FIELDS = _COMMON | _IGNORED | {"messages", "max_completion_tokens", "parallel_tool_calls"}


def render_chat(messages: list[dict]) -> str:
    """The prompt for ``messages``: ``<|role|>\\ncontent\\n`` per message, then ``<|assistant|>\\n``."""
    return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"


@dataclass(frozen=True)
class ParsedRequest:
    """A validated completion or chat request."""

    chat: bool
    model: str
    prompt: str
    max_tokens: int
    params: SamplingParams
    stream: bool
    include_usage: bool


def _bad(field: str, detail: str, error: str = "invalid_field") -> BadInput:
    return BadInput(400, error, f"{field}: {detail}")


def _int_field(body: dict, name: str, default: int) -> int:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _bad(name, f"must be a positive integer, got {v!r}")
    return v


def parse_request(body: Any, *, chat: bool, max_tokens_limit: int = MAX_TOKENS_LIMIT) -> ParsedRequest:
    """Validate an OpenAI request body; ``BadInput`` (400) naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadInput(400, "bad_request", "body must be a JSON object")
    allowed = CHAT_FIELDS if chat else COMPLETION_FIELDS
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise BadInput(400, "unknown_field", f"unknown field(s) {', '.join(map(str, unknown))}")
    required = ("model", "messages") if chat else ("model", "prompt")
    missing = [f for f in required if f not in body]
    if missing:
        raise BadInput(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise _bad("model", f"must be a non-empty string, got {model!r}")
    if chat:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise _bad("messages", "must be a non-empty list of {role, content} objects")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise _bad(f"messages[{i}]", f"must be an object with role and content, got {type(m).__name__}")
            if m.get("role") not in ROLES:
                raise _bad(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, got {m.get('role')!r}")
            if not isinstance(m.get("content"), str):
                raise _bad(f"messages[{i}].content", f"must be a string, got {type(m.get('content')).__name__}")
        prompt = render_chat(messages)
        if body.get("max_tokens") is None and "max_completion_tokens" in body:
            max_tokens = _int_field(body, "max_completion_tokens", DEFAULT_MAX_TOKENS)
        else:
            max_tokens = _int_field(body, "max_tokens", DEFAULT_MAX_TOKENS)
    else:
        prompt = body["prompt"]
        if not isinstance(prompt, str):
            raise _bad("prompt", f"must be a string, got {type(prompt).__name__}")
        if not prompt:
            raise _bad("prompt", "must not be empty")
        max_tokens = _int_field(body, "max_tokens", DEFAULT_MAX_TOKENS)
    if max_tokens > max_tokens_limit:
        raise _bad("max_tokens", f"{max_tokens} is above the limit of {max_tokens_limit}")
    temperature = body.get("temperature")
    if temperature is None:
        temperature = SamplingParams.temperature  # greedy unless asked
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise _bad("temperature", f"must be a number from 0 to 2, got {temperature!r}")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and len(stop) <= MAX_STOP and all(isinstance(s, str) and s for s in stop):
        stops = tuple(stop)
    else:
        raise _bad("stop", f"must be a string or a list of at most {MAX_STOP} non-empty strings, got {stop!r}")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream", f"must be true or false, got {stream!r}")
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _bad("n", f"only n=1 is supported (one choice per request), got {n!r}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed", f"must be an integer, got {seed!r}")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _bad("stream_options", "must be an object")
    include_usage = bool(opts and opts.get("include_usage"))
    params = SamplingParams(max_tokens=max_tokens, temperature=float(temperature), stop=stops, seed=seed)
    return ParsedRequest(chat, model, prompt, max_tokens, params, stream, include_usage)


class _Stats:
    """Gateway-side counters and latency windows behind ``/metrics``."""

    def __init__(self) -> None:
        self.status = {"2xx": 0, "4xx": 0, "429": 0, "5xx": 0, "503": 0}
        self.ttft: deque[float] = deque(maxlen=METRICS_WINDOW)
        self.tpot: deque[float] = deque(maxlen=METRICS_WINDOW)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.aborted = 0

    def count(self, status: int) -> None:
        if status == 429 or status == 503:
            self.status[str(status)] += 1
        else:
            self.status[f"{status // 100}xx"] = self.status.get(f"{status // 100}xx", 0) + 1


class _Counting:
    """ASGI wrapper counting response statuses of ``/v1/`` requests."""

    def __init__(self, app: ASGIApp, stats: _Stats) -> None:
        self.app, self.stats = app, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        started = False

        async def counting_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.stats.count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            # Starlette's outermost middleware turns this into the 500 after it has left us.
            if not started:
                self.stats.count(500)
            raise


class _EventStream(StreamingResponse):
    """SSE that stops as soon as the client disconnects (whatever the ASGI spec version) and
    always runs ``on_close`` (abort + refund + slot), even if the body never started."""

    media_type = "text/event-stream"

    def __init__(self, content: Any, headers: Mapping[str, str], on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, headers={**headers, "cache-control": "no-cache"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure: list[BaseException] = []
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the client is gone
                    except Exception as exc:  # re-raised below, outside the task group
                        failure.append(exc)
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self.on_close()
        if failure:
            raise failure[0]


class _Generation:
    """One request on one replica: pulls tokens, measures TTFT/TPOT, and on ``close`` aborts
    the engine request if unfinished, refunds the reservation and frees the slot (once)."""

    def __init__(
        self,
        gw: _Gateway,
        req: ParsedRequest,
        key: ApiKey,
        replica: Replica,
        reservation: Reservation,
        prompt_ids: list[int],
        arrival: float,
    ) -> None:
        self.gw, self.req, self.key, self.replica, self.reservation = gw, req, key, replica, reservation
        self.prompt_ids, self.arrival = prompt_ids, arrival
        self.rid = ("chatcmpl-" if req.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(gw.clock.now())
        self.it: Any = None
        self.tokens = 0
        self.first_at: float | None = None
        self.last_at = 0.0
        self.finish_reason: str | None = None
        self.error = False
        self.closed = False

    async def start(self) -> TokenEvent:
        """The first token (EngineError when the replica cannot serve)."""
        engine = self.replica.engine
        self.it = engine.stream(
            self.prompt_ids, self.req.params, request_id=self.rid, priority=self.key.priority
        ).__aiter__()
        return await self.next()

    async def next(self) -> TokenEvent:
        try:
            ev = await self.it.__anext__()
        except StopAsyncIteration:
            raise EngineError("the engine ended the stream without a finished token") from None
        now = self.gw.clock.now()
        if self.first_at is None:
            self.first_at = now
            self.replica.breaker.record_success()
        self.last_at = now
        if ev.token_id >= 0:
            self.tokens += 1
        if ev.finish_reason is not None:
            self.finish_reason = ev.finish_reason
        return ev

    async def aclose_engine(self) -> None:
        if self.it is not None and hasattr(self.it, "aclose"):
            with anyio.CancelScope(shield=True):
                try:
                    await self.it.aclose()
                except Exception:  # noqa: BLE001 - the engine's own cleanup error must not mask ours
                    pass

    async def finish(self) -> None:
        """``close`` then close the engine's iterator (shielded: runs while being cancelled)."""
        self.close()
        await self.aclose_engine()

    def close(self) -> None:
        """Abort the engine request if unfinished (frees its KV blocks), settle the breaker,
        refund the unused reservation, free the slot, record TTFT/TPOT. Runs once."""
        if self.closed:
            return
        self.closed = True
        gw, breaker = self.gw, self.replica.breaker
        if self.finish_reason is None:
            try:
                self.replica.engine.abort(self.rid)
            except Exception:  # noqa: BLE001 - an abort that fails (the engine already dropped it) must not stop the cleanup
                pass
            gw.stats.aborted += not self.error
        if self.error:
            breaker.record_failure()
        elif self.first_at is None:
            breaker.record_cancel()
        gw.admission.finish(self.reservation, self.tokens)
        gw.dispatcher.release(self.replica)
        gw.stats.prompt_tokens += len(self.prompt_ids)
        gw.stats.completion_tokens += self.tokens
        if self.first_at is not None:
            gw.stats.ttft.append(self.first_at - self.arrival)
            if self.tokens > 1:
                gw.stats.tpot.append((self.last_at - self.first_at) / (self.tokens - 1))

    def usage(self) -> dict[str, int]:
        n = len(self.prompt_ids)
        return {"prompt_tokens": n, "completion_tokens": self.tokens, "total_tokens": n + self.tokens}

    async def body(self, first: TokenEvent) -> dict:
        """The whole non-streaming response."""
        parts = [first.text]
        ev = first
        while ev.finish_reason is None:
            ev = await self.next()
            parts.append(ev.text)
        text = "".join(parts)
        choice: dict[str, Any] = {"index": 0, "finish_reason": self.finish_reason}
        if self.req.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        return {
            "id": self.rid,
            "object": "chat.completion" if self.req.chat else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": [choice],
            "usage": self.usage(),
        }

    async def sse(self, first: TokenEvent):
        """``data: {chunk}`` per token, then ``data: [DONE]``; the prefix is built once."""
        head = json.dumps(
            {
                "id": self.rid,
                "object": "chat.completion.chunk" if self.req.chat else "text_completion",
                "created": self.created,
                "model": self.req.model,
            }
        )[:-1]
        dumps = json.dumps
        try:
            ev = first
            if self.req.chat:
                role = ', "choices": [{"index": 0, "delta": {"role": "assistant", "content": '
                rest = ', "choices": [{"index": 0, "delta": {"content": '
                yield f'data: {head}{role}{dumps(ev.text)}}}, "finish_reason": {dumps(ev.finish_reason)}}}]}}\n\n'
                while ev.finish_reason is None:
                    ev = await self.next()
                    yield f'data: {head}{rest}{dumps(ev.text)}}}, "finish_reason": {dumps(ev.finish_reason)}}}]}}\n\n'
            else:
                rest = ', "choices": [{"index": 0, "text": '
                yield f'data: {head}{rest}{dumps(ev.text)}, "logprobs": null, "finish_reason": {dumps(ev.finish_reason)}}}]}}\n\n'
                while ev.finish_reason is None:
                    ev = await self.next()
                    yield f'data: {head}{rest}{dumps(ev.text)}, "logprobs": null, "finish_reason": {dumps(ev.finish_reason)}}}]}}\n\n'
            if self.req.include_usage:
                yield f'data: {head}, "choices": [], "usage": {dumps(self.usage())}}}\n\n'
            yield "data: [DONE]\n\n"
        except EngineError as exc:
            self.error = True
            yield f"data: {dumps({'error': {'message': f'engine failed: {exc}', 'type': 'engine_error', 'code': 503}})}\n\n"
        finally:
            self.close()


class _Gateway:
    """State shared by the endpoints of one gateway app."""

    def __init__(
        self,
        router: Router,
        keys: dict[str, ApiKey],
        admission: Admission,
        dispatcher: Dispatcher,
        clock: Clock,
        max_tokens_limit: int,
    ) -> None:
        self.router, self.keys, self.admission, self.dispatcher = router, keys, admission, dispatcher
        self.clock, self.max_tokens_limit = clock, max_tokens_limit
        self.stats = _Stats()

    def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization")
        if not header:
            raise BadInput(401, "unauthorized", "missing Authorization header; send 'Authorization: Bearer <key>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BadInput(401, "unauthorized", "Authorization must be 'Bearer <key>'")
        key = self.keys.get(token.strip())
        if key is None:
            raise BadInput(401, "unauthorized", "unknown API key")
        return key

    async def serve(self, request: Request, chat: bool) -> Response:
        arrival = self.clock.now()
        key = self.authenticate(request)
        req = parse_request(await read_json(request), chat=chat, max_tokens_limit=self.max_tokens_limit)
        try:
            max_context = self.router.max_context(req.model)
        except UnknownModel as exc:
            raise BadInput(404, "model_not_found", str(exc)) from None
        prompt_ids = self.router.tokenize(req.model, req.prompt)
        n = len(prompt_ids)
        if max_context:
            if n >= max_context:
                raise BadInput(
                    400,
                    "context_length_exceeded",
                    f"prompt: {n} tokens leave no room in the model's context length of {max_context}",
                )
            if n + req.max_tokens > max_context:
                raise BadInput(
                    400,
                    "context_length_exceeded",
                    f"max_tokens: prompt ({n} tokens) + max_tokens ({req.max_tokens}) is above the "
                    f"model's context length of {max_context}; at most {max_context - n}",
                )
        try:
            self.router.check_available(req.model)
            decision = self.admission.admit(key, n, req.max_tokens)
        except NoReplicaAvailable as exc:
            return _unavailable(str(exc), exc.retry_after)
        except RequestTooLarge as exc:
            raise BadInput(400, "request_too_large", str(exc)) from None
        headers = decision.headers
        if not decision.allowed:
            return error_response(
                429,
                "rate_limited",
                f"rate limit reached ({', '.join(decision.refused_by)}) for {key.user} of {key.org}; "
                f"retry after {decision.retry_after}s",
                headers,
            )
        reservation = decision.reservation
        assert reservation is not None
        try:
            replica = self.dispatcher.try_acquire(req.model)
            if replica is None:
                replica = await self._wait_for_slot(request, req.model, key.priority, n + req.max_tokens)
                if replica is None:  # the client left while queued
                    self.admission.release(reservation)
                    return error_response(499, "client_closed", "the client closed the connection while queued")
        except QueueFull as exc:
            self.admission.release(reservation)
            return error_response(429, "queue_full", str(exc), {**headers, "retry-after": str(exc.retry_after)})
        except NoReplicaAvailable as exc:
            self.admission.release(reservation)
            return _unavailable(str(exc), exc.retry_after, headers)
        except BaseException:
            self.admission.release(reservation)
            raise
        gen = _Generation(self, req, key, replica, reservation, prompt_ids, arrival)
        try:
            first = await gen.start()
        except EngineError as exc:
            gen.error = True
            await gen.finish()
            return _unavailable(f"engine failed: {exc}", replica.breaker.retry_after(), headers)
        except Exception:  # an engine bug is a failure of this replica too
            gen.error = True
            await gen.finish()
            raise
        except BaseException:  # cancelled: no verdict on the replica
            await gen.finish()
            raise
        if req.stream:
            return _EventStream(gen.sse(first), headers, gen.finish)
        try:
            body = await gen.body(first)
        except EngineError as exc:
            gen.error = True
            return _unavailable(f"engine failed: {exc}", replica.breaker.retry_after(), headers)
        finally:
            await gen.finish()
        return JSONResponse(body, headers=headers)

    async def _wait_for_slot(self, request: Request, model: str, priority: int, length: int) -> Replica | None:
        """Wait in the queue for a slot, or None as soon as the client disconnects (the queue
        place is given up at once rather than when its turn comes)."""
        q = self.dispatcher.queues[model]
        if len(q) >= q.max_depth:
            raise QueueFull(len(q))
        slot = asyncio.ensure_future(self.dispatcher.wait(model, priority, length))
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait((slot, gone), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # we are being cancelled: leave the queue, or hand back a slot just won
            gone.cancel()
            slot.cancel()
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self.dispatcher.release(slot.result(), cancelled=True)
            raise
        gone.cancel()
        if not slot.done():
            slot.cancel()
            try:
                await slot
            except asyncio.CancelledError:
                pass
        return None if slot.cancelled() else slot.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _unavailable(detail: str, retry_after: float, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return error_response(
        503, "unavailable", detail, {**(headers or {}), "retry-after": str(max(1, math.ceil(retry_after)))}
    )


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in d.items()}


def create_gateway(
    router: Router,
    keys: Mapping[str, ApiKey] | Iterable[ApiKey],
    *,
    clock: Clock | None = None,
    limits: Mapping[str, TierLimits] | Admission | None = None,
    queue_depth: int = 256,
    max_tokens_limit: int = MAX_TOKENS_LIMIT,
    tier_weight: float = 10.0,
    length_weight: float = 1.0,
    aging_seconds: float = 1.0,
    metrics_key: str | None = None,
) -> Starlette:
    """The gateway app over ``router``.

    ``keys``: ``{key string: ApiKey}`` (``DEFAULT_KEYS``, ``load_keys(path)``) or ApiKeys;
    ``limits``: per-tier ``TierLimits`` (default ``DEFAULT_LIMITS``) or a ready ``Admission``;
    ``queue_depth``: most requests waiting per model before 429; ``max_tokens_limit``: largest
    ``max_tokens`` accepted; ``tier_weight``/``length_weight``/``aging_seconds``: queue order.
    ``clock`` (default the router's) times rate limits, queue ageing and TTFT/TPOT.
    ``metrics_key``: the operator's bearer token for ``/metrics`` (which shows every replica and
    tier's traffic); without one ``/metrics`` answers 403, and ``""`` makes it public.
    """
    if not isinstance(router, Router):
        raise ValueError(f"router must be a Router, got {type(router).__name__}")
    clock = clock or router.clock or RealClock()
    key_map = dict(keys) if isinstance(keys, Mapping) else keys_by_value(keys)
    for k, v in key_map.items():
        if not isinstance(v, ApiKey) or v.key != k:
            raise ValueError(f"keys: entry {k[:8]!r}... must map a key string to its ApiKey")
    if isinstance(max_tokens_limit, bool) or not isinstance(max_tokens_limit, int) or max_tokens_limit < 1:
        raise ValueError(f"max_tokens_limit must be a positive integer, got {max_tokens_limit!r}")
    admission = limits if isinstance(limits, Admission) else Admission(limits, clock=clock)
    dispatcher = Dispatcher(
        router,
        max_depth=queue_depth,
        clock=clock,
        tier_weight=tier_weight,
        length_weight=length_weight,
        aging_seconds=aging_seconds,
    )
    gw = _Gateway(router, key_map, admission, dispatcher, clock, max_tokens_limit)

    async def completions(request: Request) -> Response:
        return await gw.serve(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await gw.serve(request, chat=True)

    async def models(request: Request) -> JSONResponse:
        gw.authenticate(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": m,
                        "object": "model",
                        "created": 0,
                        "owned_by": "sysdesign-lab",
                        "max_context": router.max_context(m),
                    }
                    for m in router.models
                ],
            }
        )

    async def health(request: Request) -> JSONResponse:
        usable = {m: sum(r.usable() for r in router.replicas(m)) for m in router.models}
        ok = all(usable.values())
        body = {
            "status": "ok" if ok else "unavailable",
            "models": {m: {"replicas": len(router.replicas(m)), "usable": u} for m, u in usable.items()},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> JSONResponse:
        if metrics_key is None:
            return jsonapi.error_response(403, "metrics_off", "metrics are off; start the gateway with a metrics key")
        if metrics_key and request.headers.get("authorization", "") != f"Bearer {metrics_key}":
            return jsonapi.error_response(401, "unauthorized", "/metrics needs 'Authorization: Bearer <metrics key>'")
        s = gw.stats
        return JSONResponse(
            {
                "requests": dict(s.status),
                "ttft_s": _finite(percentiles(s.ttft, (50, 99))),
                "tpot_s": _finite(percentiles(s.tpot, (50, 99))),
                "queue_depth": dispatcher.depth(),
                "queue_depth_by_model": {m: len(q) for m, q in dispatcher.queues.items()},
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "aborted": s.aborted,
                "replicas": router.snapshot(),
            }
        )

    routes = [
        Route("/v1/completions", jsonapi.guarded(completions), methods=["POST"]),  # type: ignore[arg-type]
        Route("/v1/chat/completions", jsonapi.guarded(chat_completions), methods=["POST"]),  # type: ignore[arg-type]
        Route("/v1/models", jsonapi.guarded(models), methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers=jsonapi.EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.add_middleware(_Counting, stats=gw.stats)
    app.state.gateway = gw
    return app
