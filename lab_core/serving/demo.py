"""``syslab demo serving``: the gateway and real engine replicas on loopback, OpenAI-compatible.

Default keys (documented in docs/labs/07_llm_serving.md): ``sk-paid-demo`` (alice, org acme,
paid) and ``sk-free-demo`` (bob, org hobby, free). ``--keys FILE`` replaces them (YAML or JSON).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from starlette.applications import Starlette

from lab_core import httpserve
from lab_core.jsonapi import ApiSurface, Example
from lab_core.llm.config import PRESETS
from lab_core.serving.async_engine import AsyncEngine
from lab_core.serving.engine import EngineConfig, LLMEngine
from lab_core.serving.gateway import DEFAULT_KEYS, Router, create_gateway, load_keys
from lab_core.serving.protocol import AsyncEngineLike

MODES = ("colocated", "disaggregated")


def parse_registered(spec: str) -> tuple[str, int | None, str | None]:
    """``NAME``, ``NAME@VERSION`` or ``NAME:STAGE`` -> (name, version, stage); no version or stage means
    production."""
    if "@" in spec:
        name, version = spec.split("@", 1)
        if not version.isdigit():
            raise ValueError(f"--registered {spec!r}: the version after @ must be a number")
        return name, int(version), None
    name, _, stage = spec.partition(":")
    return name, None, stage or "production"


def registered_replicas(
    specs: Sequence[str], registry: str, replicas: int, config: EngineConfig
) -> dict[str, list[AsyncEngineLike]]:
    """Colocated replicas of models trained in Lab 08 and loaded from its registry, each with its own
    tokenizer, served under the registered name."""
    from lab_core.llm.registry import ModelRegistry

    pools: dict[str, list[AsyncEngineLike]] = {}
    for spec in specs:
        name, version, stage = parse_registered(spec)
        engines = []
        for _ in range(replicas):
            model, tokenizer = ModelRegistry(registry).load(name, version=version, stage=stage)
            engine = LLMEngine(replace(config, model=model.cfg), model=model, tokenizer=tokenizer)
            engines.append(AsyncEngine(engine=engine, model_name=name))
        pools[name] = engines
    return pools


def start_replicas(
    models: Sequence[str], replicas: int, mode: str, config: EngineConfig
) -> dict[str, list[AsyncEngineLike]]:
    """``replicas`` engine replicas of each model, colocated (engine thread) or disaggregated
    (prefill and decode worker processes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    pools: dict[str, list[AsyncEngineLike]] = {}
    for name in models:
        if name not in PRESETS:
            raise ValueError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
        cfg = replace(config, model=name)
        if mode == "colocated":
            pools[name] = [AsyncEngine(cfg, model_name=name) for _ in range(replicas)]
        else:
            from lab_core.serving.disagg import DisaggregatedEngine  # starts processes: only when asked

            pools[name] = [DisaggregatedEngine(cfg, model_name=name) for _ in range(replicas)]
    return pools


def create_app(
    models: Sequence[str] = ("tiny",),
    *,
    replicas: int = 1,
    mode: str = "colocated",
    keys_file: str | None = None,
    config: EngineConfig | None = None,
    registered: Sequence[str] = (),
    registry: str | None = None,
    metrics_key: str | None = None,
) -> tuple[Starlette, Router]:
    """The gateway over fresh replicas, and its router (``close_replicas`` stops them). ``registered``
    models come from the Lab 08 registry at ``registry``; ``metrics_key`` opens ``/metrics`` to its holder."""
    keys = load_keys(keys_file) if keys_file else DEFAULT_KEYS
    config = config or EngineConfig()
    if registered and registry is None:
        raise ValueError("--registered needs --registry (the folder of Lab 08's model registry)")
    if registered and mode != "colocated":
        raise ValueError("registered models are served colocated; the disaggregated workers build preset models")
    pools = start_replicas(models, replicas, mode, config) if models else {}
    pools.update(registered_replicas(registered, registry, replicas, config) if registered else {})
    router = Router(pools)
    return create_gateway(router, keys, metrics_key=metrics_key), router


def close_replicas(router: Router) -> None:
    """Stop every replica's thread or worker processes."""
    for model in router.models:
        for replica in router.replicas(model):
            replica.engine.close()


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo serving``."""
    parser.add_argument("--keys", help="YAML or JSON file of API keys (default: sk-paid-demo and sk-free-demo)")
    parser.add_argument(
        "--mode",
        default="colocated",
        choices=MODES,
        help="colocated: one engine per replica; disaggregated: prefill and decode worker processes",
    )
    parser.add_argument(
        "--model", action="append", choices=sorted(PRESETS), help="model preset to serve (repeatable; default tiny)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas per model (default 1)")
    parser.add_argument("--num-blocks", type=int, default=1024, help="KV-cache blocks per replica (default 1024)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV block (default 16)")
    parser.add_argument("--token-budget", type=int, default=256, help="tokens per engine step (default 256)")
    parser.add_argument("--registry", help="folder of Lab 08's model registry (for --registered)")
    parser.add_argument(
        "--registered",
        action="append",
        default=[],
        metavar="NAME[:STAGE|@VERSION]",
        help="serve a trained model from the registry (repeatable; default stage production)",
    )
    parser.add_argument(
        "--metrics-key",
        default=os.environ.get("SYSLAB_METRICS_KEY"),
        help="bearer token that opens /metrics (default: SYSLAB_METRICS_KEY; unset: /metrics is off)",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Start replicas and serve the gateway with uvicorn until interrupted."""

    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    config = EngineConfig(num_blocks=args.num_blocks, block_size=args.block_size, token_budget=args.token_budget)
    models = args.model or ([] if args.registered else ["tiny"])
    app, router = create_app(
        models,
        replicas=args.replicas,
        mode=args.mode,
        keys_file=args.keys,
        config=config,
        registered=args.registered,
        registry=args.registry,
        metrics_key=args.metrics_key,
    )
    base = f"http://{args.host}:{args.port}"
    print(f"LLM serving demo ({args.mode}) on {base}/  models: {', '.join(router.models)}")
    print(
        f"""  try: curl -sN {base}/v1/completions -H 'Authorization: Bearer sk-paid-demo' """
        f"""-d '{{"model": "{router.models[0]}", "prompt": "Hello", "max_tokens": 16, "stream": true}}'"""
    )
    try:
        httpserve.run(app, args.host, args.port)
    finally:
        close_replicas(router)
    return 0


@contextmanager
def _tiny_gateway() -> Iterator[Starlette]:
    app, router = create_app(("tiny",), config=EngineConfig(num_blocks=64))
    try:
        yield app
    finally:
        close_replicas(router)


def api_surface() -> ApiSurface:
    """The gateway over one tiny-model replica, and what its clients send (for the shared
    hostile-input tests)."""
    paid = {"Authorization": "Bearer sk-paid-demo"}
    return ApiSurface(
        open=_tiny_gateway,
        writes=(
            Example(
                "POST",
                "/v1/completions",
                {
                    "model": "tiny",
                    "prompt": "Say hi",
                    "max_tokens": 3,
                    "temperature": 0.5,
                    "stream": False,
                    "stop": ["."],
                },
                paid,
            ),
            Example(
                "POST",
                "/v1/chat/completions",
                {"model": "tiny", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]},
                paid,
            ),
        ),
        reads=(Example("GET", "/v1/models", headers=paid),),
    )
