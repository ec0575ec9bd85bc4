"""Redis down: each rule's fail policy decides, the API never crashes, one warning, and recovery."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from lab_core.procs import free_port
from lab_core.ratelimit import RequestInfo, Rule, RulesEngine
from lab_core.ratelimit.demo import Catalogue, build_api, create_app
from lab_core.ratelimit.middleware import RateLimitMiddleware

LOGGER = "lab_core.ratelimit.rules"

OPEN_ONLY = [
    Rule("user-open", "user", limit=2, period=3600, algorithm="token_bucket", fail="open"),
    Rule("ip-open", "ip", limit=100, period=3600, algorithm="sliding_window_log", fail="open"),
]
WITH_CLOSED = OPEN_ONLY + [
    Rule("global-closed", "global", limit=100, period=3600, algorithm="fixed_window", fail="closed")
]


def quick_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2, decode_responses=True)


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A port that accepts TCP connections and never answers (a Redis stuck or behind a dead link)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        sock.close()


def req(user: str | None = "alice") -> RequestInfo:
    return RequestInfo(ip="10.1.1.1", endpoint="/api/items", user=user)


def store_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()]


def limited_app(rules: list[Rule], store: redis.Redis) -> RateLimitMiddleware:
    return RateLimitMiddleware(build_api(Catalogue(), rules), RulesEngine(rules, store=store))


def call(app, n: int, path: str = "/api/items", user: str = "alice") -> list[httpx.Response]:
    async def main():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return [await c.get(path, headers={"X-User": user}) for _ in range(n)]

    return asyncio.run(main())


# --- the engine ------------------------------------------------------------------------------


def test_fail_open_lets_requests_through_marked_degraded(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    engine = RulesEngine(OPEN_ONLY, store=quick_client(closed_port_url()))
    verdicts = [engine.check(req()) for _ in range(10)]  # 10 > the user limit of 2: nothing counts
    assert all(v.allowed for v in verdicts)
    assert all(v.degraded for v in verdicts)
    assert all(rd.error and "ConnectionError" in rd.error for v in verdicts for rd in v.checked)
    assert [rd.rule.name for rd in verdicts[0].checked] == ["user-open", "ip-open"]
    assert len(store_warnings(caplog, "unreachable")) == 1  # once, not once per request or rule


def test_fail_closed_rejects_and_names_the_rule():
    engine = RulesEngine(WITH_CLOSED, store=quick_client(closed_port_url()))
    v = engine.check(req())
    assert not v.allowed and v.degraded
    assert v.deciding.rule.name == "global-closed" and v.deciding.error
    assert v.deciding.decision.retry_after > 0
    assert [rd.decision.allowed for rd in v.checked] == [True, True, False]  # open rules passed first


def test_memory_engine_is_never_degraded():
    v = RulesEngine(WITH_CLOSED).check(req())
    assert v.allowed and not v.degraded


def test_hanging_redis_times_out_instead_of_blocking(hanging_url: str):
    engine = RulesEngine(WITH_CLOSED, store=quick_client(hanging_url))
    start = time.monotonic()
    v = engine.check(req())
    elapsed = time.monotonic() - start
    assert not v.allowed and v.deciding.rule.name == "global-closed"
    assert "Timeout" in v.deciding.error
    assert elapsed < 10  # bounded by the socket timeouts (and redis-py's few retries), not forever


# --- the HTTP API ----------------------------------------------------------------------------


def test_api_fail_open_serves_normally(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    responses = call(limited_app(OPEN_ONLY, quick_client(closed_port_url())), 8)
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json() == {"items": []} for r in responses)
    assert len(store_warnings(caplog, "unreachable")) == 1


def test_api_fail_closed_answers_503_json(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    responses = call(limited_app(WITH_CLOSED, quick_client(closed_port_url())), 5)
    for r in responses:
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/json"
        assert r.headers["Retry-After"] == "1"
        body = r.json()
        assert body["error"] == "rate_limiter_unavailable" and body["rule"] == "global-closed"
        assert "global-closed" in body["detail"]
    assert len(store_warnings(caplog, "unreachable")) == 1


def test_api_survives_a_hanging_redis(hanging_url: str):
    responses = call(limited_app(WITH_CLOSED, quick_client(hanging_url)), 1)
    assert responses[0].status_code == 503 and responses[0].json()["rule"] == "global-closed"


def test_exempt_paths_work_with_redis_down():
    responses = call(limited_app(WITH_CLOSED, quick_client(closed_port_url())), 3, path="/healthz")
    assert [r.status_code for r in responses] == [200] * 3


def test_create_app_with_unreachable_redis_url_uses_default_rules(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(redis_url=closed_port_url())  # default rules: the global rule fails closed
    [r] = call(app, 1)
    assert r.status_code == 503 and r.json()["rule"] == "global"


# --- recovery --------------------------------------------------------------------------------


@pytest.mark.redis_server
def test_limiting_resumes_when_redis_comes_back(redis_factory, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    server = redis_factory()
    store = quick_client(server.url)
    engine = RulesEngine(WITH_CLOSED, store=store)
    app = RateLimitMiddleware(build_api(Catalogue(), WITH_CLOSED), engine)

    # healthy: the user rule (2 per hour) limits
    assert [r.status_code for r in call(app, 3)] == [200, 200, 429]

    server.stop()
    down = call(app, 4)
    assert [r.status_code for r in down] == [503] * 4  # the global rule fails closed
    v = engine.check(req("frank"))
    assert v.degraded and not v.allowed
    assert len(store_warnings(caplog, "unreachable")) == 1

    server.start()  # same port, empty: no counters and no cached Lua scripts
    up = call(app, 3, user="gina")
    assert [r.status_code for r in up] == [200, 200, 429]  # limited again (scripts reloaded)
    assert up[-1].json()["rule"] == "user-open"
    v = engine.check(req("hana"))
    assert v.allowed and not v.degraded
    assert len(store_warnings(caplog, "reachable again")) == 1
    assert len(store_warnings(caplog, "unreachable")) == 1
    assert store.keys("rl:*")  # counters are back in Redis
    store.close()


@pytest.mark.redis_server
def test_second_outage_warns_again(redis_factory, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    server = redis_factory()
    engine = RulesEngine(OPEN_ONLY, store=quick_client(server.url))
    for outage in (1, 2):
        assert not engine.check(req()).degraded
        server.stop()
        assert all(engine.check(req()).degraded for _ in range(3))
        server.start()
        assert len(store_warnings(caplog, "unreachable")) == outage
    assert not engine.check(req()).degraded
    assert len(store_warnings(caplog, "reachable again")) == 2


@pytest.mark.parametrize("backend", ["fakeredis", pytest.param("real", marks=pytest.mark.redis_server)])
def test_a_corrupted_counter_key_does_not_crash_the_api(backend: str, request: pytest.FixtureRequest):
    """A key of the wrong type makes the Lua script fail (WRONGTYPE): the rule's fail policy answers."""
    store: redis.Redis = request.getfixturevalue("redis_fake" if backend == "fakeredis" else "redis_real")
    app = limited_app(OPEN_ONLY, store)
    engine = app.engine
    key = engine.limiter("user-open").keys_for("user-open:alice")[0]
    store.set(key, "not a hash")
    responses = call(app, 3)
    assert [r.status_code for r in responses] == [200] * 3  # fails open, never a 500
    v = engine.check(req())
    assert v.degraded and "WRONGTYPE" in v.checked[0].error.upper()
    store.delete(key)
    assert not engine.check(req()).degraded  # heals once the key is gone
