"""Child processes on loopback: a free port, waiting until a service answers, stopping it cleanly.

Used wherever the project starts a real server for a test, a benchmark or a notebook
(redis-server, ``syslab demo``, ``syslab serve``), so each does it the same way.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate ``proc`` (then kill it if it lingers) and reap it; a finished or None process is fine."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def wait_until(
    ready: Callable[[], bool],
    proc: subprocess.Popen,
    *,
    timeout: float,
    what: str,
    log: Path | None = None,
) -> None:
    """Poll ``ready()`` until it is true; raise RuntimeError if ``proc`` exits or ``timeout`` passes.

    Exceptions from ``ready`` count as "not yet". The error quotes the end of ``log`` if given.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}{_tail(log)}")
        try:
            if ready():
                return
        except Exception:  # a service that is still starting refuses connections in many ways
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:g} s{_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return ":\n" + log.read_text(errors="replace")[-2000:]
