"""The cluster's job-submission API (Starlette) over a ``LiveCluster``, with JSON 4xx errors for bad input."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab_core import jsonapi
from lab_core.cluster.job import JobError
from lab_core.cluster.live import STATES, AlreadyDown, ClusterStopped, LiveCluster, Unschedulable
from lab_core.jsonapi import BadInput, read_json

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FAILURE_FIELDS = {"node", "rack", "repair_after"}
# What a client may ask of this cluster: a job longer than a year or a node repaired after more than
# a month is a typo or an attack (a job that never ends holds its GPUs forever).
MAX_JOB_SECONDS = 365 * 24 * 3600.0
MAX_REPAIR_SECONDS = 30 * 24 * 3600.0
PRIORITY_BOUND = 1000
MAX_SIM_SECONDS = 100 * 365 * 24 * 3600.0
BOUNDS: dict[str, tuple[float, float, str]] = {
    "duration": (0, MAX_JOB_SECONDS, "seconds (one year)"),
    "estimate": (0, MAX_JOB_SECONDS, "seconds (one year)"),
    "checkpoint_interval": (0, MAX_JOB_SECONDS, "seconds (one year)"),
    "priority": (-PRIORITY_BOUND, PRIORITY_BOUND, ""),
}


def _within_bounds(body: Any) -> Any:
    """``body`` unchanged, or a 422 naming the first number outside what this cluster accepts."""
    if isinstance(body, dict):
        for name, (low, high, unit) in BOUNDS.items():
            value = body.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
                raise BadInput(
                    422,
                    "invalid_field",
                    f"{name} must be at most {high:g} {unit}".rstrip() + f" and at least {low:g}, got {value!r}"[:200],
                )
    return body


def _plain(value: Any) -> Any:
    # Starlette's JSONResponse refuses NaN (a false-positive detection has no delay) and numpy scalars.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_plain(body), status_code=status, headers=headers)


def _job_id(raw: str) -> int:
    # isdigit() alone accepts '²', which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadInput(400, "bad_request", f"job id must be a whole number >= 0, got {raw[:40]!r}")
    return int(raw)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadInput(400, "bad_limit", f"limit must be an integer in 1..{MAX_LIMIT}, got {raw[:40]!r}")
    return int(raw)


def _since(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or not 0 <= value <= MAX_SIM_SECONDS:
        raise BadInput(
            400,
            "bad_since",
            f"since must be a simulated time in seconds from 0 to {MAX_SIM_SECONDS:g} (100 years), got {raw[:40]!r}",
        )
    return value


def _failure(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput(
            422, "invalid_field", 'body must be a JSON object: {"node": N} or {"rack": N}, optional "repair_after"'
        )
    unknown = sorted(set(body) - FAILURE_FIELDS)
    if unknown:
        raise BadInput(422, "invalid_field", f"unknown field(s): {', '.join(unknown)}; known: node, rack, repair_after")
    if ("node" in body) == ("rack" in body):
        raise BadInput(422, "invalid_field", "give exactly one of node or rack")
    target = "node" if "node" in body else "rack"
    value = body[target]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(422, "invalid_field", f"{target} must be a whole number, got {value!r}"[:300])
    repair = body.get("repair_after")
    if repair is not None and (
        isinstance(repair, bool) or not isinstance(repair, (int, float)) or not math.isfinite(repair) or repair <= 0
    ):
        raise BadInput(
            422, "invalid_field", f"repair_after must be a number of seconds > 0 or null, got {repair!r}"[:300]
        )
    if repair is not None and repair > MAX_REPAIR_SECONDS:
        raise BadInput(
            422,
            "invalid_field",
            f"repair_after must be at most {MAX_REPAIR_SECONDS:g} seconds (30 days), got {repair!r}"[:300],
        )
    return {target: value, "repair_after": None if repair is None else float(repair)}


def build_api(live: LiveCluster) -> Starlette:
    """The Starlette app over ``live``; ``app.state.cluster`` is it (tests advance its time by hand)."""

    def guarded(handler):
        return jsonapi.guarded(handler, {ClusterStopped: (503, "cluster_stopped")})

    async def index(request: Request) -> JSONResponse:
        c = live.sim.cluster
        return _ok(
            {
                "service": "sysdesign-lab GPU cluster scheduler demo",
                "endpoints": [
                    "POST /jobs",
                    "GET /jobs?state=&limit=",
                    "GET /jobs/{id}",
                    "DELETE /jobs/{id}",
                    "GET /cluster",
                    "GET /metrics",
                    "GET /events?since=",
                    "POST /failures",
                ],
                "job_fields": {
                    "required": ["num_gpus", "duration"],
                    "optional": [
                        "gpu_milli",
                        "priority",
                        "tenant",
                        "gpu_type",
                        "checkpoint_interval",
                        "estimate",
                        "name",
                        "cpu_milli",
                        "memory_mib",
                    ],
                },
                "config": {
                    "racks": len(set(c.rack.tolist())),
                    "nodes": c.num_nodes,
                    "gpus": c.total_gpus,
                    "gpu_types": sorted(set(c.gpu_type.tolist())),
                    "scheduler": live.scheduler_name,
                    "placer": live.placer_name,
                    "speed": live.speed,
                },
            }
        )

    async def submit(request: Request) -> JSONResponse:
        body = _within_bounds(await read_json(request))
        try:
            job = live.submit(body)
        except Unschedulable as exc:
            raise BadInput(422, "unschedulable", str(exc)) from None
        except JobError as exc:
            raise BadInput(422, "invalid_field", str(exc)) from None
        view = live.job(job.id)
        return _ok(view, 201, headers={"Location": f"/jobs/{job.id}"})

    async def list_jobs(request: Request) -> JSONResponse:
        state = request.query_params.get("state")
        if state is not None and state not in STATES:
            raise BadInput(400, "bad_state", f"state must be one of {', '.join(STATES)}, got {state[:40]!r}")
        return _ok(live.jobs(state, _limit(request.query_params.get("limit"))))

    async def get_job(request: Request) -> JSONResponse:
        job_id = _job_id(request.path_params["id"])
        try:
            return _ok(live.job(job_id))
        except KeyError:
            raise BadInput(404, "unknown_job", f"no job {job_id}") from None

    async def cancel_job(request: Request) -> JSONResponse:
        job_id = _job_id(request.path_params["id"])
        try:
            return _ok(live.cancel(job_id))
        except KeyError:
            raise BadInput(404, "unknown_job", f"no job {job_id}") from None
        except JobError as exc:
            raise BadInput(409, "not_cancellable", str(exc)) from None

    async def cluster(request: Request) -> JSONResponse:
        return _ok(live.cluster_view())

    async def metrics(request: Request) -> JSONResponse:
        return _ok(live.metrics())

    async def events(request: Request) -> JSONResponse:
        return _ok(live.events(_since(request.query_params.get("since"))))

    async def failures(request: Request) -> JSONResponse:
        spec = _failure(await read_json(request))
        target = "node" if "node" in spec else "rack"
        try:
            return _ok(live.fail(**spec), 202)
        except AlreadyDown as exc:
            raise BadInput(409, "already_down", str(exc)) from None
        except ValueError as exc:
            raise BadInput(404, f"unknown_{target}", str(exc)) from None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if live.autostart:
            live.start()
        try:
            yield
        finally:
            live.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/jobs", guarded(submit), methods=["POST"]),
            Route("/jobs", guarded(list_jobs), methods=["GET"]),
            Route("/jobs/{id}", guarded(get_job), methods=["GET"]),
            Route("/jobs/{id}", guarded(cancel_job), methods=["DELETE"]),
            Route("/cluster", guarded(cluster), methods=["GET"]),
            Route("/metrics", guarded(metrics), methods=["GET"]),
            Route("/events", guarded(events), methods=["GET"]),
            Route("/failures", guarded(failures), methods=["POST"]),
        ],
        exception_handlers=jsonapi.EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.cluster = live
    return app
