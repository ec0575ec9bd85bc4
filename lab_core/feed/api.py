"""The feed's HTTP API (Starlette): users, posts, follows and paged feeds, with JSON 4xx errors for bad input."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab_core import jsonapi
from lab_core.feed.config import FeedConfig
from lab_core.feed.fanout import STREAM, FanoutWorker, publish
from lab_core.feed.policy import CursorError
from lab_core.feed.service import FeedService, RankHook
from lab_core.feed.store import (
    DuplicateFollow,
    DuplicateUser,
    EmptyPost,
    FeedError,
    FeedStore,
    InvalidName,
    NotFollowing,
    PostTooLong,
    SelfFollow,
    UnknownUser,
)
from lab_core.feed.timeline import ACTIVE_KEY, Timelines
from lab_core.jsonapi import BadInput, error_response, read_json
from lab_core.sim.clock import Clock, RealClock
from lab_core.store import redis_client

# status and error code per refused operation; the detail is the exception's own message
ERRORS: dict[type[FeedError], tuple[int, str]] = {
    UnknownUser: (404, "unknown_user"),
    NotFollowing: (404, "not_following"),
    DuplicateUser: (409, "duplicate_user"),
    DuplicateFollow: (409, "duplicate_follow"),
    InvalidName: (422, "invalid_name"),
    SelfFollow: (422, "self_follow"),
    PostTooLong: (422, "post_too_long"),
    EmptyPost: (422, "empty_post"),
}


@dataclass
class FeedSystem:
    """Every part of a running feed, wired to one store, one Redis and one clock."""

    config: FeedConfig
    clock: Clock
    redis: redis.Redis
    store: FeedStore
    timelines: Timelines
    worker: FanoutWorker
    service: FeedService

    def post(self, author: int, text: object) -> dict:
        """Store and queue a post."""
        post = publish(self.store, self.redis, author, text)
        self.timelines.touch(author, self.clock.now())
        return post


def build_system(
    *,
    redis_url: str | None = None,
    db: str | Path = ":memory:",
    config: FeedConfig | None = None,
    clock: Clock | None = None,
    ranker: RankHook | None = None,
    client: redis.Redis | None = None,
) -> FeedSystem:
    """Wire store, timelines, worker and service; fakeredis on its own server unless a URL or client is given."""
    config = config or FeedConfig()
    clock = clock or RealClock()
    r = client or redis_client(redis_url, fresh=redis_url is None)
    store = FeedStore(db, clock=clock, max_post_chars=config.max_post_chars)
    if not store.users():
        # A new database reuses post ids 1, 2, ...: cached entries of an earlier run would point at
        # the wrong posts. They can only come from a store that no longer exists, so nothing is lost.
        stale = list(r.scan_iter(match="feed:tl:*")) + [ACTIVE_KEY, STREAM]
        r.delete(*stale)
    timelines = Timelines(r, config)
    worker = FanoutWorker(store, timelines, r, config=config, clock=clock)
    service = FeedService(store, timelines, config=config, clock=clock, ranker=ranker)
    return FeedSystem(config, clock, r, store, timelines, worker, service)


def _user_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise BadInput(422, "invalid_field", f"field {field!r} must be a positive integer user id, got {value!r}")
    return value


async def _body(request: Request, fields: set[str]) -> dict:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadInput(422, "invalid_field", f"body must be a JSON object with fields {', '.join(sorted(fields))}")
    unknown = set(body) - fields
    if unknown:
        raise BadInput(422, "invalid_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = fields - set(body)
    if missing:
        raise BadInput(422, "invalid_field", f"missing field(s): {', '.join(sorted(missing))}")
    return body


def _path_user(raw: str) -> int:
    # isdigit() alone accepts '²', which int() refuses; ids past SQLite's 64-bit range cannot exist.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 1 <= int(raw) < 2**63:
        raise BadInput(400, "bad_request", f"user id must be a positive integer, got {raw[:40]!r}")
    return int(raw)


def _limit(raw: str | None, config: FeedConfig) -> int:
    if raw is None:
        return config.default_page_size
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= config.max_page_size:
        raise BadInput(400, "bad_limit", f"limit must be an integer in 1..{config.max_page_size}, got {raw[:40]!r}")
    return int(raw)


def build_api(system: FeedSystem) -> Starlette:
    """The Starlette app over ``system``; ``app.state.feed`` is the system (tests drain its worker)."""

    def guarded(handler):
        # Specific refusals first; any other FeedError is invalid input.
        return jsonapi.guarded(handler, {CursorError: (400, "bad_cursor"), **ERRORS, FeedError: (422, "invalid_input")})

    async def index(request: Request) -> JSONResponse:
        c = system.config
        return JSONResponse(
            {
                "service": "sysdesign-lab news feed demo",
                "endpoints": [
                    "GET /users",
                    "POST /users",
                    "POST /posts",
                    "POST /follow",
                    "DELETE /follow",
                    "GET /feed/{user}?limit=&cursor=",
                    "GET /healthz",
                ],
                "config": {
                    "celebrity_threshold": c.celebrity_threshold,
                    "timeline_length": c.timeline_length,
                    "max_post_chars": c.max_post_chars,
                    "max_page_size": c.max_page_size,
                },
            }
        )

    async def list_users(request: Request) -> JSONResponse:
        users = system.store.users()
        counts = system.store.follower_counts(u["id"] for u in users)
        return JSONResponse({"users": [{**u, "followers": counts[u["id"]]} for u in users]})

    async def create_user(request: Request) -> JSONResponse:
        body = await _body(request, {"name"})
        return JSONResponse(system.store.add_user(body["name"]), status_code=201)

    async def create_post(request: Request) -> JSONResponse:
        body = await _body(request, {"author", "text"})
        author = _user_id(body["author"], "author")
        try:
            post = system.post(author, body["text"])
        except redis.RedisError:
            return error_response(
                503,
                "fanout_unavailable",
                "the post was stored but the fan-out queue is unreachable; it reaches followers' "
                "timelines when they are rebuilt",
            )
        return JSONResponse(post, status_code=201)

    async def follow(request: Request) -> JSONResponse:
        body = await _body(request, {"follower", "followee"})
        follower, followee = _user_id(body["follower"], "follower"), _user_id(body["followee"], "followee")
        system.service.follow(follower, followee)
        return JSONResponse({"follower": follower, "followee": followee}, status_code=201)

    async def unfollow(request: Request) -> JSONResponse:
        body = await _body(request, {"follower", "followee"})
        follower, followee = _user_id(body["follower"], "follower"), _user_id(body["followee"], "followee")
        system.service.unfollow(follower, followee)
        return JSONResponse({"follower": follower, "followee": followee, "following": False})

    async def feed(request: Request) -> JSONResponse:
        user = _path_user(request.path_params["user"])
        limit = _limit(request.query_params.get("limit"), system.config)
        page = system.service.read(user, limit, request.query_params.get("cursor") or None)
        posts = system.store.posts_by_ids(i.post_id for i in page.items)
        names = system.store.names(i.author_id for i in page.items)
        items = [
            {
                "post_id": i.post_id,
                "author_id": i.author_id,
                "author": names.get(i.author_id),
                "text": posts[i.post_id]["text"],
                "created_at": i.created_at,
                "source": i.source,
            }
            for i in page.items
        ]
        return JSONResponse({"user": user, "items": items, "next_cursor": page.next_cursor})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "pending_fanout": system.worker.pending()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        system.worker.start()
        try:
            yield
        finally:
            system.worker.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/users", list_users, methods=["GET"]),
            Route("/users", guarded(create_user), methods=["POST"]),
            Route("/posts", guarded(create_post), methods=["POST"]),
            Route("/follow", guarded(follow), methods=["POST"]),
            Route("/follow", guarded(unfollow), methods=["DELETE"]),
            Route("/feed/{user}", guarded(feed), methods=["GET"]),
            Route("/healthz", healthz),
        ],
        exception_handlers=jsonapi.EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.feed = system
    return app
