"""Rules engine: which limits apply to a request, and which one decides.

A rule names a scope (user, ip, endpoint or global), an algorithm and its limit; optional
``match`` filters narrow it to some endpoints, methods or users. A request is checked against
every rule that matches it, most specific scope first, and stops at the first rejection so that
a user over their own limit does not also use up the shared global quota.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
import yaml

from lab_core.ratelimit.memory import ALGORITHMS
from lab_core.ratelimit.protocol import Decision, RateLimiter
from lab_core.ratelimit.redis_backend import REDIS_ALGORITHMS, RedisBatch
from lab_core.sim.clock import Clock, RealClock

log = logging.getLogger(__name__)

Scope = Literal["user", "ip", "endpoint", "global"]
SCOPES: tuple[str, ...] = ("user", "ip", "endpoint", "global")
RULE_FIELDS = {"name", "scope", "algorithm", "limit", "period", "burst", "cost", "fail", "match"}
MATCH_FIELDS = {"endpoints", "methods", "users"}


class RuleError(ValueError):
    """A rule configuration that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True)
class Match:
    """Optional filters: glob patterns on the path, HTTP methods, user ids. Empty means any."""

    endpoints: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    users: tuple[str, ...] = ()

    def matches(self, request: RequestInfo) -> bool:
        """True when every non-empty filter accepts the request."""
        if self.endpoints and not any(fnmatch.fnmatchcase(request.endpoint, p) for p in self.endpoints):
            return False
        if self.methods and request.method.upper() not in self.methods:
            return False
        if self.users and request.user not in self.users:
            return False
        return True


