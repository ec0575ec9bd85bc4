"""ASGI middleware that puts a ``RulesEngine`` in front of any Starlette/ASGI app.

Every limited response carries ``X-RateLimit-Limit/Remaining/Reset`` and the IETF draft
``RateLimit`` / ``RateLimit-Policy`` fields; a rejection is a 429 with ``Retry-After`` and a JSON
body naming the rule. A rule that fails closed while its store is down answers 503.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab_core.ratelimit.rules import EngineDecision, RequestInfo, RulesEngine

USER_HEADER = "x-user"
_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class BadIdentity(ValueError):
    """The request names its user in a form the limiter refuses."""


def _header(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key.decode("latin-1").lower() == name:
            return value.decode("latin-1")
    return None


def identify(scope: Scope, *, trust_forwarded: bool = False) -> RequestInfo:
    """User from the ``X-User`` header, IP from the socket (or ``X-Forwarded-For`` behind a trusted proxy)."""
    user = _header(scope, USER_HEADER)
    if user is not None and not _USER_RE.match(user):
        raise BadIdentity("header X-User must be 1-64 characters from A-Z a-z 0-9 _ . @ -")
    ip = (scope.get("client") or ("unknown", 0))[0]
    forwarded = _header(scope, "x-forwarded-for") if trust_forwarded else None
    if forwarded:
        ip = forwarded.split(",")[0].strip() or ip
    return RequestInfo(ip=ip, endpoint=scope.get("path", "/"), method=scope.get("method", "GET"), user=user)


def rate_limit_headers(verdict: EngineDecision) -> list[tuple[str, str]]:
    """The response fields describing the deciding rule (empty when no rule applied)."""
    if verdict.deciding is None:
        return []
    rule, d = verdict.deciding.rule, verdict.deciding.decision
    reset = math.ceil(d.reset_after)
    period = rule.period if rule.period != int(rule.period) else int(rule.period)
    headers = [
        ("X-RateLimit-Limit", str(d.limit)),
        ("X-RateLimit-Remaining", str(d.remaining)),
        ("X-RateLimit-Reset", str(reset)),
        # The policy states the long-run quota; Limit/Remaining describe what can pass right now
        # (a bucket's burst capacity), which is what a client needs to pace itself.
        ("RateLimit-Policy", f'"{rule.name}";q={rule.limit};w={period}'),
        ("RateLimit", f'"{rule.name}";r={d.remaining};t={reset}'),
    ]
    if not verdict.allowed:
        headers.append(("Retry-After", str(max(1, math.ceil(d.retry_after)))))
    return headers


async def _send_json(send: Send, status: int, body: dict, headers: Iterable[tuple[str, str]] = ()) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class RateLimitMiddleware:
    """Pure ASGI middleware (no response buffering, so streaming responses pass through untouched)."""

    def __init__(
        self,
        app: ASGIApp,
        engine: RulesEngine,
        *,
        exempt: Iterable[str] = ("/healthz",),
        trust_forwarded: bool = False,
        identify_request: Callable[..., RequestInfo] = identify,
    ) -> None:
        self.app = app
        self.engine = engine
        self.exempt = frozenset(exempt)
        self.trust_forwarded = trust_forwarded
        self.identify_request = identify_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        try:
            request = self.identify_request(scope, trust_forwarded=self.trust_forwarded)
        except BadIdentity as exc:
            await _send_json(send, 400, {"error": "bad_request", "detail": str(exc)})
            return
        # One sub-millisecond Redis round trip: cheaper inline than a hop to a worker thread.
        verdict = self.engine.check(request)
        headers = rate_limit_headers(verdict)
        if not verdict.allowed:
            deciding = verdict.deciding
            assert deciding is not None
            rule = deciding.rule
            if deciding.error:
                await _send_json(
                    send,
                    503,
                    {
                        "error": "rate_limiter_unavailable",
                        "rule": rule.name,
                        "detail": f"the limiter's store is unreachable and rule {rule.name!r} fails closed",
                    },
                    [("Retry-After", "1")],
                )
                return
            await _send_json(
                send,
                429,
                {
                    "error": "rate_limited",
                    "rule": rule.name,
                    "scope": rule.scope,
                    "key": deciding.key,
                    "limit": rule.limit,
                    "period": rule.period,
                    "retry_after": round(deciding.decision.retry_after, 3),
                    "detail": f"rule {rule.name!r} allows {rule.limit} units per {rule.period:g} s for each {rule.scope}",
                },
                headers,
            )
            return
        delay = max((rd.decision.delay for rd in verdict.checked), default=0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)
