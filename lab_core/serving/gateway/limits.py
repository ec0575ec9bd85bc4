"""Admission: requests/min and tokens/min, for the user and for the org, all or nothing.

A request reserves ``prompt_tokens + max_tokens`` tokens on admission (it cannot know how many
it will generate) and one request; ``finish`` gives back the output tokens it did not use.
Every limit is a cost-weighted ``TokenBucket`` from the rate-limiting lab, one per tier and
scope, keyed by user name or org name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from lab_core.ratelimit.memory import TokenBucket
from lab_core.ratelimit.protocol import Decision
from lab_core.serving.gateway.keys import DEFAULT_LIMITS, TIERS, ApiKey, TierLimits
from lab_core.sim.clock import Clock, RealClock

PERIOD = 60.0
SCOPES = ("user_requests", "org_requests", "user_tokens", "org_tokens")


class RequestTooLarge(ValueError):
    """``prompt_tokens + max_tokens`` is above a tokens/min bucket's capacity: it could never pass."""


@dataclass
class Reservation:
    """What an admitted request holds: one request and ``prompt_tokens + max_tokens`` tokens."""

    key: ApiKey
    prompt_tokens: int
    max_tokens: int
    done: bool = False

    @property
    def tokens(self) -> int:
        """Tokens reserved."""
        return self.prompt_tokens + self.max_tokens


@dataclass(frozen=True)
class AdmissionDecision:
    """``allowed`` with the reservation to ``finish``, or refused with ``retry_after`` seconds
    (an int >= 1) and ``refused_by`` (the scopes that said no). ``headers`` go on the response."""

    allowed: bool
    headers: dict[str, str]
    reservation: Reservation | None = None
    retry_after: int = 0
    refused_by: tuple[str, ...] = field(default=())


def _reset(seconds: float) -> str:
    return f"{max(0, math.ceil(seconds))}s"


class Admission:
    """Rate limits of every tier; ``admit`` before queueing, ``finish`` when the request ends."""

    def __init__(self, limits: Mapping[str, TierLimits] | None = None, *, clock: Clock | None = None) -> None:
        limits = dict(DEFAULT_LIMITS if limits is None else limits)
        missing = sorted(set(TIERS) - set(limits))
        if missing:
            raise ValueError(f"limits: no TierLimits for tier(s) {', '.join(missing)}")
        for tier, lim in limits.items():
            if not isinstance(lim, TierLimits):
                raise ValueError(f"limits[{tier!r}] must be a TierLimits, got {type(lim).__name__}")
        self.limits = limits
        self.clock = clock or RealClock()
        self._buckets: dict[str, dict[str, TokenBucket]] = {
            tier: {
                "user_requests": TokenBucket(lim.requests_per_min, PERIOD, clock=self.clock),
                "org_requests": TokenBucket(lim.org_requests_per_min, PERIOD, clock=self.clock),
                "user_tokens": TokenBucket(lim.tokens_per_min, PERIOD, clock=self.clock),
                "org_tokens": TokenBucket(lim.org_tokens_per_min, PERIOD, clock=self.clock),
            }
            for tier, lim in limits.items()
        }

    def max_request_tokens(self, key: ApiKey) -> int:
        """The largest ``prompt_tokens + max_tokens`` one request of ``key``'s tier can reserve."""
        lim = self.limits[key.tier]
        return min(lim.tokens_per_min, lim.org_tokens_per_min)

    def admit(self, key: ApiKey, prompt_tokens: int, max_tokens: int) -> AdmissionDecision:
        """Take one request and ``prompt_tokens + max_tokens`` tokens from the user's and the org's
        buckets, or nothing at all. Raises ``RequestTooLarge`` when the reservation is above the
        tier's capacity (no wait would ever let it pass)."""
        cost = prompt_tokens + max_tokens
        cap = self.max_request_tokens(key)
        if cost > cap:
            raise RequestTooLarge(
                f"max_tokens: prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) = {cost} is above "
                f"the {key.tier} tier's tokens-per-minute capacity {cap}; lower max_tokens or shorten the prompt"
            )
        buckets = self._buckets[key.tier]
        ids = {"user_requests": key.user, "org_requests": key.org, "user_tokens": key.user, "org_tokens": key.org}
        costs = {"user_requests": 1, "org_requests": 1, "user_tokens": cost, "org_tokens": cost}
        decisions = {s: buckets[s].acquire(ids[s], costs[s]) for s in SCOPES}
        refused = tuple(s for s in SCOPES if not decisions[s].allowed)
        if refused:
            # All or nothing: give back what the buckets that said yes took.
            for s in SCOPES:
                if decisions[s].allowed:
                    buckets[s].refund(ids[s], costs[s])
                    d = decisions[s]
                    decisions[s] = Decision(False, d.limit, min(d.limit, d.remaining + costs[s]), d.reset_after)
            retry = max(1, math.ceil(max(decisions[s].retry_after for s in refused)))
            headers = self._headers(decisions)
            headers["retry-after"] = str(retry)
            return AdmissionDecision(False, headers, None, retry, refused)
        return AdmissionDecision(True, self._headers(decisions), Reservation(key, prompt_tokens, max_tokens))

    @staticmethod
    def _headers(d: dict[str, Decision]) -> dict[str, str]:
        # Report, per kind, the scope with the least left: that is the one the client runs into.
        req = min(d["user_requests"], d["org_requests"], key=lambda x: x.remaining)
        tok = min(d["user_tokens"], d["org_tokens"], key=lambda x: x.remaining)
        return {
            "x-ratelimit-limit-requests": str(req.limit),
            "x-ratelimit-remaining-requests": str(max(0, req.remaining)),
            "x-ratelimit-reset-requests": _reset(req.reset_after),
            "x-ratelimit-limit-tokens": str(tok.limit),
            "x-ratelimit-remaining-tokens": str(max(0, tok.remaining)),
            "x-ratelimit-reset-tokens": _reset(tok.reset_after),
        }

    def finish(self, reservation: Reservation, used_tokens: int) -> int:
        """Refund the ``max_tokens - used_tokens`` output tokens not generated; returns the refund.
        A second call for the same reservation refunds nothing."""
        if reservation.done:
            return 0
        reservation.done = True
        unused = max(0, reservation.max_tokens - max(0, int(used_tokens)))
        if unused:
            buckets, key = self._buckets[reservation.key.tier], reservation.key
            buckets["user_tokens"].refund(key.user, unused)
            buckets["org_tokens"].refund(key.org, unused)
        return unused

    def release(self, reservation: Reservation) -> None:
        """Give back everything (the request and all its tokens): the gateway refused it after
        admission (queue full, no healthy replica), so it should not count against the client."""
        if reservation.done:
            return
        reservation.done = True
        buckets, key = self._buckets[reservation.key.tier], reservation.key
        buckets["user_requests"].refund(key.user, 1)
        buckets["org_requests"].refund(key.org, 1)
        buckets["user_tokens"].refund(key.user, reservation.tokens)
        buckets["org_tokens"].refund(key.org, reservation.tokens)

    def remaining(self, key: ApiKey) -> dict[str, int]:
        """Units left now in each of ``key``'s buckets (for tests and dashboards; takes nothing)."""
        buckets = self._buckets[key.tier]
        out = {}
        for s in SCOPES:
            b, ident = buckets[s], (key.user if s.startswith("user") else key.org)
            with b._lock:
                tokens, last = b._state.get(ident, (float(b.capacity), 0.0))
                now = self.clock.now()
                tokens = min(float(b.capacity), tokens + max(0.0, now - last) * b.limit / b.period)
            out[s] = math.floor(tokens + 1e-9)
        return out
