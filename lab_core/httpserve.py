"""How every lab's demo API is served: uvicorn, with a deadline for a request's headers.

uvicorn times out idle keep-alive connections but waits forever for headers that never finish,
so a slowloris client (a few bytes every few seconds on many sockets) can hold every socket the
server has. The protocol below closes a connection whose request headers are not complete
``header_timeout`` seconds after the connection opened or the previous response ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol that drops connections sending their headers too slowly."""

    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._drop_if_waiting)

    def _drop_if_waiting(self) -> None:
        # their_state leaves IDLE once the whole request line and headers have arrived.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_deadline.cancel()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline.cancel()
        super().connection_lost(exc)


def run(app: Any, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT, log_level: str = "warning") -> None:
    """Serve ``app`` until interrupted, dropping connections whose headers take over ``header_timeout`` s."""
    protocol = type("Protocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout})
    uvicorn.run(app, host=host, port=port, log_level=log_level, http=protocol, timeout_keep_alive=5)
