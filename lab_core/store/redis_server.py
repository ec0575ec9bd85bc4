"""A real, throwaway ``redis-server`` on loopback for tests, benchmarks and fault injection."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from lab_core.procs import free_port, stop_process, wait_until


def redis_server_binary() -> str | None:
    """Path of ``redis-server`` on PATH (or Debian's ``/usr/bin/redis-server``), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


@dataclass
class RedisServer:
    """A persistence-free redis-server child process; ``stop()`` and ``start()`` again keep its port."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            wait_until(client.ping, self.proc, timeout=timeout, what=f"redis-server on port {self.port}", log=log)
        except RuntimeError:
            self.stop()
            raise
        finally:
            client.close()
        return self

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        stop_process(self.proc)
        self.proc = None

    def version(self) -> str:
        """The server's ``redis_version``."""
        with redis.Redis.from_url(self.url) as client:
            return str(client.info("server").get("redis_version"))


def start_redis_server(workdir: Path, *, binary: str | None = None, attempts: int = 5) -> RedisServer:
    """Start a RedisServer in ``workdir``, retrying on another port if the free one was taken meanwhile."""
    exe = binary or redis_server_binary()
    if exe is None:
        raise RuntimeError("redis-server not found on PATH; install it (Debian: apt-get install redis-server)")
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return RedisServer(exe, workdir / f"try{attempt}").start()
        except RuntimeError as exc:
            last = exc
    raise RuntimeError(f"could not start redis-server: {last}")


@contextlib.contextmanager
def local_redis_server(*, binary: str | None = None) -> Iterator[RedisServer]:
    """A RedisServer in a scratch folder for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="syslab-redis-") as scratch:
        server = start_redis_server(Path(scratch), binary=binary)
        try:
            yield server
        finally:
            server.stop()
