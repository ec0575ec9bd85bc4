"""Lab 07's API gateway against a fake engine: token refunds, all-or-nothing admission, the
priority queue with ageing, the circuit breaker, the router, every endpoint (JSON and SSE),
every bad input as a JSON error naming the field, and a client disconnect aborting the engine
request (real uvicorn server)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_json_error, run_asgi
from lab_core.procs import free_port
from lab_core.ratelimit.memory import TokenBucket
from lab_core.serving.gateway import (
    DEFAULT_KEYS,
    DEFAULT_LIMITS,
    Admission,
    ApiKey,
    CircuitBreaker,
    Dispatcher,
    NoReplicaAvailable,
    PriorityQueue,
    QueueFull,
    RequestTooLarge,
    Router,
    TierLimits,
    UnknownModel,
    create_gateway,
    load_keys,
    render_chat,
)
from lab_core.serving.protocol import FREE, PAID, AsyncEngineLike, EngineError, EngineStats, SamplingParams, TokenEvent
from lab_core.sim.clock import ManualClock

PAID_H = {"Authorization": "Bearer sk-paid-demo"}
FREE_H = {"Authorization": "Bearer sk-free-demo"}
ALICE, BOB = DEFAULT_KEYS["sk-paid-demo"], DEFAULT_KEYS["sk-free-demo"]


class FakeEngine:
    """An ``AsyncEngineLike`` double: one byte = one token; replies ``reply`` one character per
    token (``"stop"`` when it runs out, ``"length"`` at max_tokens), one token per ``delay`` sleep.
    ``gate`` (an asyncio.Event) holds every stream before its first token; ``fail`` raises
    EngineError before the first token, ``fail_after`` after that many tokens."""

    def __init__(
        self, model_name: str = "tiny", *, max_context: int = 256, reply: str = "hello world", delay: float = 0.0
    ) -> None:
        self.model_name, self.max_context, self.reply, self.delay = model_name, max_context, reply, delay
        self.inflight: dict[str, int] = {}
        self.aborted: list[str] = []
        self.started: list[tuple[str, int, SamplingParams]] = []
        self.fail = False
        self.fail_after: int | None = None
        self.is_healthy = True
        self.waiting = 0
        self.gate: asyncio.Event | None = None

    @property
    def healthy(self) -> bool:
        return self.is_healthy

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def stats(self) -> EngineStats:
        used = sum(self.inflight.values()) // 16
        return EngineStats(
            running=len(self.inflight),
            waiting=self.waiting,
            kv_used_blocks=used,
            kv_total_blocks=100,
            max_context=self.max_context,
        )

    def abort(self, request_id: str) -> bool:
        self.aborted.append(request_id)
        return self.inflight.pop(request_id, None) is not None

    async def stream(self, prompt_ids, params, *, request_id, priority=FREE):
        if self.fail:
            raise EngineError("fake engine is down")
        self.inflight[request_id] = len(prompt_ids)
        self.started.append((request_id, priority, params))
        text = ""
        try:
            if self.gate is not None:
                await self.gate.wait()
            for i in range(params.max_tokens):
                await asyncio.sleep(self.delay)
                if request_id not in self.inflight:
                    yield TokenEvent(request_id, -1, "", i, time.time(), "abort", len(prompt_ids))
                    return
                if self.fail_after is not None and i >= self.fail_after:
                    raise EngineError("fake engine died mid-stream")
                ch = self.reply[i]
                text += ch
                finish = None
                if any(text.endswith(s) for s in params.stop):
                    finish = "stop"
                elif i == len(self.reply) - 1:
                    finish = "stop"
                elif i == params.max_tokens - 1:
                    finish = "length"
                yield TokenEvent(request_id, ord(ch), ch, i, time.time(), finish, len(prompt_ids))
                if finish:
                    return
        finally:
            self.inflight.pop(request_id, None)


def gateway(*engines: FakeEngine, clock=None, max_inflight: int = 64, **kwargs):
    engines = engines or (FakeEngine(),)
    models: dict[str, list] = {}
    for e in engines:
        models.setdefault(e.model_name, []).append(e)
    router = Router(
        models,
        clock=clock,
        max_inflight=max_inflight,
        failure_threshold=kwargs.pop("failure_threshold", 3),
        open_seconds=kwargs.pop("open_seconds", 30.0),
    )
    kwargs.setdefault("metrics_key", "")  # public: these tests read /metrics without a key
    return create_gateway(router, DEFAULT_KEYS, clock=clock, **kwargs), router


def post(app, path: str, body, headers=PAID_H) -> httpx.Response:
    kwargs = {"content": body} if isinstance(body, (str, bytes)) else {"json": body}
    return run_asgi(app, lambda c: c.post(path, headers=headers, **kwargs))


def sse(text: str) -> list:
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks), blocks
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in blocks]


# --- TokenBucket.refund ------------------------------------------------------------------------


def test_refund_gives_units_back_capped_at_capacity():
    clock = ManualClock()
    tb = TokenBucket(10, 60, clock=clock)
    assert tb.acquire("k", 8).remaining == 2
    tb.refund("k", 5)
    assert tb.acquire("k", 7).allowed  # 7 back in hand
    assert not tb.acquire("k", 1).allowed
    tb.refund("k", 1000)  # capped
    assert tb.acquire("k", 10).allowed and not tb.acquire("k", 1).allowed
    tb.refund("never-seen", 3)  # a fresh key is full already
    assert tb.acquire("never-seen", 10).allowed
    tb.refund("k", 0)
    assert not tb.acquire("k", 1).allowed


@pytest.mark.parametrize("units", [-1, 1.5, "2", True, None])
def test_refund_validates_units(units):
    with pytest.raises(ValueError, match="units"):
        TokenBucket(10, 60, clock=ManualClock()).refund("k", units)


# --- keys and limits ---------------------------------------------------------------------------


def test_default_keys_are_the_documented_demo_set():
    assert (ALICE.user, ALICE.org, ALICE.tier, ALICE.priority) == ("alice", "acme", "paid", PAID)
    assert (BOB.user, BOB.org, BOB.tier, BOB.priority) == ("bob", "hobby", "free", FREE)
    assert "sk-paid-demo" not in repr(ALICE)
    paid, free = DEFAULT_LIMITS["paid"], DEFAULT_LIMITS["free"]
    assert paid.requests_per_min > free.requests_per_min and paid.tokens_per_min > free.tokens_per_min
    assert paid.org_tokens_per_min > paid.tokens_per_min


def test_load_keys_from_yaml_and_json(tmp_path: Path):
    y = tmp_path / "keys.yaml"
    y.write_text("keys:\n  - {key: sk-a, user: ann, org: o1, tier: paid}\n  - {key: sk-b, user: ben, org: o1}\n")
    keys = load_keys(y)
    assert keys["sk-a"] == ApiKey("sk-a", "ann", "o1", "paid") and keys["sk-b"].tier == "free"
    j = tmp_path / "keys.json"
    j.write_text(json.dumps([{"key": "sk-c", "user": "cat", "org": "o2", "tier": "free"}]))
    assert load_keys(j)["sk-c"].user == "cat"


@pytest.mark.parametrize(
    "content, mentions",
    [
        ("keys:\n  - {key: sk-a, user: ann, org: o1, tier: gold}\n", "keys[0].tier"),
        ("keys:\n  - {key: sk-a, user: ann, tier: paid}\n", "org"),
        ("keys:\n  - {key: sk-a, user: '', org: o, tier: paid}\n", "keys[0].user"),
        ("keys:\n  - {key: 7, user: u, org: o}\n", "keys[0].key"),
        ("keys:\n  - {key: sk-a, user: u, org: o, level: 3}\n", "level"),
        ("keys:\n  - {key: sk-a, user: u, org: o}\n  - {key: sk-a, user: v, org: o}\n", "twice"),
        ("keys: []\n", "non-empty list"),
        ("users: []\n", "'keys'"),
        ("keys: [\n", "not valid YAML"),
        ("keys:\n  - just-a-string\n", "keys[0]"),
    ],
)
def test_load_keys_names_the_file_and_the_field(tmp_path: Path, content, mentions):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_keys(path)
    assert str(path) in str(info.value) and mentions in str(info.value)


def test_load_keys_missing_file_and_bad_json(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot read"):
        load_keys(tmp_path / "absent.yaml")
    (tmp_path / "k.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_keys(tmp_path / "k.json")


def test_tier_limits_and_api_key_validate():
    with pytest.raises(ValueError, match="tokens_per_min"):
        TierLimits(10, 0, 10, 10)
    with pytest.raises(ValueError, match="tier"):
        ApiKey("sk", "u", "o", "gold")
    with pytest.raises(ValueError, match="limits"):
        Admission({"paid": DEFAULT_LIMITS["paid"]})


# --- admission ---------------------------------------------------------------------------------

SMALL = {"paid": TierLimits(5, 100, 2, 1000), "free": TierLimits(5, 100, 50, 1000)}


def test_admission_is_all_or_nothing():
    clock = ManualClock()
    adm = Admission(SMALL, clock=clock)
    ann, ben = ApiKey("a", "ann", "acme", "paid"), ApiKey("b", "ben", "acme", "paid")
    assert adm.admit(ann, 5, 5).allowed and adm.admit(ann, 5, 5).allowed  # org acme: 2 requests/min
    before = adm.remaining(ben)
    d = adm.admit(ben, 5, 5)
    assert not d.allowed and d.refused_by == ("org_requests",) and d.reservation is None
    assert adm.remaining(ben) == before  # ben's user buckets and the org's tokens gave back what they took
    assert before["user_requests"] == 5 and before["user_tokens"] == 100 and before["org_tokens"] == 980


def test_admission_headers_and_retry_after():
    clock = ManualClock()
    adm = Admission(SMALL, clock=clock)
    d = adm.admit(ALICE, 30, 40)
    assert d.allowed and d.headers["x-ratelimit-remaining-tokens"] == "30"
    assert d.headers["x-ratelimit-limit-tokens"] == "100" and d.headers["x-ratelimit-limit-requests"] == "2"
    assert d.headers["x-ratelimit-remaining-requests"] == "1"
    assert {"x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"} <= set(d.headers)
    assert "retry-after" not in d.headers
    refused = adm.admit(ALICE, 30, 40)  # needs 70, 30 left, refill 100/60 per s -> 24 s
    assert not refused.allowed and refused.refused_by == ("user_tokens",)
    assert refused.retry_after == 24 and refused.headers["retry-after"] == "24"
    assert refused.headers["x-ratelimit-remaining-requests"] == "1"  # the request it took was given back
    clock.advance(refused.retry_after)
    assert adm.admit(ALICE, 30, 40).allowed


def test_refund_math_of_finish_and_release():
    clock = ManualClock()
    adm = Admission(SMALL, clock=clock)
    r = adm.admit(ALICE, 10, 50).reservation
    assert adm.remaining(ALICE)["user_tokens"] == 40
    assert adm.finish(r, 20) == 30 and adm.remaining(ALICE)["user_tokens"] == 70
    assert adm.finish(r, 0) == 0 and adm.remaining(ALICE)["user_tokens"] == 70  # once only
    r2 = adm.admit(ALICE, 10, 50).reservation
    assert adm.finish(r2, 500) == 0  # used more than max (should not happen): no refund, no error
    r3 = adm.admit(BOB, 10, 50).reservation
    adm.release(r3)
    assert adm.remaining(BOB) == {"user_requests": 5, "org_requests": 50, "user_tokens": 100, "org_tokens": 1000}


def test_a_request_larger_than_the_bucket_is_refused_outright():
    adm = Admission(SMALL, clock=ManualClock())
    with pytest.raises(RequestTooLarge, match="max_tokens"):
        adm.admit(ALICE, 60, 41)
    assert adm.admit(ALICE, 60, 40).allowed


# --- priority queue ----------------------------------------------------------------------------


def test_queue_orders_paid_then_short_then_fifo_and_is_bounded():
    clock = ManualClock()
    q = PriorityQueue(5, clock=clock)
    q.push("free-short", priority=FREE, length=10)
    q.push("paid-long", priority=PAID, length=1000)
    q.push("paid-short", priority=PAID, length=10)
    q.push("paid-short-2", priority=PAID, length=10)
    e = q.push("gone", priority=PAID, length=1)
    with pytest.raises(QueueFull):
        q.push("x", priority=PAID, length=1)
    assert q.remove(e) and not q.remove(e) and len(q) == 4
    assert [q.pop() for _ in range(4)] == ["paid-short", "paid-short-2", "paid-long", "free-short"]
    with pytest.raises(IndexError):
        q.pop()


def test_ageing_lets_a_waiting_free_request_pass():
    clock = ManualClock()
    q = PriorityQueue(10, clock=clock, tier_weight=10, length_weight=1, aging_seconds=1)
    old = q.push("free", priority=FREE, length=100)
    clock.advance(5)
    q.push("paid-5s-later", priority=PAID, length=100)
    assert q.peek().item == "paid-5s-later"  # 5 s of waiting is less than the tier gap of 10
    clock.advance(6)
    late = q.push("paid-11s-later", priority=PAID, length=100)
    assert q.score(old) < q.score(late)  # 11 s of waiting beats the tier gap
    assert [q.pop() for _ in range(3)] == ["paid-5s-later", "free", "paid-11s-later"]


@settings(max_examples=60, deadline=None)
@given(
    free_len=st.integers(1, 8192),
    paid_len=st.integers(1, 8192),
    tier_weight=st.floats(0, 50),
    length_weight=st.floats(0, 5),
    aging=st.floats(0.1, 30),
    arrivals=st.integers(1, 40),
)
def test_an_old_free_request_eventually_beats_new_paid_ones(
    free_len, paid_len, tier_weight, length_weight, aging, arrivals
):
    """However the weights are set, a free request is served before paid ones that keep arriving:
    a paid request pushed more than aging*(tier_weight + length_weight*ln(free_len/paid_len)) s later loses."""
    clock = ManualClock()
    q = PriorityQueue(1000, clock=clock, tier_weight=tier_weight, length_weight=length_weight, aging_seconds=aging)
    q.push("free", priority=FREE, length=free_len)
    bound = aging * (tier_weight + length_weight * max(0.0, math.log(free_len / paid_len)))
    step = bound / arrivals + 0.01
    served = []
    for i in range(arrivals + 2):
        clock.advance(step)
        q.push(f"paid{i}", priority=PAID, length=paid_len)
        served.append(q.pop())  # one slot frees per step
        if "free" in served:
            break
    assert "free" in served  # it waited at most bound + a step
    assert clock.now() <= bound + 2 * step + 1e-6


# --- circuit breaker ---------------------------------------------------------------------------


def test_breaker_state_machine():
    clock = ManualClock()
    b = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=clock)
    assert b.state == "closed" and b.allow()
    b.record_failure(), b.record_failure(), b.record_success()  # success resets the count
    b.record_failure(), b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.allow() and b.retry_after() == 10 and b.opens == 1
    clock.advance(4)
    assert not b.allow() and b.retry_after() == 6
    clock.advance(6)
    assert b.state == "half_open" and b.allow()  # the one trial
    assert not b.allow() and not b.available()  # everyone else waits for its verdict
    b.record_failure()  # trial failed: open again, timer restarted
    assert b.state == "open" and b.retry_after() == 10 and b.opens == 2
    clock.advance(10)
    assert b.allow()
    b.record_cancel()  # the trial's client left: trial handed back
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()
    b.trip()
    assert b.state == "open"


def test_breaker_validates():
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="open_seconds"):
        CircuitBreaker(open_seconds=0)


# --- router ------------------------------------------------------------------------------------


def test_router_picks_least_loaded_and_skips_open_and_unhealthy():
    a, b, c = FakeEngine(), FakeEngine(), FakeEngine()
    clock = ManualClock()
    router = Router({"tiny": [a, b, c]}, clock=clock, max_inflight=2, open_seconds=5)
    assert isinstance(a, AsyncEngineLike)
    a.waiting, b.waiting, c.waiting = 3, 1, 2
    r = router.pick("tiny")
    assert r.engine is b and r.inflight == 1
    assert router.pick("tiny").engine is b  # load 1+1 = 2 == c's 2: stable, first wins
    assert router.pick("tiny").engine is c  # b is full (max_inflight=2)
    router.replicas("tiny")[2].breaker.trip()
    assert router.pick("tiny").engine is a  # c's breaker is open
    a.is_healthy = False
    assert router.pick("tiny") is None  # a unhealthy, b full
    assert router.replicas("tiny")[0].breaker.state == "open"
    router.release(router.replicas("tiny")[1])
    assert router.pick("tiny").engine is b
    b.is_healthy = False
    with pytest.raises(NoReplicaAvailable) as info:
        router.pick("tiny")
    assert 0 < info.value.retry_after <= 5
    with pytest.raises(UnknownModel, match="'huge'"):
        router.pick("huge")
    snap = router.snapshot()["tiny"]
    assert [s["breaker"] for s in snap] == ["open", "open", "open"] and snap[1]["inflight"] == 2


def test_router_validates():
    with pytest.raises(ValueError, match="models"):
        Router({})
    with pytest.raises(ValueError, match="AsyncEngineLike"):
        Router({"m": [object()]})
    with pytest.raises(ValueError, match="max_inflight"):
        Router({"m": [FakeEngine()]}, max_inflight=0)


def test_dispatcher_hands_freed_slots_to_the_best_waiting_request():
    async def main():
        router = Router({"tiny": [FakeEngine()]}, clock=ManualClock(), max_inflight=1)
        d = Dispatcher(router, max_depth=2)
        first = await d.acquire("tiny", FREE, 10)
        free = asyncio.create_task(d.acquire("tiny", FREE, 10))
        paid = asyncio.create_task(d.acquire("tiny", PAID, 10))
        await asyncio.sleep(0)
        assert d.depth() == 2
        with pytest.raises(QueueFull):
            await d.acquire("tiny", PAID, 1)
        d.release(first)
        assert await paid is first and not free.done()
        free.cancel()
        await asyncio.sleep(0)
        assert d.depth() == 0
        d.release(first)
        assert first.inflight == 0

    asyncio.run(main())


# --- HTTP: the happy paths ---------------------------------------------------------------------


def test_completion_json_in_openai_format():
    eng = FakeEngine()
    app, _ = gateway(eng)
    r = post(
        app, "/v1/completions", {"model": "tiny", "prompt": "Say hi", "max_tokens": 5, "top_p": 1, "user": "x", "n": 1}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "finish_reason": "length", "text": "hello", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    assert int(r.headers["x-ratelimit-remaining-requests"]) >= 0 and "x-ratelimit-limit-tokens" in r.headers
    assert eng.started[0][1] == PAID and eng.inflight == {}


def test_chat_json_uses_the_template_and_stop_strings():
    eng = FakeEngine(reply="hi there. more")
    app, _ = gateway(eng)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    r = post(app, "/v1/chat/completions", {"model": "tiny", "messages": msgs, "stop": ["."], "max_tokens": 50}, FREE_H)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi there."}}
    ]
    prompt = render_chat(msgs)
    assert prompt == "<|system|>\nBe brief.\n<|user|>\nHello\n<|assistant|>\n"
    assert body["usage"]["prompt_tokens"] == len(prompt.encode())
    assert eng.started[0][1] == FREE and eng.started[0][2].stop == (".",)


def test_completion_stream_is_sse_with_headers_and_done():
    app, _ = gateway(FakeEngine())
    r = post(
        app,
        "/v1/completions",
        {"model": "tiny", "prompt": "x", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "x-ratelimit-remaining-tokens" in r.headers and "x-ratelimit-reset-requests" in r.headers
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "hel"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
    assert all(c["object"] == "text_completion" and c["model"] == "tiny" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


def test_chat_stream_sends_role_then_content_deltas():
    app, _ = gateway(FakeEngine(reply="ok"))
    r = post(
        app, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "?"}], "stream": True}
    )
    events = sse(r.text)
    assert events[-1] == "[DONE]" and len(events) == 3
    first, last = events[0]["choices"][0], events[1]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": "o"} and first["finish_reason"] is None
    assert last["delta"] == {"content": "k"} and last["finish_reason"] == "stop"
    assert events[0]["object"] == "chat.completion.chunk"


def test_metrics_are_off_without_a_key_and_need_the_operators_key():
    off, _ = gateway(metrics_key=None)
    assert_json_error(run_asgi(off, lambda c: c.get("/metrics")), 403, "metrics_off", "metrics key")
    app, _ = gateway(metrics_key="sk-ops")
    assert_json_error(run_asgi(app, lambda c: c.get("/metrics")), 401, "unauthorized", "metrics key")
    assert_json_error(run_asgi(app, lambda c: c.get("/metrics", headers=PAID_H)), 401, "unauthorized", "metrics key")
    ok = run_asgi(app, lambda c: c.get("/metrics", headers={"Authorization": "Bearer sk-ops"}))
    assert ok.status_code == 200 and ok.json()["requests"]["2xx"] == 0


def test_a_request_that_crashes_the_gateway_is_counted_as_a_5xx(monkeypatch):
    app, _ = gateway()
    gw = app.state.gateway

    async def crash(request, chat):
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(gw, "serve", crash)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def scenario():
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            r = await c.post("/v1/completions", headers=PAID_H, json={"model": "tiny", "prompt": "x"})
            return r, (await c.get("/metrics")).json()

    r, m = asyncio.run(scenario())
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert m["requests"]["5xx"] == 1 and m["requests"]["2xx"] == 0


def test_models_health_and_metrics():
    eng = FakeEngine()
    app, _ = gateway(eng, FakeEngine("big", max_context=1024))

    async def scenario(c: httpx.AsyncClient):
        models = await c.get("/v1/models", headers=PAID_H)
        for _ in range(3):
            await c.post("/v1/completions", headers=PAID_H, json={"model": "tiny", "prompt": "abc", "max_tokens": 4})
        await c.post("/v1/completions", headers=PAID_H, json={"model": "nope", "prompt": "abc"})
        return models, await c.get("/health"), await c.get("/metrics")

    models, health, metrics = run_asgi(app, scenario)
    assert [(m["id"], m["max_context"]) for m in models.json()["data"]] == [("tiny", 256), ("big", 1024)]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    m = metrics.json()
    assert m["requests"]["2xx"] == 4 and m["requests"]["4xx"] == 1 and m["requests"]["429"] == 0
    assert m["queue_depth"] == 0 and m["completion_tokens"] == 12
    assert m["ttft_s"]["p50"] >= 0 and m["tpot_s"]["p99"] >= 0
    rep = m["replicas"]["tiny"][0]
    assert rep["breaker"] == "closed" and 0 <= rep["kv_utilization"] <= 1 and rep["inflight"] == 0
    eng.is_healthy = False
    health = run_asgi(app, lambda c: c.get("/health"))
    assert health.status_code == 503 and health.json()["models"]["tiny"]["usable"] == 0


# --- HTTP: refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, mentions",
    [
        ({}, "missing Authorization"),
        ({"Authorization": "Basic abc"}, "Bearer"),
        ({"Authorization": "Bearer "}, "Bearer"),
        ({"Authorization": "Bearer sk-nope"}, "unknown API key"),
    ],
)
def test_auth_is_required(headers, mentions):
    app, _ = gateway()
    r = post(app, "/v1/completions", {"model": "tiny", "prompt": "x"}, headers)
    assert_json_error(r, 401, "unauthorized", mentions)
    assert_json_error(run_asgi(app, lambda c: c.get("/v1/models", headers=headers)), 401, "unauthorized")


MSG = [{"role": "user", "content": "hi"}]
BAD = [
    ("/v1/completions", "{not json", 400, "bad_request", "JSON"),
    ("/v1/completions", [1, 2], 400, "bad_request", "JSON object"),
    ("/v1/completions", {"prompt": "x"}, 400, "missing_field", "model"),
    ("/v1/completions", {"model": "tiny"}, 400, "missing_field", "prompt"),
    ("/v1/completions", {"model": "huge", "prompt": "x"}, 404, "model_not_found", "huge"),
    ("/v1/completions", {"model": 3, "prompt": "x"}, 400, "invalid_field", "model"),
    ("/v1/completions", {"model": "tiny", "prompt": ["x"]}, 400, "invalid_field", "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": ""}, 400, "invalid_field", "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "x" * 256}, 400, "context_length_exceeded", "prompt"),
    (
        "/v1/completions",
        {"model": "tiny", "prompt": "x" * 200, "max_tokens": 57},
        400,
        "context_length_exceeded",
        "max_tokens",
    ),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 0}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": -3}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 2.5}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": "8"}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": True}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 5000}, 400, "invalid_field", "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "temperature": "hot"}, 400, "invalid_field", "temperature"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "temperature": 3}, 400, "invalid_field", "temperature"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stop": 5}, 400, "invalid_field", "stop"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stop": ["a", ""]}, 400, "invalid_field", "stop"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stop": list("abcde")}, 400, "invalid_field", "stop"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stream": "yes"}, 400, "invalid_field", "stream"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 2}, 400, "invalid_field", "n=1"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "seed": "s"}, 400, "invalid_field", "seed"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_token": 5}, 400, "unknown_field", "max_token"),
    ("/v1/chat/completions", {"model": "tiny"}, 400, "missing_field", "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "invalid_field", "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, 400, "invalid_field", "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": ["hi"]}, 400, "invalid_field", "messages[0]"),
    (
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "bot", "content": "x"}]},
        400,
        "invalid_field",
        "messages[0].role",
    ),
    (
        "/v1/chat/completions",
        {"model": "tiny", "messages": [*MSG, {"role": "user", "content": 5}]},
        400,
        "invalid_field",
        "messages[1].content",
    ),
    (
        "/v1/chat/completions",
        {"model": "tiny", "messages": MSG, "max_completion_tokens": 0},
        400,
        "invalid_field",
        "max_completion_tokens",
    ),
    ("/v1/chat/completions", {"model": "tiny", "messages": MSG, "prompt": "x"}, 400, "unknown_field", "prompt"),
]


@pytest.mark.parametrize("path, body, status, error, mentions", BAD)
def test_bad_input_is_a_json_error_naming_the_field(path, body, status, error, mentions):
    eng = FakeEngine()
    app, _ = gateway(eng)
    assert_json_error(post(app, path, body), status, error, mentions)
    assert eng.started == []


def test_a_request_over_the_tier_capacity_is_a_400_not_a_429():
    app, _ = gateway(FakeEngine(max_context=10_000), clock=ManualClock(), limits=SMALL)
    r = post(app, "/v1/completions", {"model": "tiny", "prompt": "x" * 60, "max_tokens": 41})
    assert_json_error(r, 400, "request_too_large", "max_tokens")


def test_rate_limit_429_with_retry_after_then_passes_after_waiting():
    clock = ManualClock()
    app, _ = gateway(FakeEngine(), clock=clock, limits=SMALL)
    body = {"model": "tiny", "prompt": "x" * 10, "max_tokens": 40}

    async def burst(c: httpx.AsyncClient):
        return [await c.post("/v1/completions", headers=PAID_H, json=body) for _ in range(3)]

    ok1, ok2, refused = run_asgi(app, burst)
    assert ok1.status_code == ok2.status_code == 200
    # 11 tokens used of the 50 reserved, so 39 come back: tokens are not what runs out here
    assert int(ok1.headers["x-ratelimit-remaining-tokens"]) == 50
    assert ok2.headers["x-ratelimit-remaining-requests"] == "0"  # org acme: 2 requests/min
    assert_json_error(refused, 429, "rate_limited", "org_requests")
    retry = int(refused.headers["retry-after"])
    assert retry >= 1 and refused.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(retry)
    assert post(app, "/v1/completions", body).status_code == 200


def test_the_unused_reservation_is_refunded_after_success_and_error():
    clock = ManualClock()
    eng = FakeEngine(reply="abc")
    app, _ = gateway(eng, clock=clock, limits=SMALL, failure_threshold=5)
    adm = app.state.gateway.admission
    assert (
        post(app, "/v1/completions", {"model": "tiny", "prompt": "x" * 10, "max_tokens": 50}, FREE_H).status_code == 200
    )
    assert adm.remaining(BOB)["user_tokens"] == 100 - 10 - 3
    eng.fail = True
    r = post(app, "/v1/completions", {"model": "tiny", "prompt": "x" * 10, "max_tokens": 50}, FREE_H)
    assert_json_error(r, 503, "unavailable", "engine")
    assert adm.remaining(BOB)["user_tokens"] == 100 - 10 - 3 - 10  # prompt spent, output refunded
    eng.fail, eng.fail_after = False, 2
    r = post(app, "/v1/completions", {"model": "tiny", "prompt": "x" * 10, "max_tokens": 50}, FREE_H)
    assert_json_error(r, 503, "unavailable", "mid-stream")
    assert adm.remaining(BOB)["user_tokens"] == 100 - 10 - 3 - 10 - 12


def test_engine_failures_open_the_breaker_then_fail_fast_with_retry_after():
    clock = ManualClock()
    eng = FakeEngine()
    app, router = gateway(eng, clock=clock, failure_threshold=2, open_seconds=30)
    eng.fail = True
    body = {"model": "tiny", "prompt": "x", "max_tokens": 2}
    for _ in range(2):
        assert_json_error(post(app, "/v1/completions", body), 503, "unavailable", "engine failed")
    assert router.replicas("tiny")[0].breaker.state == "open"
    eng.fail = False
    fast = post(app, "/v1/completions", body)
    assert_json_error(fast, 503, "unavailable", "circuit breaker")
    assert fast.headers["retry-after"] == "30"
    assert run_asgi(app, lambda c: c.get("/metrics")).json()["replicas"]["tiny"][0]["breaker"] == "open"
    clock.advance(30)  # half-open: one trial, it works, the breaker closes
    assert post(app, "/v1/completions", body).status_code == 200
    assert router.replicas("tiny")[0].breaker.state == "closed"
    eng.is_healthy = False
    assert_json_error(post(app, "/v1/completions", body), 503, "unavailable", "no healthy replica")
    m = run_asgi(app, lambda c: c.get("/metrics")).json()
    assert m["requests"]["503"] == 4 and m["requests"]["2xx"] == 1


def test_a_failure_mid_stream_ends_the_stream_with_an_error_event():
    eng = FakeEngine()
    eng.fail_after = 2
    app, router = gateway(eng)
    r = post(app, "/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 9, "stream": True})
    assert r.status_code == 200
    events = sse(r.text)
    assert [e["choices"][0]["text"] for e in events[:2]] == ["h", "e"]
    assert events[-1]["error"]["type"] == "engine_error" and "[DONE]" not in events
    assert router.replicas("tiny")[0].breaker.failures == 1 and router.replicas("tiny")[0].inflight == 0


def test_queue_dispatches_by_priority_and_a_full_queue_is_429():
    eng = FakeEngine()
    app, router = gateway(eng, max_inflight=1, queue_depth=2)
    body = {"model": "tiny", "prompt": "x", "max_tokens": 2}

    async def scenario(c: httpx.AsyncClient):
        eng.gate = asyncio.Event()
        first = asyncio.create_task(c.post("/v1/completions", headers=FREE_H, json=body))
        while not eng.started:
            await asyncio.sleep(0)
        free = asyncio.create_task(c.post("/v1/completions", headers=FREE_H, json=body))
        paid = asyncio.create_task(c.post("/v1/completions", headers=PAID_H, json=body))
        while app.state.gateway.dispatcher.depth() < 2:
            await asyncio.sleep(0)
        full = await c.post("/v1/completions", headers=PAID_H, json=body)
        eng.gate.set()
        return full, await first, await free, await paid

    full, *done = run_asgi(app, scenario)
    assert_json_error(full, 429, "queue_full", "queue is full")
    assert int(full.headers["retry-after"]) >= 1 and "x-ratelimit-limit-requests" in full.headers
    assert all(r.status_code == 200 for r in done)
    assert [p for _, p, _ in eng.started] == [FREE, PAID, FREE]  # the paid one overtook the waiting free one
    assert router.replicas("tiny")[0].inflight == 0


# --- a client that leaves mid-stream (real server) ---------------------------------------------


def test_client_disconnect_mid_stream_aborts_the_engine_request():
    eng = FakeEngine(reply="x" * 3000, max_context=4096, delay=0.002)
    app, router = gateway(eng)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        body = {"model": "tiny", "prompt": "go", "max_tokens": 3000, "stream": True}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            with client.stream("POST", "/v1/completions", headers=PAID_H, json=body) as r:
                assert r.status_code == 200 and "x-ratelimit-remaining-tokens" in r.headers
                lines = r.iter_lines()
                got = [next(lines) for _ in range(3)]
                assert got[0].startswith("data: ")
            # leaving the block closes the connection mid-stream
            while eng.inflight or router.replicas("tiny")[0].inflight:
                assert time.monotonic() < deadline, "the engine request was not aborted"
                time.sleep(0.01)
            rid = eng.started[0][0]
            assert rid in eng.aborted
            gw = app.state.gateway
            # every unused output token came back: the bucket holds all but prompt + tokens sent
            sent = gw.stats.completion_tokens
            assert 0 < sent < 3000 and gw.stats.aborted == 1
            left = gw.admission.remaining(ALICE)["user_tokens"]
            assert left >= DEFAULT_LIMITS["paid"].tokens_per_min - 2 - sent
            assert client.get("/metrics").json()["replicas"]["tiny"][0]["inflight"] == 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_client_that_leaves_while_queued_gives_up_its_place_and_reservation():
    eng = FakeEngine()
    clock = ManualClock()
    app, router = gateway(eng, clock=clock, max_inflight=1)
    gw = app.state.gateway
    body = json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 5}).encode()

    async def scenario():
        leave = asyncio.Event()
        sent: list[dict] = []
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/completions",
            "raw_path": b"/v1/completions",
            "query_string": b"",
            "root_path": "",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 1),
            "headers": [(b"authorization", b"Bearer sk-free-demo"), (b"content-type", b"application/json")],
        }
        eng.gate = asyncio.Event()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            holder = asyncio.create_task(c.post("/v1/completions", headers=PAID_H, content=body))
            while not eng.started:
                await asyncio.sleep(0)
            queued = asyncio.create_task(app(scope, receive, send))
            while gw.dispatcher.depth() < 1:
                await asyncio.sleep(0)
            assert gw.admission.remaining(BOB)["user_tokens"] == DEFAULT_LIMITS["free"].tokens_per_min - 6
            leave.set()
            await queued
            assert gw.dispatcher.depth() == 0
            eng.gate.set()
            return (await holder), sent

    holder, sent = asyncio.run(scenario())
    assert holder.status_code == 200 and sent[0]["status"] == 499
    assert len(eng.started) == 1  # the one that left never reached the engine
    assert gw.admission.remaining(BOB)["user_tokens"] == DEFAULT_LIMITS["free"].tokens_per_min
    assert gw.admission.remaining(BOB)["user_requests"] == DEFAULT_LIMITS["free"].requests_per_min
    assert router.replicas("tiny")[0].inflight == 0
