"""Disaggregated prefill/decode (``lab_core.serving.disagg``): the same greedy tokens as one
colocated engine, one KV handover per request of the documented size, aborts that free the decode
pool, refused requests, and dead workers.

Starting the two worker processes takes seconds, so one engine serves the whole module; its
decode pool (40 blocks) is small enough for a burst of requests to fill it. The last test kills a
worker of that engine."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from contextlib import aclosing

import pytest

from lab_core.llm.config import get_config
from lab_core.serving.disagg import DisaggregatedEngine, TransferStats
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.protocol import AsyncEngineLike, EngineError, SamplingParams, TokenEvent

pytestmark = pytest.mark.timeout(180)

CONFIG = EngineConfig(num_blocks=128, seed=0)
PROMPTS = ["Hello", "The quick brown fox jumps over the lazy dog", "a" * 40, "disaggregated serving moves the KV cache"]
GREEDY = SamplingParams(max_tokens=24, ignore_eos=True)
_ids = itertools.count()


def rid() -> str:
    return f"t-{next(_ids)}"


def kv_bytes(prompt_len: int) -> int:
    cfg = get_config(CONFIG.model)
    return prompt_len * 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 4


DECODE_BLOCKS = 40  # 640 tokens: the full context (512) fits, ten 8-block requests do not


@pytest.fixture(scope="module")
def engine():
    eng = DisaggregatedEngine(CONFIG, model_name="tiny", decode_blocks=DECODE_BLOCKS)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def reference() -> dict[str, list[int]]:
    """Greedy tokens of the colocated engine, same config and seed."""
    done = LLMEngine(CONFIG).generate(PROMPTS, GREEDY)
    return {p: c.token_ids for p, c in zip(PROMPTS, done)}


async def collect(eng: DisaggregatedEngine, prompt: str, params: SamplingParams = GREEDY) -> list[TokenEvent]:
    return [ev async for ev in eng.stream(eng.tokenize(prompt), params, request_id=rid())]


def check_events(events: list[TokenEvent], prompt_len: int, n: int) -> None:
    assert [e.index for e in events] == list(range(n))
    assert [e.finish_reason for e in events] == [None] * (n - 1) + ["length"]
    assert all(e.prompt_tokens == prompt_len for e in events)


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (a deadline, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_satisfies_protocol_and_starts_healthy(engine):
    assert isinstance(engine, AsyncEngineLike)
    assert engine.healthy
    assert engine.max_context == 512
    assert engine.tokenize("hi") == LLMEngine(CONFIG).tokenizer.encode("hi", bos=True)
    assert engine.stats().kv_total_blocks == DECODE_BLOCKS
    assert engine.prefill_stats().kv_total_blocks == CONFIG.num_blocks


def test_greedy_output_matches_colocated_engine(engine, reference):
    for prompt in PROMPTS:
        events = asyncio.run(collect(engine, prompt))
        check_events(events, len(engine.tokenize(prompt)), GREEDY.max_tokens)
        assert [e.token_id for e in events] == reference[prompt], prompt


def test_concurrent_streams(engine, reference):
    async def main():
        return await asyncio.gather(*(collect(engine, p) for p in PROMPTS * 2))

    results = asyncio.run(main())
    for prompt, events in zip(PROMPTS * 2, results):
        check_events(events, len(engine.tokenize(prompt)), GREEDY.max_tokens)
        assert [e.token_id for e in events] == reference[prompt], prompt
    assert engine.healthy


def test_transfer_stats_one_handover_per_request_of_prompt_kv_size(engine):
    before = engine.transfer_stats()
    prompts = PROMPTS[:3]

    async def main():
        return await asyncio.gather(*(collect(engine, p) for p in prompts))

    asyncio.run(main())
    after = engine.transfer_stats()
    lens = [len(engine.tokenize(p)) for p in prompts]
    assert isinstance(after, TransferStats)
    assert after.count - before.count == len(prompts)
    assert after.bytes - before.bytes == sum(kv_bytes(n) for n in lens)
    assert after.tokens - before.tokens == sum(lens)
    assert after.bytes_per_token == get_config(CONFIG.model).kv_bytes_per_token
    assert after.seconds >= before.seconds and 0 <= after.p50_seconds <= after.seconds

    # A one-token answer is finished by the prefill worker: nothing to hand over.
    events = asyncio.run(collect(engine, "one", SamplingParams(max_tokens=1)))
    assert [(e.index, e.finish_reason) for e in events] == [(0, "length")]
    assert engine.transfer_stats().count == after.count


def test_cancelled_stream_frees_decode_blocks(engine):
    prompt = engine.tokenize("a long answer, cut short by a client that goes away")
    params = SamplingParams(max_tokens=engine.max_context - len(prompt), ignore_eos=True)

    async def main():
        seen = []
        async with aclosing(engine.stream(prompt, params, request_id=rid())) as stream:
            async for ev in stream:
                seen.append(ev)
                if ev.index >= 3 and engine.stats().kv_used_blocks > 0:
                    break  # the decode worker holds this request's KV; now the client leaves
        assert seen[-1].finish_reason is None
        await wait_for(
            lambda: engine.stats().kv_used_blocks == 0 and engine.stats().running == 0,
            "the decode pool to be empty after the cancellation",
        )

    asyncio.run(main())


def test_abort_ends_the_stream_and_frees_decode_blocks(engine):
    prompt = engine.tokenize("abort me")
    params = SamplingParams(max_tokens=engine.max_context - len(prompt), ignore_eos=True)
    request_id = rid()

    async def main():
        events = []
        async for ev in engine.stream(prompt, params, request_id=request_id):
            events.append(ev)
            if ev.index == 2:
                assert engine.abort(request_id)
        assert events[-1].finish_reason == "abort"
        assert [e.index for e in events] == list(range(len(events)))
        assert len(events) < params.max_tokens
        await wait_for(lambda: engine.stats().kv_used_blocks == 0, "the decode pool to be empty after abort")
        assert not engine.abort(request_id)  # done
        assert not engine.abort("never-seen")

    asyncio.run(main())


def test_abort_between_prefill_and_decode(engine):
    """The decode worker is frozen, so the handover sits in its queue when the abort is sent; in
    whichever order the handover and the aborts reach it, the request ends with "abort" and leaves
    no blocks behind."""
    prompt = engine.tokenize("caught in transit")
    params = SamplingParams(max_tokens=100, ignore_eos=True)
    request_id = rid()
    pid = engine.decode_process.pid

    async def main():
        events = []
        os.kill(pid, signal.SIGSTOP)
        try:
            async for ev in engine.stream(prompt, params, request_id=request_id):
                events.append(ev)
                if ev.index == 0:
                    assert engine.abort(request_id)
                    await asyncio.sleep(0.05)  # lets the abort reach the queue first (usually)
                    os.kill(pid, signal.SIGCONT)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Usually [(0, None), (1, "abort")]; if the decode worker installed the handover before any
        # abort reached it, it may decode a few tokens first. Either way the request ends aborted.
        assert [e.index for e in events] == list(range(len(events)))
        assert events[-1].finish_reason == "abort" and len(events) < params.max_tokens
        await wait_for(
            lambda: engine.stats().kv_used_blocks == 0 and engine.stats().waiting == 0, "the decode pool to be empty"
        )

    asyncio.run(main())
    assert engine.healthy
    assert asyncio.run(collect(engine, "still serving"))[-1].finish_reason == "length"


def test_requests_the_engine_cannot_serve_raise_value_error(engine):
    prompt = engine.tokenize("too long")

    async def main():
        with pytest.raises(ValueError, match="context length"):
            await collect(engine, "too long", SamplingParams(max_tokens=engine.max_context - len(prompt) + 1))
        with pytest.raises(ValueError, match="max_tokens"):
            await collect(engine, "zero", SamplingParams(max_tokens=0))
        with pytest.raises(ValueError, match="prompt"):
            _ = [ev async for ev in engine.stream([], GREEDY, request_id=rid())]
        # The largest request that fits still runs.
        events = await collect(
            engine, "too long", SamplingParams(max_tokens=engine.max_context - len(prompt), ignore_eos=True)
        )
        assert events[-1].finish_reason == "length"

    asyncio.run(main())
    assert engine.healthy


def test_full_decode_pool_waits_for_blocks_and_still_matches(engine):
    """Ten 8-block requests on a 40-block decode pool: handovers wait (and decodes are preempted)
    until blocks free up, and every answer is still the colocated engine's."""
    params = SamplingParams(max_tokens=40, ignore_eos=True)
    prompts = [f"request number {i} asks for forty tokens, " * 2 for i in range(10)]
    done = LLMEngine(CONFIG).generate(prompts, params)
    reference = {p: c.token_ids for p, c in zip(prompts, done)}
    before = engine.transfer_stats().count
    assert all(
        CONFIG.block_size * 7 < len(engine.tokenize(p)) + params.max_tokens <= CONFIG.block_size * 8 for p in prompts
    )

    async def main():
        results = await asyncio.gather(*(collect(engine, p, params) for p in prompts))
        for prompt, events in zip(prompts, results):
            check_events(events, len(engine.tokenize(prompt)), params.max_tokens)
            assert [e.token_id for e in events] == reference[prompt]
        await wait_for(
            lambda: engine.stats().kv_used_blocks == 0 and engine.stats().waiting == 0, "the decode pool to drain"
        )

    asyncio.run(main())
    assert engine.transfer_stats().count - before == len(prompts)


def test_killed_worker_fails_streams_and_health(engine):
    """Runs last: it kills the module's engine."""
    proc = engine.decode_process
    prompt = engine.tokenize("the decode worker dies under me")
    params = SamplingParams(max_tokens=50, ignore_eos=True)

    async def main():
        os.kill(proc.pid, signal.SIGSTOP)  # frozen: the request gets its first token and no more
        try:
            with pytest.raises(EngineError):
                async for ev in engine.stream(prompt, params, request_id=rid()):
                    assert ev.index == 0
                    proc.kill()
        finally:
            if proc.is_alive():
                proc.kill()
        await wait_for(lambda: not engine.healthy, "healthy to turn False")
        with pytest.raises(EngineError):
            await collect(engine, "anyone there?")

    asyncio.run(main())
    assert not engine.healthy
    engine.close()  # with one worker dead, close still returns
    assert not engine.prefill_process.is_alive() and not engine.decode_process.is_alive()
