"""The colocated replica the gateway drives: the engine on its own thread, tokens to coroutines,
a consumer that leaves frees its blocks, refusals and a stopped engine reach the caller."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from lab_core.serving import AsyncEngine, EngineConfig, EngineError, LLMEngine, SamplingParams
from lab_core.serving.protocol import AsyncEngineLike

PARAMS = SamplingParams(max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def replica():
    engine = AsyncEngine(EngineConfig(num_blocks=128))
    yield engine
    engine.close()


async def collect(engine: AsyncEngine, prompt: str, request_id: str) -> list:
    return [e async for e in engine.stream(engine.tokenize(prompt), PARAMS, request_id=request_id)]


def test_concurrent_streams_equal_the_engine_run_alone(replica: AsyncEngine) -> None:
    assert isinstance(replica, AsyncEngineLike) and replica.healthy
    prompts = [f"prompt number {i}" for i in range(5)]

    async def main() -> list[list]:
        return await asyncio.gather(*(collect(replica, p, f"c{i}") for i, p in enumerate(prompts)))

    streams = asyncio.run(main())
    want = LLMEngine(EngineConfig(num_blocks=128), model=replica.engine.model).generate(prompts, PARAMS)
    for events, done in zip(streams, want):
        assert [e.index for e in events] == list(range(12)) and events[-1].finish_reason == "length"
        assert [e.token_id for e in events] == done.token_ids


def test_a_consumer_that_leaves_frees_its_blocks_at_once(replica: AsyncEngine) -> None:
    async def main() -> None:
        long = SamplingParams(max_tokens=400, ignore_eos=True)
        async with aclosing(replica.stream(replica.tokenize("x" * 60), long, request_id="gone")) as events:
            async for event in events:
                if event.index == 3:
                    break

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while replica.stats().kv_used_blocks and time.monotonic() < deadline:
        time.sleep(0.01)
    assert replica.stats().kv_used_blocks == 0
    assert replica.engine.sequences == {}, "a server keeps nothing of finished or aborted requests"
    assert not replica.abort("gone"), "nothing left to abort"


def test_a_refused_request_raises_for_its_caller_only(replica: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="context length"):
        asyncio.run(collect(replica, "y" * 600, "too-long"))
    assert replica.healthy and len(asyncio.run(collect(replica, "fine", "after"))) == 12


def test_a_closed_engine_refuses_with_engine_error() -> None:
    engine = AsyncEngine(EngineConfig(num_blocks=16))
    engine.close()
    assert not engine.healthy
    with pytest.raises(EngineError, match="not running"):
        asyncio.run(collect(engine, "hi", "late"))
