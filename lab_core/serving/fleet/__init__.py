"""Fleet scale for Lab 07: GPU specs (shared, from ``lab_core.llm.gpus``) and model specs, step-time models, a simpy simulator of many
vLLM-style engines (colocated or prefill/decode disaggregated) and a capacity planner."""

from lab_core.llm.gpus import GPU, GPUS
from lab_core.serving.fleet.gpus import (
    MODELS,
    ModelSpec,
    StepTimeModel,
    decode_tokens_per_s_bound,
    fit_step_model,
    kv_capacity_tokens,
    roofline_step_model,
)
from lab_core.serving.fleet.planner import PlanResult, brief_check, fleet_vs_load, min_tp, plan_capacity
from lab_core.serving.fleet.simulator import SLA, FleetConfig, FleetResult, Workload, request_trace, simulate

__all__ = [
    "GPU",
    "GPUS",
    "MODELS",
    "SLA",
    "FleetConfig",
    "FleetResult",
    "ModelSpec",
    "PlanResult",
    "StepTimeModel",
    "Workload",
    "brief_check",
    "decode_tokens_per_s_bound",
    "fleet_vs_load",
    "fit_step_model",
    "kv_capacity_tokens",
    "min_tp",
    "plan_capacity",
    "request_trace",
    "roofline_step_model",
    "simulate",
]
