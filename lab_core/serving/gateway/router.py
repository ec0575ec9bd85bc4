"""Router: which replica of a model serves the next request.

Each model has one or more replicas (``AsyncEngineLike``), each behind its own circuit breaker
and with at most ``max_inflight`` requests sent by this gateway at once. ``pick`` returns the
least-loaded replica that is healthy, has a breaker that lets calls through and has a free slot;
load = requests this gateway has in flight there + the engine's own waiting queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lab_core.serving.gateway.breaker import CircuitBreaker
from lab_core.serving.protocol import AsyncEngineLike
from lab_core.sim.clock import Clock, RealClock


class UnknownModel(LookupError):
    """No such model: maps to 404."""


class NoReplicaAvailable(RuntimeError):
    """Every replica of the model is unhealthy or behind an open breaker: maps to 503.
    ``retry_after``: seconds until the first breaker lets a trial through."""

    def __init__(self, model: str, retry_after: float) -> None:
        super().__init__(f"model {model!r}: no healthy replica (circuit breaker open or engine unhealthy)")
        self.model, self.retry_after = model, retry_after


@dataclass(eq=False)
class Replica:
    """One engine replica as the gateway sees it."""

    name: str
    model: str
    engine: AsyncEngineLike
    breaker: CircuitBreaker
    max_inflight: int
    inflight: int = 0
    served: int = field(default=0)

    def load(self) -> int:
        """In flight from this gateway + waiting inside the engine."""
        return self.inflight + self.engine.stats().waiting

    def usable(self) -> bool:
        """Healthy and its breaker would let a call through (an unhealthy engine trips it)."""
        if not self.engine.healthy:
            if self.breaker.state != "open":
                self.breaker.trip()
            return False
        return self.breaker.available()


class Router:
    """Replicas per model: ``Router({"tiny": [engine_a, engine_b]})``.

    ``max_inflight``: most requests the gateway sends one replica at once (the rest queue in the
    gateway, by priority); ``failure_threshold``/``open_seconds`` configure every breaker.
    """

    def __init__(
        self,
        models: Mapping[str, Sequence[AsyncEngineLike]],
        *,
        clock: Clock | None = None,
        max_inflight: int = 64,
        failure_threshold: int = 5,
        open_seconds: float = 10.0,
    ) -> None:
        if not isinstance(models, Mapping) or not models:
            raise ValueError("models must be a non-empty mapping {model name: [replica, ...]}")
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1:
            raise ValueError(f"max_inflight must be a positive integer, got {max_inflight!r}")
        self.clock = clock or RealClock()
        self._replicas: dict[str, list[Replica]] = {}
        for model, engines in models.items():
            if not isinstance(model, str) or not model:
                raise ValueError(f"model names must be non-empty strings, got {model!r}")
            engines = list(engines) if not isinstance(engines, AsyncEngineLike) else [engines]
            if not engines:
                raise ValueError(f"models[{model!r}] has no replicas")
            for i, e in enumerate(engines):
                if not isinstance(e, AsyncEngineLike):
                    raise ValueError(f"models[{model!r}][{i}] does not implement AsyncEngineLike")
            self._replicas[model] = [
                Replica(
                    f"{model}/{i}",
                    model,
                    e,
                    CircuitBreaker(failure_threshold=failure_threshold, open_seconds=open_seconds, clock=self.clock),
                    max_inflight,
                )
                for i, e in enumerate(engines)
            ]

    @property
    def models(self) -> list[str]:
        """Model names, in the order given."""
        return list(self._replicas)

    def replicas(self, model: str) -> list[Replica]:
        """The replicas of ``model``; ``UnknownModel`` when there is no such model."""
        try:
            return self._replicas[model]
        except KeyError:
            raise UnknownModel(f"model {model!r} does not exist; available: {', '.join(self._replicas)}") from None

    def max_context(self, model: str) -> int:
        """The smallest context length among ``model``'s replicas."""
        return min(r.engine.max_context for r in self.replicas(model))

    def tokenize(self, model: str, text: str) -> list[int]:
        """Token ids of ``text`` for ``model`` (replicas of a model share a tokenizer)."""
        return self.replicas(model)[0].engine.tokenize(text)

    def check_available(self, model: str) -> None:
        """Raise ``NoReplicaAvailable`` when no replica is usable (full ones count as usable)."""
        reps = self.replicas(model)
        if not any(r.usable() for r in reps):
            raise NoReplicaAvailable(model, self._retry_after(reps))

    @staticmethod
    def _retry_after(reps: list[Replica]) -> float:
        return min((r.breaker.retry_after() for r in reps), default=0.0)

    def pick(self, model: str) -> Replica | None:
        """The least-loaded usable replica with a free slot, its slot taken (``inflight`` + 1), or
        None when every usable one is full. ``NoReplicaAvailable`` when none is usable."""
        reps = self.replicas(model)
        usable = [r for r in reps if r.usable()]
        if not usable:
            raise NoReplicaAvailable(model, self._retry_after(reps))
        free = [r for r in usable if r.inflight < r.max_inflight]
        if len(free) > 1:
            free.sort(key=Replica.load)
        for r in free:
            if r.breaker.allow():
                r.inflight += 1
                r.served += 1
                return r
        return None

    def release(self, replica: Replica) -> None:
        """Give back the slot ``pick`` took."""
        replica.inflight = max(0, replica.inflight - 1)

    def snapshot(self) -> dict[str, list[dict]]:
        """Per model, per replica: in flight, engine stats, KV utilisation, breaker state."""
        out: dict[str, list[dict]] = {}
        for model, reps in self._replicas.items():
            rows = []
            for r in reps:
                s = r.engine.stats()
                rows.append(
                    {
                        "replica": r.name,
                        "healthy": bool(r.engine.healthy),
                        "breaker": r.breaker.state,
                        "breaker_opens": r.breaker.opens,
                        "inflight": r.inflight,
                        "served": r.served,
                        "running": s.running,
                        "waiting": s.waiting,
                        "kv_utilization": round(s.kv_utilization, 4),
                        "kv_used_blocks": s.kv_used_blocks,
                        "kv_total_blocks": s.kv_total_blocks,
                        "preemptions": s.preemptions,
                    }
                )
            out[model] = rows
        return out
