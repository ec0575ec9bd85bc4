"""The JSON error contract every lab's HTTP API keeps: refused input is a 4xx with
``{"error": code, "detail": message naming the problem}``, never a traceback."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[Request], Awaitable[JSONResponse]]


class BadInput(ValueError):
    """A request whose shape is wrong: maps to a 4xx with ``status`` and ``error``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error = status, error


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def read_json(request: Request) -> Any:
    """The request's JSON body; 413 past ``MAX_BODY_BYTES``, 400 when it does not parse."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(413, "body_too_large", f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        return await request.json()
    except ValueError:
        raise BadInput(400, "bad_request", "body is not valid JSON") from None


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
