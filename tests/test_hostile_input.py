"""Every lab's demo API against the same hostile client, parametrized over the catalogue, so a new
lab is attacked by adding its ``api_surface()``: text that is not valid Unicode, deep nesting,
numbers no domain holds, wrong types, unknown fields, huge bodies, bytes that are not UTF-8,
bodies that are not objects, and path traversal in ids. Every answer is a 4xx with a JSON
``error`` and ``detail``, never a 5xx; afterwards the server still serves its valid requests and
what it stored reads exactly as before.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import run_asgi
from lab_core.jsonapi import MAX_BODY_BYTES, ApiSurface, Example
from lab_core.labs import LABS

# Labs whose demo is not an HTTP API (training's demo runs a training job): named, never silently skipped.
NO_API = {"training"}
BIG = (1e308, -1e308, 10**400)


def _surface(name: str) -> ApiSurface:
    return importlib.import_module(f"lab_core.{name}.demo").api_surface()


def test_every_lab_with_an_api_declares_its_surface():
    for name in LABS:
        has = hasattr(importlib.import_module(f"lab_core.{name}.demo"), "api_surface")
        assert has == (name not in NO_API), (
            f"lab_core/{name}/demo.py: api_surface() {'missing' if not has else 'unexpected'}"
        )


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _leaves(sub, (*path, i))
    else:
        yield path, value


def _with(body: Any, path: tuple, new: Any) -> Any:
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return out


def _name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def hostile_bodies(example: Example) -> Iterator[tuple[str, bytes]]:
    """(what, raw body) for each attack on one valid JSON request."""
    body = example.body

    def raw(value: Any) -> bytes:
        # ensure_ascii writes a lone surrogate as the escape \ud800, as a hostile client would send it.
        return json.dumps(value).encode()

    for path, leaf in _leaves(body):
        name = _name(path)
        if isinstance(leaf, str):
            yield f"{name}: lone surrogate", raw(_with(body, path, "ok\ud800"))
            yield f"{name}: a number instead of text", raw(_with(body, path, 12345))
            yield f"{name}: 1 MB of text", raw(_with(body, path, "a" * 1_000_000))
        elif isinstance(leaf, bool):
            yield f"{name}: text instead of a boolean", raw(_with(body, path, "yes"))
        elif isinstance(leaf, (int, float)):
            for big in BIG:
                yield f"{name}: {str(big)[:12]}", raw(_with(body, path, big))
            yield f"{name}: NaN", raw(_with(body, path, float("nan")))
            yield f"{name}: text instead of a number", raw(_with(body, path, "12"))
        yield f"{name}: deeply nested", raw(_with(body, path, 0)).replace(b"0", b"[" * 5000 + b"]" * 5000, 1)
    if isinstance(body, dict):
        yield "unknown field with a lone surrogate", raw({**body, "\udc00x": 1})
    yield "deeply nested body", b"[" * 100_000 + b"]" * 100_000
    yield "body over the limit", b'{"x": "' + b"a" * (MAX_BODY_BYTES * 16) + b'"}'
    yield "not UTF-8", b'{"x": "\xff\xfe"}'
    yield "not JSON", b"{not json"
    for other in ([], "text", 1, None):
        yield f"body is {json.dumps(other)}", raw(other)


def _is_json_error(r: httpx.Response) -> bool:
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("detail"), str)


def _reads(app: Any, surface: ApiSurface) -> list[Any]:
    async def scenario(c: httpx.AsyncClient) -> list[Any]:
        out = []
        for ex in surface.reads:
            r = await c.request(ex.method, ex.path, headers=dict(ex.headers))
            assert r.status_code == 200, (ex.path, r.status_code, r.text[:300])
            out.append(r.json())
        return out

    return run_asgi(app, scenario)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LABS if n not in NO_API])
def test_hostile_requests_get_a_json_4xx_and_change_nothing(name: str):
    surface = _surface(name)
    with surface.open() as app:

        async def setup(c: httpx.AsyncClient) -> None:
            for ex in surface.writes:
                r = await c.request(ex.method, ex.path, json=ex.body, headers=dict(ex.headers))
                assert r.status_code < 300, (ex.path, r.status_code, r.text[:300])

        run_asgi(app, setup)
        before = _reads(app, surface)
        wrong: list[str] = []

        async def attack(c: httpx.AsyncClient) -> None:
            for ex in surface.writes:
                headers = {**ex.headers, "content-type": "application/json"}
                for what, content in hostile_bodies(ex):
                    r = await c.request(ex.method, ex.path, content=content, headers=headers)
                    if not (400 <= r.status_code < 500 and _is_json_error(r)):
                        wrong.append(f"{ex.method} {ex.path} [{what}] -> {r.status_code} {r.text[:160]!r}")
            for path, param, own in surface.queries:
                for bad in (*own, "nan", "inf", "-1", "1e308", "9" * 400, "%00", "%ED%A0%80", "x" * 5000):
                    r = await c.get(f"{path}?{param}={bad}", headers=dict(surface.reads[0].headers))
                    if not (400 <= r.status_code < 500 and _is_json_error(r)):
                        wrong.append(f"GET {path}?{param}=[{bad[:40]}] -> {r.status_code} {r.text[:160]!r}")
            for method, template in surface.ids:
                for bad in (
                    "..%2F..%2Fetc%2Fpasswd",
                    "../../etc/passwd",
                    "%00",
                    "1" * 400,
                    "-1",
                    "%F0%9F%98%80",
                    "%ED%A0%80",
                ):
                    r = await c.request(method, template.replace("{id}", bad))
                    if not (400 <= r.status_code < 500 and _is_json_error(r)):
                        wrong.append(f"{method} {template} [{bad}] -> {r.status_code} {r.text[:160]!r}")

        run_asgi(app, attack)
        assert not wrong, f"{len(wrong)} hostile requests not refused with a JSON 4xx:\n" + "\n".join(wrong)
        assert _reads(app, surface) == before, "a refused request changed what the service stores"

        async def still_up(c: httpx.AsyncClient) -> None:
            for ex in surface.writes:  # answered, though a repeat may now conflict (a name is taken)
                r = await c.request(ex.method, ex.path, json=ex.body, headers=dict(ex.headers))
                assert r.status_code < 300 or (r.status_code == 409 and _is_json_error(r)), (ex.path, r.text[:300])

        run_asgi(app, still_up)
