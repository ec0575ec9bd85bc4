"""Lab 07: LLM inference serving — a real continuous-batching engine with a paged KV cache, an
OpenAI-compatible gateway (auth, requests/min and tokens/min limits, priority queue, 429
backpressure, circuit breakers, least-loaded routing), disaggregated prefill/decode workers, and
a simpy fleet simulator with a capacity planner.

Public API: ``LLMEngine`` / ``EngineConfig`` (the engine), ``AsyncEngine`` (a replica for the
gateway), ``BlockManager`` and ``Scheduler`` (the parts the notebook rebuilds),
``generate_sequential`` / ``generate_static`` (baselines), ``SamplingParams`` / ``TokenEvent``
(the protocol). The gateway is ``lab_core.serving.gateway``, the fleet simulator
``lab_core.serving.fleet``, disaggregation ``lab_core.serving.disagg``.
"""

from lab_core.serving.async_engine import AsyncEngine
from lab_core.serving.baseline import generate_sequential, generate_static
from lab_core.serving.blocks import BlockAllocator, BlockManager, OutOfBlocks
from lab_core.serving.engine import Completion, EngineConfig, LLMEngine, StepRecord
from lab_core.serving.protocol import FREE, PAID, EngineError, EngineStats, SamplingParams, TokenEvent
from lab_core.serving.scheduler import Scheduler, SchedulerBase, SchedulerConfig, StepPlan

__all__ = [
    "FREE",
    "PAID",
    "AsyncEngine",
    "BlockAllocator",
    "BlockManager",
    "Completion",
    "EngineConfig",
    "EngineError",
    "EngineStats",
    "LLMEngine",
    "OutOfBlocks",
    "SamplingParams",
    "Scheduler",
    "SchedulerBase",
    "SchedulerConfig",
    "StepPlan",
    "StepRecord",
    "TokenEvent",
    "generate_sequential",
    "generate_static",
]
