"""The notebook's graders: they pass the reference and fail the classic wrong answers.

`syslab check` proves this through nbgrader; these tests prove it in seconds, directly on the
helpers in `lab_core.ratelimit.grading`, so a change to a grader that weakens it fails fast.
"""

from __future__ import annotations

import math
import time

import pytest

from lab_core.ratelimit import Decision, RedisTokenBucket, SlidingWindowCounter, TokenBucket
from lab_core.ratelimit.grading import (
    check_redis_atomic,
    check_redis_clock_skew,
    check_redis_ttl,
    compare_redis_with_reference,
    compare_with_reference,
)
from lab_core.ratelimit.memory import token_bucket_outcome
from lab_core.ratelimit.redis_backend import lua_source


class UncappedBucket(TokenBucket):
    """Refills past capacity: after a pause it admits more than its burst."""

    def _decide(self, key, cost, now):
        rate = self.limit / self.period
        tokens, last = self._state.get(key, (float(self.capacity), now))
        tokens = tokens + max(0.0, now - last) * rate
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._state[key] = (tokens, now)
        return Decision(allowed, self.capacity, math.floor(tokens), 0.0, 0.0 if allowed else (cost - tokens) / rate)


class WrongWeightCounter(SlidingWindowCounter):
    """Weights the previous window by elapsed/period instead of the overlap (period-elapsed)/period."""

    def _decide(self, key, cost, now):
        window = math.floor(now / self.period)
        stored, prev, curr = self._state.get(key, (window, 0, 0))
        if window == stored + 1:
            prev, curr = curr, 0
        elif window != stored:
            prev, curr = 0, 0
        elapsed = now - window * self.period
        estimate = prev * (elapsed / self.period) + curr
        allowed = estimate + cost <= self.limit
        if allowed:
            curr += cost
        self._state[key] = (window, prev, curr)
        return Decision(
            allowed,
            self.limit,
            max(0, math.floor(self.limit - estimate - (cost if allowed else 0))),
            self.period,
            0.0 if allowed else self.period,
        )


class ReadThenWrite(RedisTokenBucket):
    """Token bucket decided in Python between a read and a write: two round trips, not atomic."""

    def acquire(self, key: str, cost: int = 1) -> Decision:
        k = self.keys_for(key)[0]
        seconds, micros = self.client.time()
        now = int(seconds) + int(micros) / 1e6
        rate = self.limit / self.period
        tokens, last = self.client.hmget(k, "tokens", "ts")
        tokens = float(self.capacity) if tokens is None else float(tokens)
        last = now if last is None else float(last)
        tokens = min(float(self.capacity), tokens + max(0.0, now - last) * rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self.client.hset(k, mapping={"tokens": repr(tokens), "ts": repr(now)})
        self.client.pexpire(k, 60_000)
        return Decision(allowed, self.capacity, math.floor(tokens), 0.0)


class ClientClock(RedisTokenBucket):
    """Sends the API server's own clock to the script instead of letting it read Redis TIME."""

    def acquire(self, key: str, cost: int = 1) -> Decision:
        args = [repr(time.time()), self.limit, repr(self.period), self.capacity, cost]
        return self.decode(self._script(keys=self.keys_for(key), args=args), cost)


class NoExpiry(RedisTokenBucket):
    """The reference script with its PEXPIRE removed: idle keys live forever."""

    @classmethod
    def script_source(cls) -> str:
        return lua_source("token_bucket").replace(
            "if allowed == 1 then expire(KEYS[1], (capacity - tokens) / rate, period) end", ""
        )


class NoBackwardGuard(TokenBucket):
    """Refills by ``(now - last) * rate`` even when the clock went back: loses tokens it had."""

    def _decide(self, key: str, cost: int, now: float) -> Decision:
        rate = self.limit / self.period
        tokens, last = self._state.get(key, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + (now - last) * rate)
        allowed = tokens >= cost
        tokens -= cost if allowed else 0
        self._state[key] = (tokens, now)
        return token_bucket_outcome(allowed, tokens, cost, self.capacity, rate)


def test_a_refill_without_a_guard_is_caught_only_because_the_clock_steps_back():
    compare_with_reference(NoBackwardGuard, TokenBucket, max_examples=100, backwards=False)
    with pytest.raises(AssertionError, match="disagrees with the reference"):
        compare_with_reference(NoBackwardGuard, TokenBucket, max_examples=100)


class TtlOnePeriod(RedisTokenBucket):
    """Expires the bucket one period after a request, however long the bucket takes to refill."""

    @classmethod
    def script_source(cls) -> str:
        return lua_source("token_bucket").replace(
            "if allowed == 1 then expire(KEYS[1], (capacity - tokens) / rate, period) end",
            "if allowed == 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000)) end",
        )


def test_ttl_check_catches_a_ttl_of_one_period_once_the_burst_exceeds_the_limit():
    assert "math.ceil(period * 1000)" in TtlOnePeriod.script_source()
    check_redis_ttl(TtlOnePeriod, burst=5)  # burst = limit: one period is enough to refill
    with pytest.raises(AssertionError, match="a burst of 20 requests.*expires in"):
        check_redis_ttl(TtlOnePeriod)


def test_reference_passes_its_own_comparison():
    compare_with_reference(TokenBucket, TokenBucket, max_examples=30)
    compare_with_reference(SlidingWindowCounter, SlidingWindowCounter, max_examples=30, timing="honest")


@pytest.mark.parametrize(
    ("wrong", "reference", "timing"),
    [(UncappedBucket, TokenBucket, "exact"), (WrongWeightCounter, SlidingWindowCounter, "honest")],
)
def test_comparison_catches_wrong_algorithms(wrong, reference, timing):
    with pytest.raises(AssertionError):
        compare_with_reference(wrong, reference, max_examples=100, timing=timing)


def test_redis_reference_passes_every_redis_check():
    compare_redis_with_reference(RedisTokenBucket, max_examples=20)
    check_redis_atomic(RedisTokenBucket, rounds=2)
    check_redis_clock_skew(RedisTokenBucket)
    check_redis_ttl(RedisTokenBucket)


def test_atomicity_check_catches_read_then_write():
    with pytest.raises(AssertionError):
        check_redis_atomic(ReadThenWrite, rounds=5)


def test_clock_skew_check_catches_the_client_clock():
    with pytest.raises(AssertionError, match="Redis server time"):
        check_redis_clock_skew(ClientClock)


def test_ttl_check_catches_missing_expiry():
    with pytest.raises(AssertionError):
        check_redis_ttl(NoExpiry)


def test_redis_comparison_catches_a_wrong_script():
    class Uncapped(RedisTokenBucket):
        @classmethod
        def script_source(cls) -> str:
            return lua_source("token_bucket").replace(
                "tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)",
                "tokens = tokens + math.max(0, now - last) * rate",
            )

    with pytest.raises(AssertionError):
        compare_redis_with_reference(Uncapped, max_examples=60)
