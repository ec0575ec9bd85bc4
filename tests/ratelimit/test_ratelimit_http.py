"""The demo API through the middleware: headers, 429s, exemptions, bad input, shaping, a real server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import redis

from lab_core import cli
from lab_core.procs import free_port, stop_process, wait_until
from lab_core.ratelimit import Rule, create_app

SYSLAB = str(Path(sys.executable).with_name("syslab"))

GENEROUS = [Rule("roomy", "ip", limit=10_000, period=3600, algorithm="fixed_window")]


@pytest.fixture(autouse=True)
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # create_app() must use its own fakeredis


def run(app, scenario: Callable[[httpx.AsyncClient], Awaitable]):
    """Run ``scenario(client)`` against ``app`` in process; any exception inside the app fails the test."""

    async def main():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True, client=("198.51.100.4", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await scenario(client)

    return asyncio.run(main())


def assert_json_error(r: httpx.Response, status: int, error: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in r.text
    return body


# --- headers and 429 -------------------------------------------------------------------------


def test_success_carries_rate_limit_headers():
    async def scenario(c):
        return await c.get("/api/items", headers={"X-User": "alice"})

    r = run(create_app(), scenario)
    assert r.status_code == 200 and r.json() == {"items": []}
    # default rules: the tightest is per-user (token bucket, burst 10, 60 per 60 s): 9 of 10 left
    assert r.headers["X-RateLimit-Limit"] == "10"
    assert r.headers["X-RateLimit-Remaining"] == "9"
    assert r.headers["X-RateLimit-Reset"] == "1"  # one token back after 1 s
    assert r.headers["RateLimit-Policy"] == '"per-user";q=60;w=60'
    assert r.headers["RateLimit"] == '"per-user";r=9;t=1'
    assert "Retry-After" not in r.headers


def test_anonymous_requests_are_limited_per_ip():
    async def scenario(c):
        return await c.get("/api/items")

    r = run(create_app(), scenario)
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == '"per-ip";q=120;w=60'
    assert r.headers["X-RateLimit-Remaining"] == "119"


def test_rejection_is_429_with_retry_after_and_a_json_body():
    rules = [
        Rule("per-user-window", "user", limit=3, period=3600, algorithm="fixed_window"),
        Rule("everyone", "global", limit=1000, period=3600, algorithm="fixed_window"),
    ]

    async def scenario(c):
        return [await c.get("/api/items", headers={"X-User": "bob"}) for _ in range(5)]

    responses = run(create_app(rules), scenario)
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    refused = responses[3]
    body = refused.json()
    assert refused.headers["content-type"] == "application/json"
    assert body["error"] == "rate_limited" and body["rule"] == "per-user-window"
    assert body["scope"] == "user" and body["key"] == "per-user-window:bob"
    assert body["limit"] == 3 and body["period"] == 3600
    assert "per-user-window" in body["detail"]
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 3600 and retry == pytest.approx(body["retry_after"], abs=1)
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Policy"] == '"per-user-window";q=3;w=3600'
    assert int(refused.headers["X-RateLimit-Reset"]) == retry


def test_users_are_limited_separately():
    rules = [Rule("u", "user", limit=2, period=3600, algorithm="sliding_window_log")]

    async def scenario(c):
        out = []
        for user in ["a", "b", "a", "b", "a", "b"]:
            out.append((await c.get("/api/items", headers={"X-User": user})).status_code)
        return out

    assert run(create_app(rules), scenario) == [200, 200, 200, 200, 429, 429]


def test_report_costs_ten_units():
    async def scenario(c):
        return [await c.get("/api/report", headers={"X-User": "carol"}) for _ in range(4)]

    responses = run(create_app(), scenario)
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].json() == {"items": 0, "total_price": 0}
    assert responses[3].json()["rule"] == "expensive-report"


def test_healthz_is_exempt():
    rules = [Rule("tiny", "global", limit=1, period=3600, algorithm="fixed_window")]

    async def scenario(c):
        health = [await c.get("/healthz") for _ in range(20)]
        api = [await c.get("/api/items") for _ in range(2)]
        return health, api

    health, api = run(create_app(rules), scenario)
    assert all(r.status_code == 200 and r.json() == {"ok": True} for r in health)
    assert all("X-RateLimit-Limit" not in r.headers for r in health)
    assert [r.status_code for r in api] == [200, 429]  # health checks used none of the quota


def test_forwarded_for_only_when_trusted():
    rules = [Rule("per-ip", "ip", limit=1, period=3600, algorithm="fixed_window")]

    async def scenario(c):
        return [
            (await c.get("/api/items", headers={"X-Forwarded-For": f"203.0.113.{i}, 10.0.0.1"})).status_code
            for i in range(3)
        ]

    assert run(create_app(rules), scenario) == [200, 429, 429]  # one socket address
    assert run(create_app(rules, trust_forwarded=True), scenario) == [200, 200, 200]  # three clients


# --- bad input: 4xx JSON, never a traceback, nothing lost --------------------------------------


BAD_REQUESTS = [
    (
        "POST",
        "/api/items",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
        "bad_request",
    ),
    ("POST", "/api/items", {"content": b"\xff\xfe\x00"}, 400, "bad_request"),
    ("POST", "/api/items", {"content": b""}, 400, "bad_request"),
    ("POST", "/api/items", {"json": [1, 2]}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": "a string"}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": 5, "price": 1}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "  ", "price": 1}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "x" * 201, "price": 1}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": "1.5"}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": True}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": -1}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": None}}, 422, "invalid_item"),
    # Not finite: refused by the shared JSON reader (lab_core.jsonapi), which names the field.
    ("POST", "/api/items", {"content": b'{"name": "pen", "price": NaN}'}, 400, "bad_number"),
    ("POST", "/api/items", {"content": b'{"name": "pen", "price": 1e999}'}, 400, "bad_number"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": 1e308}}, 422, "invalid_item"),
    ("POST", "/api/items", {"content": b'{"name": "pen", "price": 1' + b"0" * 400 + b"}"}, 400, "bad_number"),
    ("POST", "/api/items", {"json": {"name": "pen"}}, 422, "invalid_item"),
    ("POST", "/api/items", {"json": {"name": "pen", "price": 1, "colour": "red"}}, 422, "invalid_item"),
    ("GET", "/api/items/abc", {}, 400, "bad_request"),
    ("GET", "/api/items/-1", {}, 400, "bad_request"),
    ("GET", "/api/items/1.5", {}, 400, "bad_request"),
    ("GET", "/api/items/%C2%B2", {}, 400, "bad_request"),  # '²' passes str.isdigit() but not int()
    ("GET", "/api/items/" + "9" * 30, {}, 404, "not_found"),  # beyond SQLite's integers
    ("GET", "/api/items/" + "9" * 5000, {}, 404, "not_found"),  # beyond int()'s 4300-digit limit
    ("GET", "/api/items/999", {}, 404, "not_found"),
    ("GET", "/api/items", {"headers": {"X-User": "bad user!"}}, 400, "bad_request"),
    ("GET", "/api/items", {"headers": {"X-User": ""}}, 400, "bad_request"),
    ("GET", "/api/items", {"headers": {"X-User": "u" * 65}}, 400, "bad_request"),
    ("GET", "/nowhere", {}, 404, "http_error"),
    ("DELETE", "/api/items", {}, 405, "http_error"),
    ("PUT", "/api/items/1", {"json": {}}, 405, "http_error"),
    ("POST", "/api/report", {}, 405, "http_error"),
]


def test_bad_input_gets_4xx_json_and_keeps_stored_items():
    async def scenario(c):
        created = [
            await c.post("/api/items", json={"name": "pen", "price": 1.5}),
            await c.post("/api/items", json={"name": " ink ", "price": 3}),
        ]
        bad = [await c.request(method, url, **kw) for method, url, kw, _, _ in BAD_REQUESTS]
        after = await c.get("/api/items")
        one = await c.get("/api/items/2")
        return created, bad, after, one

    created, bad, after, one = run(create_app(GENEROUS), scenario)
    assert [r.status_code for r in created] == [201, 201]
    assert created[0].json() == {"id": 1, "name": "pen", "price": 1.5}
    for (method, url, _, status, error), r in zip(BAD_REQUESTS, bad):
        try:
            assert_json_error(r, status, error)
        except AssertionError as exc:
            raise AssertionError(f"{method} {url}: {exc}") from None
    assert after.json() == {"items": [{"id": 1, "name": "pen", "price": 1.5}, {"id": 2, "name": "ink", "price": 3.0}]}
    assert one.json() == {"id": 2, "name": "ink", "price": 3.0}


def test_error_details_name_the_field():
    async def scenario(c):
        return [
            await c.post("/api/items", json={"name": "pen", "price": "cheap"}),
            await c.post("/api/items", json={"name": "", "price": 1}),
            await c.post("/api/items", json={"name": "pen", "price": 1, "colour": "red", "size": 2}),
        ]

    price, name, unknown = run(create_app(GENEROUS), scenario)
    assert "'price'" in price.json()["detail"]
    assert "'name'" in name.json()["detail"]
    assert unknown.json()["detail"] == "unknown field(s): colour, size"


def test_405_keeps_the_allow_header():
    async def scenario(c):
        return await c.delete("/api/items")

    r = run(create_app(GENEROUS), scenario)
    assert r.status_code == 405
    # (Starlette reports the methods of the first route on the path: GET and HEAD; POST is a second route.)
    assert {"GET", "HEAD"} <= set(r.headers["allow"].replace(" ", "").split(","))


def test_bad_identity_does_not_use_quota():
    rules = [Rule("g", "global", limit=1, period=3600, algorithm="fixed_window")]

    async def scenario(c):
        bad = [await c.get("/api/items", headers={"X-User": "no spaces"}) for _ in range(3)]
        good = await c.get("/api/items", headers={"X-User": "ok"})
        return bad, good

    bad, good = run(create_app(rules), scenario)
    assert [r.status_code for r in bad] == [400, 400, 400]
    assert good.status_code == 200


def test_index_lists_the_rules():
    async def scenario(c):
        return await c.get("/")

    body = run(create_app(), scenario).json()
    assert [r["name"] for r in body["rules"]] == ["per-user", "per-ip", "expensive-report", "global"]
    assert "GET /api/items" in body["endpoints"]


# --- shaping ---------------------------------------------------------------------------------


def test_leaky_bucket_delays_within_its_queue_and_rejects_beyond():
    # drains 10/s, queue of 5: five simultaneous requests are released 0.1 s apart; more are refused
    rules = [Rule("shaper", "ip", limit=10, period=1, burst=5, algorithm="leaky_bucket")]
    app = create_app(rules)

    async def scenario(c):
        start = time.perf_counter()
        done: list[tuple[float, int]] = []

        async def one():
            r = await c.get("/api/items")
            done.append((time.perf_counter() - start, r.status_code))

        await asyncio.gather(*(one() for _ in range(5)))
        burst_done = sorted(done)
        done.clear()
        await asyncio.sleep(0.6)  # the queue drains
        await asyncio.gather(*(one() for _ in range(8)))
        return burst_done, sorted(done, key=lambda x: x[1])

    burst, overflow = run(app, scenario)
    assert [s for _, s in burst] == [200] * 5  # shaped, not refused
    times = [t for t, _ in burst]
    # the k-th is released no earlier than k/rate = 0.1*k s (a busy machine can only make it later)
    for k, t in enumerate(times):
        assert t >= 0.1 * k - 0.02, f"request {k} answered after {t:.3f} s"
    assert times[-1] < 3.0  # but it was delayed, not parked
    assert sorted(s for _, s in overflow) == [200] * 5 + [429] * 3


# --- the real thing: uvicorn + real Redis, and the command line ---------------------------------


@pytest.mark.redis_server
def test_syslab_demo_serves_over_loopback_with_real_redis(redis_server: str, redis_real: redis.Redis, tmp_path: Path):
    assert Path(SYSLAB).exists(), f"the syslab script should sit next to {sys.executable}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [SYSLAB, "demo", "ratelimit", "--port", str(port), "--redis-url", redis_server],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/healthz", timeout=0.5).status_code == 200,
            proc,
            timeout=20,
            what="syslab demo ratelimit",
            log=log,
        )
        statuses, last = [], None
        with httpx.Client(base_url=url, timeout=5) as http:
            created = http.post("/api/items", json={"name": "pen", "price": 2}, headers={"X-User": "dora"})
            assert created.status_code == 201
            for _ in range(30):
                last = http.get("/api/items", headers={"X-User": "dora"})
                statuses.append(last.status_code)
                if last.status_code == 429:
                    break
            other = http.get("/api/items", headers={"X-User": "emil"})
        # burst of 10 per user (one used by the POST); refill is 1/s, so the 429 comes around the 10th GET
        assert statuses[-1] == 429 and 9 <= len(statuses) <= 12, statuses
        assert all(s == 200 for s in statuses[:-1])
        assert last.headers["content-type"] == "application/json"
        assert last.json()["rule"] == "per-user"
        assert int(last.headers["Retry-After"]) >= 1
        assert last.headers["X-RateLimit-Limit"] == "10" and last.headers["X-RateLimit-Remaining"] == "0"
        assert last.headers["RateLimit-Policy"] == '"per-user";q=60;w=60'
        assert other.status_code == 200  # another user is unaffected
        # the counters live in the real Redis, with an expiry
        keys = redis_real.keys("rl:token_bucket:*dora*")
        assert keys and all(redis_real.pttl(k) > 0 for k in keys)
    finally:
        stop_process(proc, timeout=10)
    assert proc.returncode is not None


BAD_RULES = "rules:\n  - name: broken-rule\n    scope: user\n    limit: -5\n    period: 1\n"


@pytest.mark.parametrize("filename", ["bad.yaml", "bad-rules.conf"])
def test_syslab_demo_refuses_a_bad_rules_file(tmp_path: Path, filename: str):
    path = tmp_path / filename
    path.write_text(BAD_RULES)
    done = subprocess.run(
        [SYSLAB, "demo", "ratelimit", "--port", str(free_port()), "--rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "rule 'broken-rule': field 'limit' must be a positive integer, got -5" in done.stderr
    assert done.stderr.startswith("syslab: error:")
    assert "Traceback" not in done.stderr


def test_cli_turns_rule_errors_into_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    bad = tmp_path / "dup.yaml"
    bad.write_text(
        "rules:\n"
        "  - {name: twice, scope: ip, limit: 1, period: 1}\n"
        "  - {name: twice, scope: user, limit: 1, period: 1}\n"
    )
    assert cli.main(["demo", "ratelimit", "--rules", str(bad)]) == 2
    assert "repeated: twice" in capsys.readouterr().err
    assert cli.main(["demo", "ratelimit", "--rules", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
