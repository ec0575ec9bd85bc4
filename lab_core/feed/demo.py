"""``syslab demo feed``: the feed API with a seeded follow graph, served by uvicorn."""

from __future__ import annotations

import argparse
import base64
from contextlib import nullcontext
from pathlib import Path

from starlette.applications import Starlette

from lab_core import httpserve
from lab_core.feed.api import FeedSystem, build_api, build_system
from lab_core.feed.config import FeedConfig
from lab_core.feed.service import RankHook
from lab_core.jsonapi import ApiSurface, Example
from lab_core.sim.clock import Clock

# Small enough that the seeded graph has one celebrity (followed by everyone) and ordinary users.
DEMO_CONFIG = FeedConfig(celebrity_threshold=5)
SEED_USERS = ["ada", "grace", "alan", "edsger", "barbara", "donald", "stella"]
CELEBRITY = "stella"


def seed(system: FeedSystem) -> dict[str, int]:
    """Create the demo users, follows and posts, and fan the posts out; returns ``{name: id}``."""
    ids = {name: system.store.add_user(name)["id"] for name in SEED_USERS}
    ordinary = [n for n in SEED_USERS if n != CELEBRITY]
    for i, name in enumerate(ordinary):
        system.service.follow(ids[name], ids[CELEBRITY])
        for step in (1, 2):  # everyone follows the next two in the ring
            system.service.follow(ids[name], ids[ordinary[(i + step) % len(ordinary)]])
    for round_ in range(2):
        for name in SEED_USERS:
            system.post(ids[name], f"{name}'s post #{round_ + 1}")
    system.worker.drain()
    return ids


def create_app(
    redis_url: str | None = None,
    db: str | Path = ":memory:",
    seed_graph: bool = True,
    *,
    config: FeedConfig | None = None,
    clock: Clock | None = None,
    ranker: RankHook | None = None,
) -> Starlette:
    """The feed API; fakeredis unless ``redis_url``; seeded with a small graph on a new database if asked."""
    system = build_system(redis_url=redis_url, db=db, config=config or DEMO_CONFIG, clock=clock, ranker=ranker)
    if seed_graph and not system.store.users():
        seed(system)
    return build_api(system)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo feed``."""
    parser.add_argument(
        "--redis-url", help="real Redis for timelines and the fan-out stream (default: REDIS_URL, else fakeredis)"
    )
    parser.add_argument(
        "--db", default=":memory:", help="SQLite file for users, follows and posts (default: in memory)"
    )
    parser.add_argument("--no-seed", action="store_true", help="start with no users instead of the seeded graph")


def run_demo(args: argparse.Namespace) -> int:
    """Serve the feed API with uvicorn (fan-out worker on a thread) until interrupted."""
    import os

    app = create_app(args.redis_url or os.environ.get("REDIS_URL"), db=args.db, seed_graph=not args.no_seed)
    print(f"feed demo API on http://{args.host}:{args.port}/  (try: curl .../feed/1)")
    httpserve.run(app, args.host, args.port)
    return 0


def _forged_cursors() -> tuple[str, ...]:
    """Cursors a client could forge: a time that is not finite, a post id past 64 bits or negative."""
    raw = ("nan:1", "inf:1", "-inf:1", "1.5:99999999999999999999999", "1.5:-3", "1e999:1")
    return tuple(base64.urlsafe_b64encode(r.encode()).decode().rstrip("=") for r in raw)


def api_surface() -> ApiSurface:
    """The feed API in memory (no seeded graph) and what its clients send (for the shared hostile-input tests)."""
    return ApiSurface(
        open=lambda: nullcontext(create_app(seed_graph=False)),
        writes=(
            Example("POST", "/users", {"name": "ann"}),
            Example("POST", "/users", {"name": "bob"}),
            Example("POST", "/follow", {"follower": 1, "followee": 2}),
            Example("POST", "/posts", {"author": 2, "text": "hello"}),
        ),
        reads=(Example("GET", "/users"), Example("GET", "/feed/1")),
        ids=(("GET", "/feed/{id}"),),
        queries=(("/feed/1", "cursor", _forged_cursors()), ("/feed/1", "limit", ("0", "100000"))),
    )
