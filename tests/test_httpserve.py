"""The demo APIs' server drops a slowloris connection (headers that never finish) and still serves
ordinary clients, keep-alive included."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab_core import httpserve
from lab_core.procs import free_port


async def _ok(request):
    return JSONResponse({"ok": True})


def _start(app, **kwargs) -> int:
    """Serve ``app`` with :func:`httpserve.run` on a daemon thread; its port once it accepts."""
    port = free_port()
    threading.Thread(target=httpserve.run, args=(app, "127.0.0.1", port), kwargs=kwargs, daemon=True).start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


@pytest.fixture
def server() -> int:
    return _start(Starlette(routes=[Route("/", _ok)]), header_timeout=1.0)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_partial_headers_are_dropped_after_the_deadline(server):
    sock = socket.create_connection(("127.0.0.1", server))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends the headers
    assert _closed_within(sock, 5.0)


def test_an_idle_connection_that_never_speaks_is_dropped(server):
    sock = socket.create_connection(("127.0.0.1", server))
    assert _closed_within(sock, 5.0)


def test_partial_headers_after_a_kept_alive_response_are_dropped_too(server):
    sock = socket.create_connection(("127.0.0.1", server))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    answer = b""
    while b'{"ok":true}' not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the whole response: {answer!r}"
        answer += chunk
    sock.sendall(b"GET / HTTP/1.1\r\nHo")
    assert _closed_within(sock, 5.0)


def test_ordinary_clients_are_served_and_kept_alive(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as client:
        for _ in range(3):
            assert client.get("/").json() == {"ok": True}
            time.sleep(0.4)  # each response re-arms the deadline: three requests outlive one deadline


def test_a_body_that_trickles_gets_408_and_frees_the_handler(monkeypatch):
    from starlette.requests import Request

    from lab_core import jsonapi

    monkeypatch.setattr(jsonapi, "BODY_TIMEOUT", 0.3)

    async def echo(request: Request):
        try:
            return JSONResponse(await jsonapi.read_json(request))
        except jsonapi.BadInput as exc:
            return jsonapi.error_response(exc.status, exc.error, str(exc))

    port = _start(Starlette(routes=[Route("/", echo, methods=["POST"])]))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"')
    sock.settimeout(5)
    answer = b""
    while b"body_timeout" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"closed without an answer: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
