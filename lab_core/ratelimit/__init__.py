"""Lab 01: rate limiter — six algorithms (memory and Redis/Lua), a rules engine, ASGI middleware, simulation.

Public API: ``RateLimiter`` (the protocol), ``Decision``, the algorithms (``TokenBucket``,
``LeakyBucket``, ``FixedWindow``, ``SlidingWindowLog``, ``SlidingWindowCounter``, ``GCRA`` and
their ``Redis*`` twins), ``RulesEngine`` / ``Rule`` / ``load_rules``, ``RateLimitMiddleware``,
``create_app`` (the demo API) and ``simulate``.
"""

from lab_core.ratelimit.demo import create_app, default_rules
from lab_core.ratelimit.memory import (
    ALGORITHMS,
    GCRA,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from lab_core.ratelimit.middleware import RateLimitMiddleware, rate_limit_headers
from lab_core.ratelimit.protocol import Decision, RateLimiter
from lab_core.ratelimit.redis_backend import (
    REDIS_ALGORITHMS,
    RedisFixedWindow,
    RedisGCRA,
    RedisLeakyBucket,
    RedisLimiter,
    RedisSlidingWindowCounter,
    RedisSlidingWindowLog,
    RedisTokenBucket,
    lua_source,
)
from lab_core.ratelimit.rules import EngineDecision, RequestInfo, Rule, RuleError, RulesEngine, load_rules
from lab_core.ratelimit.simulate import (
    Client,
    SimResult,
    behind_one_ip,
    boundary_attacker,
    bursty,
    simulate,
    steady,
)

__all__ = [
    "ALGORITHMS",
    "GCRA",
    "REDIS_ALGORITHMS",
    "Client",
    "Decision",
    "EngineDecision",
    "FixedWindow",
    "LeakyBucket",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisFixedWindow",
    "RedisGCRA",
    "RedisLeakyBucket",
    "RedisLimiter",
    "RedisSlidingWindowCounter",
    "RedisSlidingWindowLog",
    "RedisTokenBucket",
    "RequestInfo",
    "Rule",
    "RuleError",
    "RulesEngine",
    "SimResult",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    "behind_one_ip",
    "boundary_attacker",
    "bursty",
    "create_app",
    "default_rules",
    "load_rules",
    "lua_source",
    "rate_limit_headers",
    "simulate",
    "steady",
]
