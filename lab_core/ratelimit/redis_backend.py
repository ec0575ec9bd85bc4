"""Redis versions of the six algorithms: each decision is one atomic Lua script (EVALSHA).

The whole read-modify-write runs inside Redis, so any number of API servers and threads
sharing one Redis admit exactly what a single in-memory limiter would. Time is Redis server
time unless a clock is injected (simulations and tests), in which case the caller's time is
sent as an argument and the same arithmetic runs on it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis

from lab_core.ratelimit.memory import (
    fixed_window_outcome,
    gcra_outcome,
    leaky_bucket_outcome,
    sliding_counter_outcome,
    token_bucket_outcome,
)
from lab_core.ratelimit.params import check_cost, check_limits
from lab_core.ratelimit.protocol import Decision
from lab_core.sim.clock import Clock
from lab_core.store import redis_client


@cache
def lua_prelude() -> str:
    """The prelude every script starts with: defines ``now``, ``limit``, ``period``, ``capacity``, ``cost``, ``f``, ``expire``."""
    return (resources.files("lab_core.ratelimit") / "lua" / "_prelude.lua").read_text()


@cache
def lua_source(algorithm: str) -> str:
    """The full Lua script (shared prelude + algorithm body) for ``algorithm``."""
    folder = resources.files("lab_core.ratelimit") / "lua"
    return lua_prelude() + "\n" + (folder / f"{algorithm}.lua").read_text()


class RedisLimiter:
    """Base for the Redis algorithms: key naming, argument packing and reply decoding."""

    algorithm = ""
    uses_burst = False
    extra_keys: tuple[str, ...] = ()
    #: A subclass may give its Lua body here instead of shipping ``lua/<algorithm>.lua``
    #: (the notebook's exercise does); the prelude is prepended either way.
    lua_body: str | None = None

    def __init__(
        self,
        limit: int,
        period: float,
        *,
        clock: Clock | None = None,
        burst: int | None = None,
        client: redis.Redis | None = None,
        prefix: str = "rl",
    ) -> None:
        check_limits(limit, period, burst)
        if burst is not None and not self.uses_burst:
            raise ValueError(f"burst does not apply to {type(self).__name__}; leave it None")
        self.limit = limit
        self.period = float(period)
        self.burst = burst
        self.clock = clock
        self.prefix = prefix
        self.client = client if client is not None else redis_client()
        self._script = self.client.register_script(self.script_source())

    @classmethod
    def script_source(cls) -> str:
        """The full script this class runs: prelude + ``lua_body`` if set, else ``lua/<algorithm>.lua``."""
        if cls.lua_body is not None:
            return lua_prelude() + "\n" + cls.lua_body
        return lua_source(cls.algorithm)

    @property
    def capacity(self) -> int:
        """The most units one key can hold or spend at once."""
        return self.burst or self.limit

    def keys_for(self, key: str) -> list[str]:
        """Redis keys holding ``key``'s state; the hash tag keeps them in one Cluster slot."""
        base = f"{self.prefix}:{self.algorithm}:{{{key}}}"
        return [base] + [f"{base}:{suffix}" for suffix in self.extra_keys]

    def script_args(self, cost: int) -> list:
        """The prelude's ARGV: now ('' = Redis server time), limit, period, capacity, cost."""
        check_cost(cost, self.capacity)
        now = "" if self.clock is None else repr(float(self.clock.now()))
        return [now, self.limit, repr(self.period), self.capacity, cost]

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Decide on ``cost`` units for ``key`` in one round trip."""
        return self.decode(self._script(keys=self.keys_for(key), args=self.script_args(cost)), cost)

    def decode(self, reply: list, cost: int) -> Decision:
        """Turn the script's reply into a Decision.

        The default reply is ``{allowed, remaining, reset_after, retry_after, delay}`` (what a
        script written from scratch returns); the built-in scripts return only their state and
        override this with the in-memory twin's outcome function.
        """
        allowed, remaining, reset, retry, delay = reply
        return Decision(
            allowed=bool(int(allowed)),
            limit=self.capacity,
            remaining=int(remaining),
            reset_after=float(reset),
            retry_after=float(retry),
            delay=float(delay),
        )


class RedisTokenBucket(RedisLimiter):
    """Token bucket; state is a hash {tokens, ts}."""

    algorithm = "token_bucket"
    uses_burst = True

    def decode(self, reply: list, cost: int) -> Decision:
        """Reply ``{allowed, tokens}``."""
        return token_bucket_outcome(bool(reply[0]), float(reply[1]), cost, self.capacity, self.limit / self.period)


class RedisLeakyBucket(RedisLimiter):
    """Leaky bucket as a queue meter; state is a hash {level, ts}."""

    algorithm = "leaky_bucket"
    uses_burst = True

    def decode(self, reply: list, cost: int) -> Decision:
        """Reply ``{allowed, level before the request}``."""
        return leaky_bucket_outcome(bool(reply[0]), float(reply[1]), cost, self.capacity, self.limit / self.period)


class RedisFixedWindow(RedisLimiter):
    """Fixed window; state is a hash {w, count} (one key, not one per window, so Cluster sees it)."""

    algorithm = "fixed_window"

    def decode(self, reply: list, cost: int) -> Decision:
        """Reply ``{allowed, count, seconds to the next window}``."""
        return fixed_window_outcome(bool(reply[0]), int(reply[1]), self.limit, float(reply[2]))


class RedisSlidingWindowLog(RedisLimiter):
    """Sliding window log; a sorted set of admitted requests plus a hash with their running sum."""

    algorithm = "sliding_window_log"
    extra_keys = ("meta",)


class RedisSlidingWindowCounter(RedisLimiter):
    """Sliding window counter; state is a hash {w, prev, curr}."""

    algorithm = "sliding_window_counter"

    def decode(self, reply: list, cost: int) -> Decision:
        """Reply ``{allowed, prev, curr before the request, now}``."""
        allowed, prev, curr, now = reply
        return sliding_counter_outcome(bool(allowed), int(prev), int(curr), cost, self.limit, self.period, float(now))


class RedisGCRA(RedisLimiter):
    """GCRA; state is one string, the theoretical arrival time."""

    algorithm = "gcra"
    uses_burst = True

    def decode(self, reply: list, cost: int) -> Decision:
        """Reply ``{allowed, backlog before the request}``."""
        return gcra_outcome(bool(reply[0]), float(reply[1]), cost, self.capacity, self.period / self.limit)


REDIS_ALGORITHMS: dict[str, type[RedisLimiter]] = {
    cls.algorithm: cls
    for cls in (
        RedisTokenBucket,
        RedisLeakyBucket,
        RedisFixedWindow,
        RedisSlidingWindowLog,
        RedisSlidingWindowCounter,
        RedisGCRA,
    )
}


@cache
def batch_source() -> str:
    """One script holding every built-in algorithm as a function, run in turn by ``_batch.lua``.

    Each algorithm's prelude and body become the body of a function whose parameters are named
    KEYS and ARGV, so the unchanged script text reads that limiter's keys and arguments.
    """
    folder = resources.files("lab_core.ratelimit") / "lua"
    runners = ",\n".join(f"{name} = function(KEYS, ARGV)\n{lua_source(name)}\nend" for name in REDIS_ALGORITHMS)
    return f"local run = {{\n{runners}\n}}\n" + (folder / "_batch.lua").read_text()


class RedisBatch:
    """Several built-in Redis limiters decided in one round trip, in order, stopping at the first rejection."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(batch_source())

    @staticmethod
    def supports(limiter: object) -> bool:
        """True for the built-in classes, whose scripts the batch carries (not subclasses with their own Lua)."""
        return type(limiter) in REDIS_ALGORITHMS.values()

    def acquire(self, calls: list[tuple[RedisLimiter, str, int]]) -> list[Decision]:
        """Decisions for ``(limiter, key, cost)`` in order, up to and including the first rejection."""
        keys: list[str] = []
        args: list = []
        for limiter, key, cost in calls:
            limiter_keys = limiter.keys_for(key)
            keys += limiter_keys
            args += [limiter.algorithm, len(limiter_keys), *limiter.script_args(cost)]
        replies = self._script(keys=keys, args=args)
        return [limiter.decode(reply, cost) for (limiter, _, cost), reply in zip(calls, replies)]
