"""``syslab demo cluster``: a GPU cluster's job-submission API over a simulation in scaled real time.

The default cluster is 2 racks x 4 nodes x 8 H100 GPUs (NVLink domains of 4), scheduled by EASY
backfill with best-fit placement, one simulated minute per real second, with a seeded background
load of synthetic jobs (the published mix) arriving at about 70% of the cluster's capacity.
"""

from __future__ import annotations

import argparse
import math
from contextlib import nullcontext

from starlette.applications import Starlette

from lab_core import httpserve
from lab_core.cluster.api import build_api
from lab_core.cluster.health import HealthConfig
from lab_core.cluster.job import Job
from lab_core.cluster.live import LiveCluster, shapes_for
from lab_core.cluster.model import Cluster
from lab_core.cluster.placement import PLACERS
from lab_core.cluster.schedulers import SCHEDULERS
from lab_core.cluster.synthetic import MIXES, synthetic
from lab_core.jsonapi import ApiSurface, Example

DEFAULTS = {
    "racks": 2,
    "nodes_per_rack": 4,
    "gpus_per_node": 8,
    "nvlink_domain": 4,
    "gpu_type": "H100",
    "scheduler": "easy_backfill",
    "placer": "best_fit",
    "speed": 60.0,
    "background_jobs": 200,
    "load": 0.7,
    "seed": 0,
}


def background(cluster: Cluster, n_jobs: int, *, load: float = 0.7, seed: int = 0, mix: str = "published") -> list[Job]:
    """``n_jobs`` seeded synthetic jobs whose arrival rate keeps about ``load`` of the cluster's GPUs busy."""
    if not isinstance(n_jobs, int) or n_jobs < 0:
        raise ValueError(f"background_jobs must be a whole number >= 0, got {n_jobs!r}")
    if not 0 < load <= 2:
        raise ValueError(f"load must be in (0, 2], got {load!r}")
    if n_jobs == 0:
        return []
    m = MIXES[mix]
    width = int(cluster.gpu_count.max())
    kept = [
        (s, w)
        for s, w in zip(m.shapes, m.weights)
        if s[0] <= cluster.total_gpus and (s[0] <= width or s[0] % width == 0)
    ]
    # Offered load = rate x mean GPUs per job x mean duration (lognormal mean = median x e^(sigma^2/2)).
    mean_gpus = sum(s[0] * s[1] / 1000 * w for s, w in kept) / sum(w for _, w in kept)
    mean_duration = m.median_minutes * 60.0 * math.exp(m.sigma**2 / 2)
    rate = load * cluster.total_gpus / (mean_gpus * mean_duration)
    jobs = synthetic(n_jobs, rate=rate, mix=mix, seed=seed, max_gpus=cluster.total_gpus)
    return shapes_for(cluster, jobs)


