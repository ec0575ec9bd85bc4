"""Disaggregated serving: one worker process prefills, another decodes, and the prompt's KV cache
travels from the first to the second.

Why split them? Prefill pushes a whole prompt through the model in one step: a large matrix
multiply, compute-bound. Decode produces one token per sequence per step and re-reads every
weight and the whole KV cache for it: memory-bandwidth-bound. On one replica (``AsyncEngine``) a
long prefill shares the step with the running decodes and stalls their next token; with separate
pools a decode step never waits for somebody else's prompt, and each pool can be sized (and
provisioned with the hardware it is bound by) on its own. The cost is the handover: the prompt's KV
has to be copied, ``prompt_tokens * kv_bytes_per_token`` bytes
(``2 * n_layers * n_kv_heads * head_dim * 4`` per token in fp32), on every request.

Layout, all on one machine::

    main process                     prefill worker                 decode worker
    stream() --("add")-------------> LLMEngine, max_tokens=1
                                     first token: extract_kv -----> add_prefilled, step, step...
    <----------(first token event)-- (KV goes straight to decode)
    <----------------------------------------------------------(token events, transfer records)
    abort() --("abort")------------> both workers (prefill also forwards it to decode, behind
                                     any handover of that request, so none slips through)

The workers are ``spawn``-ed processes that build the same model from the same ``EngineConfig``
(same seed, so the same weights). Commands go in through a ``multiprocessing.Queue`` per worker;
the prefill worker puts its handovers (the KV as a numpy array, so the bytes really are copied
through a pipe as they would cross a network) into the decode worker's queue. Events come back
on one pipe per worker; a reader thread in the main process puts each request's tokens, in index
order, on that request's ``asyncio.Queue``, as ``AsyncEngine`` does for its engine thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import statistics
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from lab_core.llm.config import get_config
from lab_core.llm.tokenizer import ByteTokenizer
from lab_core.serving.async_engine import relay
from lab_core.serving.blocks import OutOfBlocks
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.protocol import FREE, EngineError, EngineStats, SamplingParams, TokenEvent

_IDLE_WAIT = 0.05
"""Seconds an idle worker blocks on its command queue before looking again."""
_STATS_EVERY = 0.02
"""A busy worker reports its stats at most this often; an idle one at once, then every second."""


@dataclass(frozen=True)
class TransferStats:
    """Totals of the KV handovers from the prefill worker to the decode worker."""

    count: int = 0
    bytes: int = 0
    tokens: int = 0
    seconds: float = 0.0
    p50_seconds: float = 0.0

    @property
    def bytes_per_token(self) -> float:
        """Mean KV bytes one prompt token cost to move (``kv_bytes_per_token`` of the model)."""
        return self.bytes / self.tokens if self.tokens else 0.0


# ---------------------------------------------------------------- the worker processes


def _error_message(request_id: str, exc: BaseException) -> tuple:
    """An ``("error", ...)`` message whose exception the main process can rebuild."""
    kind = "value" if isinstance(exc, ValueError) else "engine"
    return ("error", request_id, kind, str(exc))


class _Reporter:
    """Sends stats to the main process: when they changed (at most every ``_STATS_EVERY`` s while
    busy), and every second regardless."""

    def __init__(self, out: Connection) -> None:
        self.out = out
        self.last: tuple | None = None
        self.sent_at = 0.0

    def maybe_send(self, stats: EngineStats, extra: int, busy: bool) -> None:
        now = time.monotonic()
        snapshot = (stats, extra)
        changed = snapshot != self.last
        if (changed and (not busy or now - self.sent_at >= _STATS_EVERY)) or now - self.sent_at >= 1.0:
            self.out.send(("stats", stats, extra))
            self.last, self.sent_at = snapshot, now


def _check_request(ids: list[int], params: SamplingParams, max_context: int) -> None:
    """What the prefill engine cannot check itself, since it runs the request with max_tokens=1."""
    mt = params.max_tokens
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {mt!r}")
    if len(ids) + mt > max_context:
        raise ValueError(f"prompt ({len(ids)} tokens) + max_tokens ({mt}) exceeds the context length {max_context}")


def _prefill_worker(
    config: EngineConfig, inbox: mp.Queue, decode_inbox: mp.Queue, out: Connection, max_context: int
) -> None:
    """Run every request for one token, hand its KV to the decode worker, report the token."""
    torch.set_num_threads(1)
    engine = LLMEngine(config)
    out.send(("ready", "prefill"))
    reporter = _Reporter(out)
    wanted: dict[str, SamplingParams] = {}  # the request's real params (the engine sees max_tokens=1)
    done: list[str] = []

    def on_token(event: TokenEvent) -> None:
        rid = event.request_id
        params = wanted.pop(rid, None)
        done.append(rid)
        if event.finish_reason == "length" and params is not None and params.max_tokens > 1:
            seq = engine.sequences[rid]
            kv = engine.extract_kv(rid).numpy()  # [layers, 2, prompt_tokens, kv_heads, head_dim]
            decode_inbox.put(
                ("handover", rid, list(seq.prompt), event.token_id, kv, params, seq.priority, seq.arrival, time.time())
            )
            event = replace(event, finish_reason=None)
        out.send(("event", event))

    def drain(block: bool) -> bool:
        """Apply queued commands; False on "stop"."""
        while True:
            try:
                msg = inbox.get(timeout=_IDLE_WAIT) if block else inbox.get_nowait()
            except queue.Empty:
                return True
            block = False
            if msg[0] == "stop":
                return False
            if msg[0] == "add":
                _, rid, ids, params, priority, arrival = msg
                try:
                    _check_request(ids, params, max_context)
                    engine.add_request(
                        ids,
                        replace(params, max_tokens=1),
                        request_id=rid,
                        priority=priority,
                        on_token=on_token,
                        arrival=arrival,
                    )
                    wanted[rid] = params
                except Exception as exc:
                    out.send(_error_message(rid, exc))
            elif msg[0] == "abort":
                rid = msg[1]
                wanted.pop(rid, None)
                engine.abort(rid)  # emits the "abort" event when it was still here
                engine.sequences.pop(rid, None)
                # Queued behind any handover of this request, so the decode worker knows that no
                # handover of it is still to come.
                decode_inbox.put(("prefill_abort", rid))

    try:
        while drain(block=not engine.has_work()):
            if engine.has_work():
                engine.step()
            for rid in done:
                engine.sequences.pop(rid, None)
            done.clear()
            reporter.maybe_send(engine.stats(), 0, engine.has_work())
    finally:
        decode_inbox.cancel_join_thread()  # do not wait at exit on a decode worker that stopped reading
        out.close()


def _decode_worker(config: EngineConfig, inbox: mp.Queue, out: Connection) -> None:
    """Install handed-over requests and decode them; report every token and every transfer."""
    torch.set_num_threads(1)
    engine = LLMEngine(config)
    out.send(("ready", "decode"))
    reporter = _Reporter(out)
    pending: OrderedDict[str, tuple] = OrderedDict()  # handovers waiting for free blocks
    aborted: set[str] = set()  # aborted by the main process before their handover arrived
    done: list[str] = []

    def on_token(event: TokenEvent) -> None:
        if event.finished:
            done.append(event.request_id)
        out.send(("event", event))

    def install(rid: str, handover: tuple) -> bool:
        """Try to take the request over; False when the cache has no room yet."""
        prompt, first_token, kv, params, priority, arrival, sent = handover
        try:
            engine.add_prefilled(
                prompt,
                first_token,
                torch.from_numpy(kv),
                params,
                request_id=rid,
                priority=priority,
                arrival=arrival,
                on_token=on_token,
            )
        except OutOfBlocks:
            if engine.has_work():
                return False  # retried after steps free blocks
            out.send(_error_message(rid, EngineError(f"request {rid} needs more KV blocks than the cache holds")))
            return True
        except Exception as exc:
            engine.sequences.pop(rid, None)
            out.send(_error_message(rid, exc))
            return True
        out.send(("transfer", rid, int(kv.nbytes), time.time() - sent, int(kv.shape[2])))
        return True

    def drain(block: bool) -> bool:
        while True:
            try:
                msg = inbox.get(timeout=_IDLE_WAIT) if block else inbox.get_nowait()
            except queue.Empty:
                return True
            block = False
            if msg[0] == "stop":
                return False
            if msg[0] == "handover":
                rid = msg[1]
                if rid in aborted:  # the abort overtook it: never install it
                    out.send(("event", TokenEvent(rid, -1, "", 1, engine.clock(), "abort", len(msg[2]))))
                else:
                    pending[rid] = msg[2:]
            elif msg[0] in ("abort", "prefill_abort"):
                rid = msg[1]
                handover = pending.pop(rid, None)
                if handover is not None:  # never installed: only the first token was sent
                    out.send(("event", TokenEvent(rid, -1, "", 1, engine.clock(), "abort", len(handover[0]))))
                elif not engine.abort(rid) and msg[0] == "abort":
                    aborted.add(rid)  # not here yet: its handover may still be on the way
                engine.sequences.pop(rid, None)
                if msg[0] == "prefill_abort":
                    aborted.discard(rid)  # any handover of it came before this message

    try:
        while drain(block=not (engine.has_work() or pending)):
            while pending:
                rid, handover = next(iter(pending.items()))
                if not install(rid, handover):
                    break
                del pending[rid]
            if engine.has_work():
                engine.step()
            for rid in done:
                engine.sequences.pop(rid, None)
            done.clear()
            reporter.maybe_send(engine.stats(), len(pending), engine.has_work() or bool(pending))
    finally:
        out.close()


def _run_worker(target: Callable[..., None], *args: Any) -> None:
    """Process entry point: run the worker, print its traceback if it dies of an exception."""
    try:
        target(*args)
    except Exception:
        traceback.print_exc()
        raise


# ---------------------------------------------------------------- the main process


@dataclass
class _Route:
    """Where one request's events go, and the ones that arrived ahead of their turn (the first
    token comes from the prefill worker, the rest from the decode worker, on different pipes)."""

    deliver: Callable[[TokenEvent | Exception], None]
    next_index: int = 0
    early: dict[int, TokenEvent] = field(default_factory=dict)


class DisaggregatedEngine:
    """``AsyncEngineLike`` over a prefill worker process and a decode worker process.

    ``prefill_blocks`` and ``decode_blocks`` size each worker's KV cache (``config.num_blocks``
    when None). Starting takes a few seconds (two interpreters import torch and build the model);
    the constructor returns once both are ready. Call ``close`` when done.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        model_name: str = "tiny",
        prefill_blocks: int | None = None,
        decode_blocks: int | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        config = config or EngineConfig()
        self.config = config
        self.model_name = model_name
        self.model_config = get_config(config.model)
        self.prefill_config = replace(config, num_blocks=prefill_blocks or config.num_blocks)
        self.decode_config = replace(config, num_blocks=decode_blocks or config.num_blocks)
        self.max_context = min(
            self.model_config.max_seq_len, self.decode_config.num_blocks * self.decode_config.block_size
        )
        self.tokenizer = ByteTokenizer()
        self._routes: dict[str, _Route] = {}
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._error: str | None = None
        self._closed = False
        self._stopping = False
        self._ready: set[str] = set()
        self._ready_event = threading.Event()
        self._stats: dict[str, tuple[EngineStats, int]] = {}
        self._transfers: list[tuple[int, float, int]] = []  # (bytes, seconds, tokens)

        ctx = mp.get_context("spawn")
        self._prefill_in: mp.Queue = ctx.Queue()
        self._decode_in: mp.Queue = ctx.Queue()
        prefill_r, prefill_w = ctx.Pipe(duplex=False)
        decode_r, decode_w = ctx.Pipe(duplex=False)
        self._conns = {prefill_r: "prefill", decode_r: "decode"}
        self.prefill_process = ctx.Process(
            target=_run_worker,
            name=f"prefill-{model_name}",
            daemon=True,
            args=(_prefill_worker, self.prefill_config, self._prefill_in, self._decode_in, prefill_w, self.max_context),
        )
        self.decode_process = ctx.Process(
            target=_run_worker,
            name=f"decode-{model_name}",
            daemon=True,
            args=(_decode_worker, self.decode_config, self._decode_in, decode_w),
        )
        self.prefill_process.start()
        self.decode_process.start()
        prefill_w.close()  # the children hold the write ends; EOF then means the worker is gone
        decode_w.close()
        self._thread = threading.Thread(target=self._read, name=f"disagg-{model_name}", daemon=True)
        self._thread.start()
        if not self._ready_event.wait(start_timeout) or self._error is not None:
            reason = self._error or f"workers not ready within {start_timeout:g} s"
            self.close()
            raise EngineError(f"engine {model_name} did not start: {reason}")

    # ------------------------------------------------------------ state

    @property
    def healthy(self) -> bool:
        """False once either worker process has died, or after ``close``."""
        return (
            self._error is None
            and not self._closed
            and self.prefill_process.is_alive()
            and self.decode_process.is_alive()
        )

    def tokenize(self, text: str) -> list[int]:
        """Prompt ids (with BOS) as the engine will see them."""
        return self.tokenizer.encode(text, bos=True)

    def stats(self) -> EngineStats:
        """The decode pool's load (running requests, KV blocks), with every request not yet
        decoding counted as waiting: queued or prefilling in the prefill worker, or handed over
        and waiting for decode blocks. As of the workers' last stats messages."""
        empty = (EngineStats(0, 0, 0, self.decode_config.num_blocks), 0)
        d, pending = self._stats.get("decode", empty)
        p, _ = self._stats.get("prefill", empty)
        return EngineStats(
            running=d.running,
            waiting=d.waiting + pending + p.waiting + p.running,
            kv_used_blocks=d.kv_used_blocks,
            kv_total_blocks=d.kv_total_blocks,
            preemptions=d.preemptions + p.preemptions,
            prefix_hit_tokens=d.prefix_hit_tokens + p.prefix_hit_tokens,
            max_context=self.max_context,
        )

    def prefill_stats(self) -> EngineStats:
        """The prefill worker's own load (its KV pool is only held while a prompt is prefilled)."""
        return self._stats.get("prefill", (EngineStats(0, 0, 0, self.prefill_config.num_blocks), 0))[0]

    def transfer_stats(self) -> TransferStats:
        """Totals of the KV handovers so far (one per request that decoded past its first token)."""
        with self._lock:
            transfers = list(self._transfers)
        if not transfers:
            return TransferStats()
        return TransferStats(
            count=len(transfers),
            bytes=sum(t[0] for t in transfers),
            tokens=sum(t[2] for t in transfers),
            seconds=sum(t[1] for t in transfers),
            p50_seconds=statistics.median(t[1] for t in transfers),
        )

    # ------------------------------------------------------------ the reader thread

    def _read(self) -> None:
        conns = dict(self._conns)
        sentinels = {self.prefill_process.sentinel: "prefill", self.decode_process.sentinel: "decode"}
        while not self._stopping:
            ready = wait([*conns, *sentinels], timeout=0.1)
            for r in ready:
                if r in conns:
                    try:
                        msg = r.recv()
                    except (EOFError, OSError):
                        self._died(f"{conns.pop(r)} worker closed its pipe")
                        continue
                    try:
                        self._handle(conns[r], msg)
                    except Exception:
                        traceback.print_exc()
            for r in ready:
                if r in sentinels:
                    self._died(f"{sentinels.pop(r)} worker exited")

    def _died(self, reason: str) -> None:
        if self._stopping or self._closed:
            return
        with self._lock:
            if self._error is None:
                self._error = reason
            routes, self._routes = self._routes, {}
        self._ready_event.set()
        for route in routes.values():
            route.deliver(EngineError(f"engine {self.model_name} is not running: {reason}"))

    def _handle(self, worker: str, msg: tuple) -> None:
        kind = msg[0]
        if kind == "event":
            self._dispatch(msg[1])
        elif kind == "stats":
            self._stats[worker] = (msg[1], msg[2])
        elif kind == "transfer":
            with self._lock:
                self._transfers.append((msg[2], msg[3], msg[4]))
        elif kind == "error":
            _, rid, exc_kind, text = msg
            with self._lock:
                route = self._routes.pop(rid, None)
            if route is not None:
                route.deliver(ValueError(text) if exc_kind == "value" else EngineError(text))
        elif kind == "ready":
            self._ready.add(msg[1])
            if len(self._ready) == 2:
                self._ready_event.set()

    def _dispatch(self, event: TokenEvent) -> None:
        with self._lock:
            route = self._routes.get(event.request_id)
        if route is None or event.index < route.next_index:
            return
        route.early[event.index] = event
        while route.next_index in route.early:
            item = route.early.pop(route.next_index)
            route.next_index += 1
            route.deliver(item)
            if item.finished:
                with self._lock:
                    if self._routes.get(event.request_id) is route:
                        del self._routes[event.request_id]
                return

    # ------------------------------------------------------------ requests

    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, *, request_id: str, priority: int = FREE
    ) -> AsyncIterator[TokenEvent]:
        """Tokens of one request as they are generated (the first from the prefill worker, the
        rest from the decode worker); ValueError for a request the engine refuses, EngineError
        when a worker is down."""
        if not self.healthy:
            raise EngineError(f"engine {self.model_name} is not running: {self._error or 'closed'}")
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[TokenEvent | Exception] = asyncio.Queue()

        def deliver(item: TokenEvent | Exception) -> None:
            try:
                loop.call_soon_threadsafe(tokens.put_nowait, item)
            except RuntimeError:
                pass  # the consumer's event loop is closed: nobody is listening any more

        with self._lock:
            if self._error is not None:
                raise EngineError(f"engine {self.model_name} is not running: {self._error}")
            if request_id in self._routes:
                raise ValueError(f"request_id {request_id!r} is already in use")
            route = self._routes[request_id] = _Route(deliver)
        self._live.add(request_id)
        self._prefill_in.put(("add", request_id, list(prompt_ids), params, priority, time.perf_counter()))
        try:
            async with aclosing(relay(tokens, lambda: self.abort(request_id))) as events:
                async for event in events:
                    yield event
        finally:
            self._live.discard(request_id)
            with self._lock:
                if self._routes.get(request_id) is route:
                    del self._routes[request_id]

    def abort(self, request_id: str) -> bool:
        """Ask both workers to stop ``request_id`` and free its blocks wherever they are; False
        when it is not in flight."""
        if request_id not in self._live or self._closed:
            return False
        self._prefill_in.put(("abort", request_id))
        self._decode_in.put(("abort", request_id))
        return True

    def close(self) -> None:
        """Stop both workers (ask, wait, then terminate) and the reader thread."""
        if self._closed:
            return
        self._closed = True
        for q in (self._prefill_in, self._decode_in):
            try:
                q.put(("stop",))
            except (OSError, ValueError):
                pass
        for proc in (self.prefill_process, self.decode_process):
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self._stopping = True
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            routes, self._routes = self._routes, {}
        for route in routes.values():
            route.deliver(EngineError(f"engine {self.model_name} is closed"))
        for q in (self._prefill_in, self._decode_in):
            q.cancel_join_thread()
            q.close()
        for conn in self._conns:
            conn.close()
