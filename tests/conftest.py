"""Shared fixtures for the whole test suite.

One rule for optional outside tools (redis-server, chromium, ffmpeg, tesseract, the shared data folder):
when missing, a test is *skipped* with the reason on a developer machine and *fails* under
``CI=true``, where everything is expected to be installed. ``need()`` implements that rule so
every test file applies it the same way.
"""

from __future__ import annotations

import asyncio
import math
import operator
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import redis

from lab_core.bench import parse_target
from lab_core.labs import data_dir, get_lab
from lab_core.procs import free_port, stop_process, wait_until
from lab_core.store import redis_client
from lab_core.store.redis_server import RedisServer, start_redis_server

FIGURE_KEYS = ["name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met"]
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def assert_bench_record(record: dict, lab: str, *, redis_server: bool = True) -> None:
    """A ``benchmarks/results/<lab>.json`` record has the documented schema, and ratios and ``met`` follow from the values.

    ``redis_server``: the lab's benchmark starts a real server, so the record must name its version.
    """
    assert list(record) == ["lab", "machine", "figures"] and record["lab"] == lab
    machine = record["machine"]
    assert isinstance(machine["cpus"], int) and machine["cpu_model"] and machine["python"] and machine["platform"]
    if redis_server:
        assert machine["redis_server"]
    assert record["figures"]
    for f in record["figures"]:
        assert list(f) == FIGURE_KEYS, f
        assert isinstance(f["name"], str) and isinstance(f["unit"], str)
        assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"]), f
        if f["baseline_value"] is not None:
            assert isinstance(f["baseline"], str) and f["baseline"]
        if f["baseline_value"]:
            assert f["ratio"] == pytest.approx(f["value"] / f["baseline_value"], rel=1e-9), f
        else:
            assert f["ratio"] is None, f
        if f["target"] is None:
            assert f["met"] is None
        else:
            subject, op, threshold = parse_target(f["target"])
            assert subject in ("ratio", "value"), "stored targets name what they test"
            tested = f[subject]
            assert f["met"] is (None if tested is None else _OPS[op](tested, threshold)), f


def assert_bench_table(stdout: str, record: dict, lab: str) -> None:
    """``syslab bench`` printed a table with every column and figure, and said where the JSON went."""
    header = next(line for line in stdout.splitlines() if line.startswith("figure"))
    for column in ("value", "unit", "baseline", "ratio", "target", "met"):
        assert column in header
    for f in record["figures"]:
        assert f["name"] in stdout
    assert "targets met" in stdout and f"{lab}.json" in stdout


# Under pytest-xdist each worker (and what it starts: kernels, torchrun ranks) gets one OpenMP
# thread: a thread per core in every worker makes their spinning threads starve one another.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, so the workers share them out instead of one finishing with a long tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


@pytest.fixture(scope="session", autouse=True)
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One embedding cache for the session (``SYSLAB_CACHE``), inherited by notebook kernels and
    subprocesses: a run starts cold on every machine and never writes to the user's own cache."""
    folder = tmp_path_factory.mktemp("embedding-cache")
    previous = os.environ.get("SYSLAB_CACHE")
    os.environ["SYSLAB_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("SYSLAB_CACHE", None)
        else:
            os.environ["SYSLAB_CACHE"] = previous


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server started for this test session on a free loopback port."""
    binary = need("redis-server", "tests against a real Redis need Debian's redis-server on PATH")
    server = start_redis_server(tmp_path_factory.mktemp("redis-server"), binary=binary)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start dedicated redis-servers a test may stop and restart (``.stop()``, ``.start()``); all killed at the end."""
    binary = need("redis-server", "fault-injection tests stop and restart their own redis-server")
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = start_redis_server(tmp_path / f"redis{len(started)}", binary=binary)
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
    folder = data_dir()
    if not folder.is_dir():
        message = (
            f"shared data folder {str(folder)!r} is absent (set SYSLAB_DATA or see DESIGN.md 'Data for benchmarks')"
        )
        if under_ci():
            pytest.fail(f"{message}; it is required when CI=true", pytrace=False)
        pytest.skip(message)
    return folder


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; skipped when absent, failed under ``CI=true``."""
    return need(CHROMIUM, "the browser test drives Debian's chromium through Playwright")


def _listening(port: int) -> bool:
    """The server accepts connections (asking for a page would start a costly Panel session per poll)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


@contextmanager
def serve_lab(lab: str, log: Path, *, also: Sequence[str] = (), args: Sequence[str] = ()) -> Iterator[str]:
    """Base URL of ``syslab serve --lab <lab>`` (and each lab in ``also``, with the extra ``args``) on a
    free loopback port; the server is stopped afterwards."""
    beside = Path(sys.executable).with_name("syslab")
    syslab = str(beside) if beside.exists() else shutil.which("syslab") or pytest.fail("syslab command not found")
    port = free_port()
    # Output to a file, not a pipe nobody reads, which could fill and stall the server.
    with log.open("w") as out:
        labs = [arg for name in (lab, *also) for arg in ("--lab", name)]
        proc = subprocess.Popen(
            [syslab, "serve", "--port", str(port), *labs, *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        wait_until(lambda: _listening(port), proc, timeout=60, what=f"syslab serve --lab {lab}", log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, timeout=10)


def run_asgi(app: Any, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run ``scenario(client)`` against ``app`` in process; any exception inside the app fails the test."""

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await scenario(client)

    return asyncio.run(main())


def assert_json_error(r: httpx.Response, status: int, error: str, mentions: str = "") -> dict:
    """A JSON error answer with this status and code, whose detail mentions ``mentions``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == error, body
    assert isinstance(body["detail"], str) and mentions in body["detail"], body
    assert "Traceback" not in r.text
    return body


@contextmanager
def jupyter_lab(
    folder: Path, *, config_dir: Path, token: str = "t", env: dict[str, str] | None = None
) -> Iterator[str]:
    """Base URL of a real ``jupyter lab`` on ``folder`` (settings from ``config_dir``), stopped afterwards."""
    port = free_port()
    log = config_dir / "lab.log"
    config_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--notebook-dir={folder}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            env={**(env or os.environ), "JUPYTER_CONFIG_DIR": str(config_dir)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{base}/api/status?token={token}").status_code == 200,
            proc,
            timeout=60,
            what="jupyter lab",
            log=log,
        )
        yield base
    finally:
        stop_process(proc, timeout=10)


def student_kernel_env() -> dict[str, str]:
    """The environment a student's kernel sees: this one without the grader's SYSLAB_FAST."""
    return {k: v for k, v in os.environ.items() if k != "SYSLAB_FAST"}


def setup_and_cell_notebook(lab: str, source: str, path: Path) -> Path:
    """A notebook at ``path`` with ``lab``'s setup cell, as students get it, then ``source``."""
    release = nbformat.read(get_lab(lab).release, as_version=4)
    setup = next(c for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(setup.source), nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def run_all_cells(page: Any, base: str, notebook: str, token: str) -> None:
    """Open ``notebook`` in JupyterLab, wait for its kernel, run every cell, wait for a plot to draw."""
    page.goto(f"{base}/lab/tree/{notebook}?reset&token={token}")  # reset: no tabs restored from before
    page.locator(".jp-Notebook").wait_for()
    page.get_by_text("(ipykernel) | Idle").wait_for()  # the kernel is up before cells are sent
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.click("text=Run")  # the menu bar's Run menu
    page.click("text=Run All Cells")
    page.locator(".jp-OutputArea canvas").first.wait_for()
