"""The demo API behind the rate limiter: a small item catalogue in SQLite, served by uvicorn.

``syslab demo ratelimit`` runs it. Identify as a user with the ``X-User`` header.
"""

from __future__ import annotations

import argparse
import math
import threading
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab_core import httpserve
from lab_core.jsonapi import (
    EXCEPTION_HANDLERS,
    ApiSurface,
    BadInput,
    Example,
    error_response,
    guarded,
    read_json,
)
from lab_core.ratelimit.middleware import RateLimitMiddleware
from lab_core.ratelimit.rules import Rule, RulesEngine, load_rules
from lab_core.store import redis_client, sqlite

DEFAULT_RULES = "default_rules.yaml"


def default_rules() -> list[Rule]:
    """The documented default rule set shipped with the package."""
    return load_rules((resources.files("lab_core.ratelimit") / DEFAULT_RULES).read_text())


class Catalogue:
    """Items stored in SQLite; one lock serialises writers because the connection is shared."""

    def __init__(self, db: str | Path = ":memory:") -> None:
        self.conn = sqlite(db)
        self.lock = threading.Lock()
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)"
        )

    def add(self, name: str, price: float) -> dict:
        """Store an item and return it with its id."""
        with self.lock:
            cur = self.conn.execute("INSERT INTO items (name, price) VALUES (?, ?)", (name, price))
            return {"id": cur.lastrowid, "name": name, "price": price}

    def get(self, item_id: int) -> dict | None:
        """One item, or None."""
        with self.lock:
            return self.conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()

    def all(self) -> list[dict]:
        """Every item in id order."""
        with self.lock:
            return self.conn.execute("SELECT * FROM items ORDER BY id").fetchall()


# A catalogue price, in the shop's currency: past this it is a typo or an attack, not a product.
MAX_PRICE = 1e9


def validate_item(body: Any) -> tuple[str, float]:
    """Check a new item's JSON body; raise ValueError naming the bad field."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object with fields 'name' and 'price'")
    unknown = set(body) - {"name", "price"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    name, price = body.get("name"), body.get("price")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError("field 'name' must be a non-empty string of at most 200 characters")
    try:  # float() of a huge JSON integer overflows: that is a bad price, not a server error
        value = float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) else math.nan
    except OverflowError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_PRICE:
        raise ValueError(f"field 'price' must be a number from 0 to {MAX_PRICE:g}")
    return name.strip(), value


def build_api(catalogue: Catalogue, rules: list[Rule]) -> Starlette:
    """The bare demo API (no limiter): the baseline the middleware is measured against."""

    async def index(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "service": "sysdesign-lab rate limiter demo",
                "identify": "send X-User: <name> to be limited per user; otherwise per IP only",
                "endpoints": [
                    "GET /api/items",
                    "POST /api/items",
                    "GET /api/items/{id}",
                    "GET /api/report",
                    "GET /healthz",
                ],
                "rules": [
                    {
                        "name": r.name,
                        "scope": r.scope,
                        "algorithm": r.algorithm,
                        "limit": r.limit,
                        "period": r.period,
                        "burst": r.burst,
                        "cost": r.cost,
                        "fail": r.fail,
                    }
                    for r in rules
                ],
            }
        )

    async def list_items(request: Request) -> JSONResponse:
        return JSONResponse({"items": catalogue.all()})

    async def create_item(request: Request) -> JSONResponse:
        try:
            name, price = validate_item(await read_json(request))
        except ValueError as exc:
            if isinstance(exc, BadInput):
                raise
            return error_response(422, "invalid_item", str(exc))
        return JSONResponse(catalogue.add(name, price), status_code=201)

    async def get_item(request: Request) -> JSONResponse:
        raw = request.path_params["item_id"]
        # isdigit() alone accepts '²', which int() refuses; ids past SQLite's 64-bit range cannot exist.
        if not (raw.isascii() and raw.isdigit()):
            return error_response(400, "bad_request", f"item id must be a positive integer, got {raw!r}")
        item = catalogue.get(int(raw)) if len(raw) <= 19 and int(raw) < 2**63 else None  # int() caps digits
        return JSONResponse(item) if item else error_response(404, "not_found", f"no item with id {raw}")

    async def report(request: Request) -> JSONResponse:
        items = catalogue.all()
        total = sum(i["price"] for i in items)
        return JSONResponse({"items": len(items), "total_price": total})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/items", list_items, methods=["GET"]),
            Route("/api/items", guarded(create_item), methods=["POST"]),
            Route("/api/items/{item_id}", get_item, methods=["GET"]),
            Route("/api/report", report, methods=["GET"]),
            Route("/healthz", healthz),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )


def create_app(
    rules: str | Path | list[Rule] | None = None,
    *,
    redis_url: str | None = None,
    db: str | Path = ":memory:",
    trust_forwarded: bool = False,
) -> RateLimitMiddleware:
    """The demo API wrapped in the rate-limit middleware; counters in Redis (fakeredis unless a URL is given)."""
    rule_list = default_rules() if rules is None else (rules if isinstance(rules, list) else load_rules(rules))
    store = redis_client(redis_url, fresh=redis_url is None)
    engine = RulesEngine(rule_list, store=store)
    return RateLimitMiddleware(build_api(Catalogue(db), rule_list), engine, trust_forwarded=trust_forwarded)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syslab demo ratelimit``."""
    parser.add_argument("--rules", help="YAML rules file (default: the documented default set)")
    parser.add_argument("--redis-url", help="real Redis for the counters (default: REDIS_URL, else fakeredis)")
    parser.add_argument("--db", default=":memory:", help="SQLite file for the demo items (default: in memory)")
    parser.add_argument(
        "--trust-forwarded",
        action="store_true",
        help="take the client IP from X-Forwarded-For (only behind a trusted proxy)",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Serve the limited demo API with uvicorn until interrupted."""
    import os

    # A Path, so any file name is read as a file (a bare str not ending in .yaml would be parsed as YAML text).
    rules = Path(args.rules) if args.rules else None
    app = create_app(
        rules, redis_url=args.redis_url or os.environ.get("REDIS_URL"), db=args.db, trust_forwarded=args.trust_forwarded
    )
    print(f"rate-limited demo API on http://{args.host}:{args.port}/  (try: curl -H 'X-User: alice' .../api/items)")
    httpserve.run(app, args.host, args.port)
    return 0


def api_surface() -> ApiSurface:
    """The demo API in memory with limits no test reaches, and what its clients send (for the
    shared hostile-input tests)."""
    roomy = [Rule(name="roomy", scope="ip", limit=1_000_000, period=1.0, algorithm="fixed_window")]
    return ApiSurface(
        open=lambda: nullcontext(create_app(roomy)),
        writes=(Example("POST", "/api/items", {"name": "pen", "price": 1.5}),),
        reads=(Example("GET", "/api/items"), Example("GET", "/api/report")),
        ids=(("GET", "/api/items/{id}"),),
    )
