"""Shared fixtures for the whole test suite.

One rule for optional outside tools (redis-server, chromium, ffmpeg, the shared data folder):
when missing, a test is *skipped* with the reason on a developer machine and *fails* under
``CI=true``, where everything is expected to be installed. ``need()`` implements that rule so
every test file applies it the same way.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from lab_core.store import redis_client

ROOT = Path(__file__).resolve().parent.parent


def under_ci() -> bool:
    """True when running in CI, where every optional tool must be present."""
    return os.environ.get("CI") == "true"


def need(tool: str | os.PathLike[str], why: str) -> str:
    """The full path of ``tool`` (a name on PATH or a file path); skip, or fail under CI, when absent.

    ``why`` says what the tool is for; it ends up in the skip/fail reason, e.g.
    ``need("redis-server", "tests against a real Redis")`` skips with
    ``"redis-server not installed: tests against a real Redis"``.
    """
    text = os.fspath(tool)
    if os.sep in text or (os.altsep and os.altsep in text):
        found = text if Path(text).exists() else None
    else:
        found = shutil.which(text)
    if found is None:
        name = Path(text).name
        message = f"{name} not installed: {why}"
        if under_ci():
            pytest.fail(f"{message} (required when CI=true)", pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisProcess:
    """A redis-server child process on loopback (no persistence), which a test may stop and restart."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisProcess":
        """Start the server (on the same port as before, if restarting) and wait until PING answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode} (port {self.port} taken?)")
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server and wait for it to exit (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def _start_redis(binary: str, workdir: Path) -> RedisProcess:
    # A port found free can be taken before redis binds it: try a few.
    last: Exception | None = None
    for attempt in range(5):
        server = RedisProcess(binary, workdir / f"try{attempt}")
        try:
            return server.start()
        except RuntimeError as exc:
            last = exc
    raise RuntimeError(f"could not start redis-server: {last}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server started for this test session on a free loopback port."""
    binary = need("redis-server", "tests against a real Redis need Debian's redis-server on PATH")
    server = _start_redis(binary, tmp_path_factory.mktemp("redis-server"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisProcess]]:
    """Start dedicated redis-servers a test may stop and restart (``.stop()``, ``.start()``); all killed at the end."""
    binary = need("redis-server", "fault-injection tests stop and restart their own redis-server")
    started: list[RedisProcess] = []

    def start() -> RedisProcess:
        server = _start_redis(binary, tmp_path / f"redis{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_real(redis_server: str) -> Iterator[redis.Redis]:
    """A client of the session's real Redis, flushed before the test."""
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_fake() -> redis.Redis:
    """A fakeredis client on its own empty server."""
    return redis_client(fresh=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public data folder: ``SYSLAB_DATA``, else ``../shared/data`` next to the checkout."""
    folder = Path(os.environ.get("SYSLAB_DATA") or ROOT.parent / "shared" / "data")
    if not folder.is_dir():
        message = f"shared data folder {str(folder)!r} is absent (set SYSLAB_DATA or see DESIGN.md 'Data for benchmarks')"
        if under_ci():
            pytest.fail(f"{message}; it is required when CI=true", pytrace=False)
        pytest.skip(message)
    return folder