@dataclass(frozen=True)
class Rule:
    """One limit: ``limit`` units per ``period`` seconds for each distinct value of ``scope``."""

    name: str
    scope: Scope
    limit: int
    period: float
    algorithm: str = "token_bucket"
    burst: int | None = None
    cost: int = 1
    fail: Literal["open", "closed"] = "open"
    match: Match = field(default_factory=Match)

    def __post_init__(self) -> None:
        def bad(field_name: str, why: str) -> RuleError:
            return RuleError(f"rule {self.name!r}: field {field_name!r} {why}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise RuleError(f"rule {self.name!r}: field 'name' must be a non-empty string")
        if self.scope not in SCOPES:
            raise bad("scope", f"must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.algorithm not in ALGORITHMS:
            raise bad("algorithm", f"must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise bad("limit", f"must be a positive integer, got {self.limit!r}")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, (int, float))
            or not math.isfinite(self.period)
            or self.period <= 0
        ):
            raise bad("period", f"must be a positive number of seconds, got {self.period!r}")
        if self.burst is not None:
            if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
                raise bad("burst", f"must be a positive integer, got {self.burst!r}")
            if not ALGORITHMS[self.algorithm].uses_burst:
                raise bad("burst", f"does not apply to algorithm {self.algorithm!r}")
        capacity = self.burst or self.limit
        if isinstance(self.cost, bool) or not isinstance(self.cost, int) or self.cost < 1:
            raise bad("cost", f"must be a positive integer, got {self.cost!r}")
        if self.cost > capacity:
            raise bad("cost", f"{self.cost} exceeds the rule's capacity {capacity}, so no request could pass")
        if self.fail not in ("open", "closed"):
            raise bad("fail", f"must be 'open' or 'closed', got {self.fail!r}")

    @classmethod
    def from_dict(cls, data: Any, index: int = 0) -> Rule:
        """Build a rule from a YAML/JSON mapping, rejecting unknown or missing fields by name."""
        if not isinstance(data, dict):
            raise RuleError(f"rule #{index + 1}: must be a mapping, got {type(data).__name__}")
        name = data.get("name", f"#{index + 1}")
        unknown = set(data) - RULE_FIELDS
        if unknown:
            raise RuleError(f"rule {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
        for required in ("name", "scope", "limit", "period"):
            if required not in data:
                raise RuleError(f"rule {name!r}: field {required!r} is required")
        match = data.get("match") or {}
        if not isinstance(match, dict) or set(match) - MATCH_FIELDS:
            raise RuleError(f"rule {name!r}: field 'match' takes only {', '.join(sorted(MATCH_FIELDS))}")
        for key, value in match.items():
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuleError(f"rule {name!r}: field 'match.{key}' must be a list of strings")
        fields = {k: v for k, v in data.items() if k != "match"}
        return cls(
            **fields,
            match=Match(
                endpoints=tuple(match.get("endpoints", ())),
                methods=tuple(m.upper() for m in match.get("methods", ())),
                users=tuple(match.get("users", ())),
            ),
        )

    def key_for(self, request: RequestInfo) -> str | None:
        """The counter key for this request, or None when the rule cannot apply (no user)."""
        value = {
            "user": request.user,
            "ip": request.ip,
            "endpoint": request.endpoint,
            "global": "*",
        }[self.scope]
        return None if value is None else f"{self.name}:{value}"


def load_rules(source: str | Path | list | dict) -> list[Rule]:
    """Rules from a YAML file path, a YAML string, or already-parsed data (``{"rules": [...]}`` or a list)."""
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        path = Path(source)
        if not path.exists():
            raise RuleError(f"rules file {str(path)!r} does not exist")
        source = path.read_text()
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise RuleError(f"rules are not valid YAML: {exc}") from None
    if isinstance(source, dict):
        if set(source) != {"rules"}:
            raise RuleError("rules document must have exactly one top-level key, 'rules'")
        source = source["rules"]
    if not isinstance(source, list) or not source:
        raise RuleError("rules must be a non-empty list of rule mappings")
    rules = [Rule.from_dict(item, i) for i, item in enumerate(source)]
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RuleError(f"rule names must be unique; repeated: {', '.join(duplicated)}")
    return rules


@dataclass(frozen=True)
class RequestInfo:
    """What the rules engine needs to know about a request."""

    ip: str
    endpoint: str
    method: str = "GET"
    user: str | None = None


@dataclass(frozen=True)
class RuleDecision:
    """One rule's verdict; ``error`` is set when the store failed and the rule's fail policy decided."""

    rule: Rule
    key: str
    decision: Decision
    error: str | None = None


@dataclass(frozen=True)
class EngineDecision:
    """The overall verdict and the rule that decided it (the rejecting one, or the tightest if allowed)."""

    allowed: bool
    deciding: RuleDecision | None
    checked: tuple[RuleDecision, ...]

    @property
    def degraded(self) -> bool:
        """True when some rule could not reach its store and fell back on its fail policy."""
        return any(rd.error for rd in self.checked)


class RulesEngine:
    """Checks requests against rules, with one limiter per rule on a shared store.

    ``store=None`` keeps counters in process memory; a Redis client puts them in Redis (the
    real deployment: every API server shares them). ``clock=None`` means wall time in memory
    and Redis server time in Redis. ``algorithms`` replaces the class behind an algorithm name
    (``{"token_bucket": MyTokenBucket}``: a student's class in the real system); it is built
    with the same arguments as the built-in class it replaces (for Redis: ``client``, ``prefix``).
    With Redis and only built-in algorithms, a request's rules run in one script (one round
    trip, atomic together); ``batch=False`` checks them one script each (needed on a Redis Cluster).
    """

    def __init__(
        self,
        rules: list[Rule] | str | Path | dict,
        *,
        store: redis.Redis | None = None,
        clock: Clock | None = None,
        prefix: str = "rl",
        algorithms: Mapping[str, Callable[..., RateLimiter]] | None = None,
        batch: bool = True,
    ) -> None:
        unknown = set(algorithms or {}) - set(ALGORITHMS)
        if unknown:
            raise ValueError(
                f"algorithms: unknown name(s) {', '.join(sorted(unknown))}; known: {', '.join(ALGORITHMS)}"
            )
        self.algorithms: dict[str, Callable[..., RateLimiter]] = dict(algorithms or {})
        self.rules = rules if isinstance(rules, list) and all(isinstance(r, Rule) for r in rules) else load_rules(rules)
        self.store = store
        order = {scope: i for i, scope in enumerate(SCOPES)}
        self._ordered = sorted(self.rules, key=lambda r: order[r.scope])
        self._limiters: dict[str, RateLimiter] = {r.name: self._make(r, clock, prefix) for r in self.rules}
        # One round trip per request when every limiter is a built-in Redis one. Off for a Redis
        # Cluster: one script may only touch keys of one slot, and rules key by different values.
        self._batch = (
            RedisBatch(store)
            if store is not None and batch and all(RedisBatch.supports(lim) for lim in self._limiters.values())
            else None
        )
        self._store_down = False

    def _make(self, rule: Rule, clock: Clock | None, prefix: str) -> RateLimiter:
        kwargs: dict[str, Any] = {"burst": rule.burst} if rule.burst else {}
        if self.store is None:
            cls = self.algorithms.get(rule.algorithm, ALGORITHMS[rule.algorithm])
            return cls(rule.limit, rule.period, clock=clock or RealClock(), **kwargs)
        redis_cls = self.algorithms.get(rule.algorithm, REDIS_ALGORITHMS[rule.algorithm])
        return redis_cls(rule.limit, rule.period, clock=clock, client=self.store, prefix=prefix, **kwargs)

    def limiter(self, rule_name: str) -> RateLimiter:
        """The limiter behind a rule (for inspection in notebooks and dashboards)."""
        return self._limiters[rule_name]

    def check(self, request: RequestInfo) -> EngineDecision:
        """Apply every matching rule, most specific first; stop at the first rejection."""
        matching = [
            (rule, key)
            for rule in self._ordered
            if (key := rule.key_for(request)) is not None and rule.match.matches(request)
        ]
        checked = self._apply_batch(matching) if self._batch is not None and matching else self._apply_each(matching)
        rejected = next((rd for rd in checked if not rd.decision.allowed), None)
        if rejected is not None:
            return EngineDecision(False, rejected, tuple(checked))
        tightest = min(checked, key=lambda rd: rd.decision.remaining / rd.decision.limit, default=None)
        return EngineDecision(True, tightest, tuple(checked))

    def _apply_each(self, matching: list[tuple[Rule, str]]) -> list[RuleDecision]:
        checked: list[RuleDecision] = []
        for rule, key in matching:
            try:
                verdict = RuleDecision(rule, key, self._limiters[rule.name].acquire(key, rule.cost))
                self._store_reachable()
            except (redis.RedisError, OSError) as exc:
                verdict = self._fallback(rule, key, exc)
            checked.append(verdict)
            if not verdict.decision.allowed:
                break
        return checked

    def _apply_batch(self, matching: list[tuple[Rule, str]]) -> list[RuleDecision]:
        assert self._batch is not None
        calls = [(self._limiters[rule.name], key, rule.cost) for rule, key in matching]
        try:
            decisions = self._batch.acquire(calls)  # type: ignore[arg-type]
        except (redis.RedisError, OSError) as exc:
            checked = []
            for rule, key in matching:
                checked.append(self._fallback(rule, key, exc))
                if rule.fail == "closed":
                    break
            return checked
        self._store_reachable()
        return [RuleDecision(rule, key, d) for (rule, key), d in zip(matching, decisions)]

    def _fallback(self, rule: Rule, key: str, exc: Exception) -> RuleDecision:
        """The rule's fail policy decides when its store cannot be reached."""
        if not self._store_down:
            log.warning("rate-limit store unreachable (%s); each rule falls back on its fail policy", exc)
        self._store_down = True
        allowed = rule.fail == "open"
        decision = Decision(
            allowed=allowed,
            limit=rule.burst or rule.limit,
            remaining=0,
            reset_after=1.0,
            retry_after=0.0 if allowed else 1.0,
        )
        return RuleDecision(rule, key, decision, error=f"{type(exc).__name__}: {exc}")

    def _store_reachable(self) -> None:
        if self._store_down:
            log.warning("rate-limit store reachable again")
            self._store_down = False
