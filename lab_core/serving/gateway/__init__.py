"""Lab 07's API gateway in front of the LLM engine replicas.

OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions`` (JSON and SSE streaming),
API keys with tiers (``keys``), requests/min and tokens/min for user and org with a refund of
unused output tokens (``limits``), a bounded priority queue with ageing (``queue``), a circuit
breaker per replica (``breaker``) and a least-loaded router (``router``). The engine is
anything implementing ``lab_core.serving.protocol.AsyncEngineLike``.

    app = create_gateway(Router({"tiny": [engine]}), DEFAULT_KEYS)
"""

from lab_core.serving.gateway.app import ParsedRequest, create_gateway, parse_request, render_chat
from lab_core.serving.gateway.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from lab_core.serving.gateway.keys import DEFAULT_KEYS, DEFAULT_LIMITS, TIERS, ApiKey, TierLimits, load_keys
from lab_core.serving.gateway.limits import Admission, AdmissionDecision, RequestTooLarge, Reservation
from lab_core.serving.gateway.queue import Dispatcher, PriorityQueue, QueueFull
from lab_core.serving.gateway.router import NoReplicaAvailable, Replica, Router, UnknownModel

__all__ = [
    "Admission",
    "AdmissionDecision",
    "ApiKey",
    "CLOSED",
    "CircuitBreaker",
    "DEFAULT_KEYS",
    "DEFAULT_LIMITS",
    "Dispatcher",
    "HALF_OPEN",
    "NoReplicaAvailable",
    "OPEN",
    "ParsedRequest",
    "PriorityQueue",
    "QueueFull",
    "Replica",
    "RequestTooLarge",
    "Reservation",
    "Router",
    "TIERS",
    "TierLimits",
    "UnknownModel",
    "create_gateway",
    "load_keys",
    "parse_request",
    "render_chat",
]
