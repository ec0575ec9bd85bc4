"""One place that decides which Redis the labs talk to."""

from __future__ import annotations

import os

import fakeredis
import redis

# One in-process fake server per Python process, so that every client made without a URL
# (dashboard, middleware, threads of a test) sees the same keys, as they would on a real server.
_DEFAULT_FAKE_SERVER = fakeredis.FakeServer()


def redis_url() -> str | None:
    """The ``REDIS_URL`` environment variable, or None when unset or empty."""
    return os.environ.get("REDIS_URL") or None


def redis_client(
    url: str | None = None,
    *,
    fresh: bool = False,
    decode_responses: bool = True,
    socket_timeout: float | None = 2.0,
) -> redis.Redis:
    """A Redis client: a real one for ``url`` (or ``REDIS_URL``), otherwise fakeredis.

    ``fresh=True`` gives a fakeredis client on a new, empty server (isolated tests).
    Real clients give up on a dead server after ``socket_timeout`` seconds (None: wait forever,
    for blocking reads such as XREADGROUP BLOCK) so a request path never hangs on it.
    """
    url = url or redis_url()
    if url:
        return redis.Redis.from_url(
            url,
            decode_responses=decode_responses,
            socket_connect_timeout=min(socket_timeout or 1.0, 1.0),
            socket_timeout=socket_timeout,
        )
    server = fakeredis.FakeServer() if fresh else _DEFAULT_FAKE_SERVER
    client = fakeredis.FakeRedis(server=server, decode_responses=decode_responses)
    # fakeredis creates a server's database on its first connection without a lock; threads that
    # connect first together could each get their own. One round trip now makes it exist once.
    client.ping()
    return client
