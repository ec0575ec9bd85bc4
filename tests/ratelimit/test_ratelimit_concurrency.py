"""Many threads, many API servers, one limit: each Lua script is atomic, so exactly N pass.

A long period makes refill during the test negligible (N per 10^6 s), so "exactly N" holds with
Redis server time as well as with a frozen injected clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest
import redis

from lab_core.ratelimit import ALGORITHMS, REDIS_ALGORITHMS, RedisLimiter
from lab_core.sim import ManualClock

NAMES = sorted(REDIS_ALGORITHMS)
THREADS = 100
N = 17
PERIOD = 1_000_000.0


def hammer(acquire_for: Callable[[int], Callable[[], bool]], threads: int = THREADS) -> list[bool]:
    """Run ``acquire_for(i)()`` in ``threads`` threads released together; return every verdict."""
    barrier = threading.Barrier(threads)
    results: list[bool | BaseException] = [False] * threads

    def worker(i: int) -> None:
        acquire = acquire_for(i)
        try:
            barrier.wait(timeout=30)
            results[i] = acquire()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            results[i] = exc

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} threads failed, first: {errors[0]!r}"
    return [bool(r) for r in results]


def make(name: str, client: redis.Redis, clock: ManualClock | None, prefix: str = "rl") -> RedisLimiter:
    return REDIS_ALGORITHMS[name](N, PERIOD, clock=clock, client=client, prefix=prefix)


@pytest.fixture(params=["fakeredis", pytest.param("real", marks=pytest.mark.redis_server)])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue("redis_fake" if request.param == "fakeredis" else "redis_real")


@pytest.mark.parametrize("clock", ["server-time", "manual"])
@pytest.mark.parametrize("name", NAMES)
def test_exactly_n_of_100_threads_pass(name: str, clock: str, client: redis.Redis):
    limiter = make(name, client, None if clock == "server-time" else ManualClock(1_700_000_000.0))
    verdicts = hammer(lambda i: lambda: limiter.acquire("hot").allowed)
    assert sum(verdicts) == N
    # the key is exhausted afterwards, and other keys are untouched
    assert not limiter.acquire("hot").allowed
    assert limiter.acquire("cold").allowed


@pytest.mark.parametrize("name", NAMES)
def test_in_memory_twin_is_thread_safe_too(name: str):
    limiter = ALGORITHMS[name](N, PERIOD, clock=ManualClock())
    assert sum(hammer(lambda i: lambda: limiter.acquire("hot").allowed)) == N


@pytest.mark.parametrize("name", NAMES)
def test_cost_weighted_threads_never_overspend(name: str, client: redis.Redis):
    limiter = REDIS_ALGORITHMS[name](20, PERIOD, client=client)
    verdicts = hammer(lambda i: lambda: limiter.acquire("hot", 3).allowed)
    assert sum(verdicts) == 20 // 3  # 6 requests of 3 units; the 2 left over fit no request of 3


@pytest.mark.redis_server
@pytest.mark.parametrize("name", NAMES)
def test_separate_api_servers_share_one_limit(name: str, redis_server: str, redis_real: redis.Redis):
    """Five "API servers", each with its own connection pool and limiter, 20 threads each: N in total."""
    servers = [redis.Redis.from_url(redis_server, decode_responses=True) for _ in range(5)]
    limiters = [make(name, c, None) for c in servers]
    try:
        verdicts = hammer(lambda i: lambda lim=limiters[i % 5]: lim.acquire("shared").allowed)
    finally:
        for c in servers:
            c.close()
    assert sum(verdicts) == N
    per_server = [sum(verdicts[i::5]) for i in range(5)]
    assert sum(per_server) == N


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("clock", ["server-time", "manual"])
def test_every_key_gets_a_ttl(name: str, clock: str, client: redis.Redis):
    """No immortal keys: each key lives at least until its state stops mattering, at most one period more."""
    period = 1000.0  # long enough that no window edge passes during the test on server time
    manual = None if clock == "server-time" else ManualClock(50.0)
    limiter = REDIS_ALGORITHMS[name](3, period, clock=manual, client=client)
    for i in range(5):  # allowed and refused requests both leave every key with a TTL
        last = limiter.acquire("u1")
        assert last.allowed == (i < 3)
    keys = limiter.keys_for("u1")
    assert sorted(client.keys("*")) == sorted(keys)
    for key in keys:
        ttl_ms = client.pttl(key)
        assert ttl_ms > 0, f"{key} has no expiry (pttl {ttl_ms})"
        assert ttl_ms >= last.reset_after * 1000 - 1000, f"{key} would vanish while it still counts"
        # +1 ms: a rejection leaves the key untouched, so its TTL was rounded up at an earlier instant.
        assert ttl_ms <= math.ceil((last.reset_after + period) * 1000) + 1, f"{key}: pttl {ttl_ms} too long"


@pytest.mark.redis_server
@pytest.mark.parametrize("name", NAMES)
def test_state_expires_on_a_real_server(name: str, redis_real: redis.Redis):
    """With a short period the keys really vanish, and the key starts afresh with a full quota."""
    limiter = REDIS_ALGORITHMS[name](2, 0.1, client=redis_real)
    assert limiter.acquire("u").allowed
    assert redis_real.exists(*limiter.keys_for("u")) >= 1
    deadline = 3.0
    start = time.monotonic()
    while redis_real.exists(*limiter.keys_for("u")) and time.monotonic() - start < deadline:
        time.sleep(0.02)
    assert redis_real.exists(*limiter.keys_for("u")) == 0
    assert limiter.acquire("u").remaining == 1