def create_app(
    *,
    racks: int = DEFAULTS["racks"],
    nodes_per_rack: int = DEFAULTS["nodes_per_rack"],
    gpus_per_node: int = DEFAULTS["gpus_per_node"],
    nvlink_domain: int = DEFAULTS["nvlink_domain"],
    gpu_type: str = DEFAULTS["gpu_type"],
    scheduler: str = DEFAULTS["scheduler"],
    placer: str = DEFAULTS["placer"],
    speed: float = DEFAULTS["speed"],
    background_jobs: int = DEFAULTS["background_jobs"],
    load: float = DEFAULTS["load"],
    seed: int = DEFAULTS["seed"],
    health: HealthConfig | None = None,
    autostart: bool = True,
) -> Starlette:
    """The cluster API over a new ``LiveCluster``; its clock thread runs while the app is served if ``autostart``."""
    shape = Cluster.build(racks, nodes_per_rack, gpus_per_node, nvlink_domain, gpu_type)
    jobs = background(shape, background_jobs, load=load, seed=seed)
    live = LiveCluster(
        racks=racks,
        nodes_per_rack=nodes_per_rack,
        gpus_per_node=gpus_per_node,
        nvlink_domain=nvlink_domain,
        gpu_type=gpu_type,
        scheduler=scheduler,
        placer=placer,
        speed=speed,
        health=health,
        jobs=jobs,
        autostart=autostart,
    )
    return build_api(live)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo cluster``."""
    d = DEFAULTS
    parser.add_argument(
        "--scheduler",
        default=d["scheduler"],
        choices=sorted(SCHEDULERS),
        help=f"queue policy (default {d['scheduler']})",
    )
    parser.add_argument(
        "--placer", default=d["placer"], choices=sorted(PLACERS), help=f"placement policy (default {d['placer']})"
    )
    parser.add_argument(
        "--speed", type=float, default=d["speed"], help=f"simulated seconds per real second (default {d['speed']:g})"
    )
    parser.add_argument("--racks", type=int, default=d["racks"], help=f"racks (default {d['racks']})")
    parser.add_argument(
        "--nodes-per-rack",
        type=int,
        default=d["nodes_per_rack"],
        help=f"nodes in each rack (default {d['nodes_per_rack']})",
    )
    parser.add_argument(
        "--gpus-per-node",
        type=int,
        default=d["gpus_per_node"],
        help=f"GPUs in each node (default {d['gpus_per_node']})",
    )
    parser.add_argument(
        "--background-jobs",
        type=int,
        default=d["background_jobs"],
        help=f"seeded synthetic jobs arriving over time at ~{d['load'] * 100:.0f}%% load (default {d['background_jobs']}; 0: none)",
    )
    parser.add_argument(
        "--seed", type=int, default=d["seed"], help=f"seed of the background load (default {d['seed']})"
    )
    parser.add_argument(
        "--heartbeats",
        action="store_true",
        help="detect failures by heartbeat timeout (10 s beats, 30 s timeout) instead of at once",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Serve the cluster API with uvicorn (the simulation's clock on a thread) until interrupted."""

    nvlink = math.gcd(args.gpus_per_node, DEFAULTS["nvlink_domain"])  # a domain must divide the node
    app = create_app(
        racks=args.racks,
        nodes_per_rack=args.nodes_per_rack,
        gpus_per_node=args.gpus_per_node,
        nvlink_domain=nvlink,
        scheduler=args.scheduler,
        placer=args.placer,
        speed=args.speed,
        background_jobs=args.background_jobs,
        seed=args.seed,
        health=HealthConfig() if args.heartbeats else None,
    )
    url = f"http://{args.host}:{args.port}"
    print(f"cluster demo API on {url}/  ({args.speed:g} simulated s per real s)")
    print(
        f"try: curl -X POST {url}/jobs -H 'content-type: application/json' -d '{{\"num_gpus\": 4, \"duration\": 3600}}'"
    )
    print(
        f"     curl {url}/jobs/<id>   curl {url}/cluster   curl -X POST {url}/failures -d '{{\"node\": 0}}'", flush=True
    )
    httpserve.run(app, args.host, args.port)
    return 0


def api_surface() -> ApiSurface:
    """The cluster API with its clock stopped (what it stores only changes by request), and what its
    clients send (for the shared hostile-input tests)."""
    return ApiSurface(
        open=lambda: nullcontext(create_app(autostart=False, background_jobs=0)),
        writes=(
            Example(
                "POST",
                "/jobs",
                {
                    "num_gpus": 4,
                    "duration": 600,
                    "tenant": "ml",
                    "name": "resnet",
                    "priority": 1,
                    "checkpoint_interval": 60,
                    "gpu_type": DEFAULTS["gpu_type"],
                },
            ),
            Example("POST", "/jobs", {"num_gpus": 1, "duration": 60, "gpu_milli": 500, "estimate": 90}),
            Example("POST", "/failures", {"node": 0, "repair_after": 300}),
        ),
        reads=(Example("GET", "/jobs"), Example("GET", "/cluster")),
        ids=(("GET", "/jobs/{id}"), ("DELETE", "/jobs/{id}")),
        queries=(("/jobs", "state", ()), ("/jobs", "limit", ("0", "1001")), ("/events", "since", ())),
    )
