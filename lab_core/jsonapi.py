"""The JSON error contract every lab's HTTP API keeps: refused input is a 4xx with
``{"error": code, "detail": message naming the problem}``, never a traceback.

:func:`read_json` is the one door for request bodies: it stops reading past the size limit, and
refuses what JSON parsers accept but no service can store or compute with (text that is not
valid Unicode, nesting deeper than any request needs, NaN and infinities, integers wider than
64 bits), naming the field, before a handler sees the body.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 64 * 1024
# No request of any lab nests deeper than a few levels (chat messages in a list in an object).
MAX_DEPTH = 16
# A client that has not sent its whole body by then is too slow to hold a handler (and a socket) for.
BODY_TIMEOUT = 10.0
# SQLite's INTEGER, numpy's int64 and every id and counter in the labs are 64-bit.
INT_BOUND = 2**63 - 1

Handler = Callable[[Request], Awaitable[JSONResponse]]


class BadInput(ValueError):
    """A request whose shape is wrong: maps to a 4xx with ``status`` and ``error``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error = status, error


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's raw body; 413 as soon as more than ``limit`` bytes arrive (or are announced),
    408 when it is not all there within ``BODY_TIMEOUT`` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadInput(413, "body_too_large", f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadInput(413, "body_too_large", f"request body is over {limit} bytes; the limit is {limit}")
                chunks.append(chunk)
    except TimeoutError:
        raise BadInput(408, "body_timeout", f"the request body did not arrive within {BODY_TIMEOUT:g} s") from None
    return b"".join(chunks)


def _field(path: str) -> str:
    return f"field {path!r}" if path else "the body"


def check_json(value: Any) -> None:
    """Raise :class:`BadInput` naming the first field whose text is not valid Unicode, whose integer
    is wider than 64 bits, or that nests deeper than :data:`MAX_DEPTH`."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInput(400, "too_deep", f"{_field(path)} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if not _valid(item):
                raise BadInput(
                    400, "bad_text", f"{_field(path)} is not valid Unicode text (a lone surrogate such as \\ud800)"
                )
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and abs(item) > INT_BOUND:
            raise BadInput(400, "bad_number", f"{_field(path)} is beyond the 64-bit range (|n| <= {INT_BOUND})")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadInput(400, "bad_number", f"{_field(path)} is not a finite number")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not _valid(key):
                    raise BadInput(400, "bad_text", f"a field name in {_field(path)} is not valid Unicode text")
                stack.append((f"{path}.{key}" if path else key, sub, depth + 1))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", sub, depth + 1) for i, sub in enumerate(item))


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json(raw: bytes) -> Any:
    """Parse and check a body (see :func:`check_json`); :class:`BadInput` when it does not parse."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(400, "bad_request", "body is not UTF-8 text") from None
    try:
        # NaN, Infinity and floats too large become non-finite floats, refused below with the field's
        # name; a 5,000-digit integer is refused by Python itself.
        value = json.loads(text)
    except RecursionError:
        raise BadInput(400, "too_deep", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise BadInput(400, "bad_request", "body is not valid JSON") from None
    check_json(value)
    return value


async def read_json(request: Request) -> Any:
    """The request's checked JSON body: 413 past ``MAX_BODY_BYTES``, 400 naming what does not parse or
    cannot be stored (see :func:`check_json`)."""
    return parse_json(await read_body(request))


def guarded(handler: Handler, errors: Mapping[type[Exception], tuple[int, str]] = {}) -> Handler:
    """``handler`` with ``BadInput`` and the lab's own ``errors`` (first matching type wins) as JSON errors."""

    async def endpoint(request: Request) -> JSONResponse:
        try:
            return await handler(request)
        except BadInput as exc:
            return error_response(exc.status, exc.error, str(exc))
        except tuple(errors) as exc:  # type: ignore[misc]
            status, error = next(v for t, v in errors.items() if isinstance(exc, t))
            return error_response(status, error, str(exc))

    return endpoint


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 as JSON (keeps 405's ``Allow`` header)."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, "http_error", str(exc.detail), exc.headers)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """A 500 that tells the client to retry, without the traceback."""
    return error_response(500, "internal_error", "the server failed; retry the request")


EXCEPTION_HANDLERS = {HTTPException: http_error, 500: server_error}


@dataclass(frozen=True)
class Example:
    """One well-formed request a client of a lab's API sends (a JSON ``body`` for writes)."""

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiSurface:
    """What the shared hostile-input tests need of a lab's demo API: ``open()`` builds a fresh app in
    memory (a context manager that stops it afterwards); ``writes`` are valid requests sent in
    order first (later ones may use what earlier ones stored); ``reads`` answer the same before and
    after an attack (nothing stored is lost or added); ``ids`` are ``(method, path)`` templates with
    one ``{id}`` taken from the URL; ``queries`` are ``(path, parameter, hostile values of its own)``
    for query parameters (the tests add the generic ones)."""

    open: Callable[[], AbstractContextManager[Any]]
    writes: tuple[Example, ...]
    reads: tuple[Example, ...]
    ids: tuple[tuple[str, str], ...] = ()
    queries: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
