"""Store factories: fakeredis shared by default, isolated on demand, a real Redis from REDIS_URL; SQLite."""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid
from pathlib import Path

import fakeredis
import pytest
import redis

from conftest import need
from lab_core.store import redis_client, redis_url, sqlite


@pytest.fixture(autouse=True)
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without REDIS_URL, whatever the caller's environment says."""
    monkeypatch.delenv("REDIS_URL", raising=False)


# --- Redis -----------------------------------------------------------------------------------


def test_default_client_is_fakeredis():
    client = redis_client()
    assert isinstance(client, fakeredis.FakeRedis)
    assert redis_url() is None


def test_default_clients_share_one_server():
    key = f"shared:{uuid.uuid4()}"
    a, b = redis_client(), redis_client()
    assert a is not b
    a.set(key, "hello")
    assert b.get(key) == "hello"  # decode_responses=True by default: str, not bytes
    a.delete(key)
    assert b.get(key) is None


def test_default_server_is_shared_across_threads():
    key = f"threads:{uuid.uuid4()}"

    def worker() -> None:
        redis_client().incr(key)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(redis_client().get(key)) == 20


def test_fresh_client_is_isolated():
    key = f"iso:{uuid.uuid4()}"
    redis_client().set(key, "shared")
    fresh = redis_client(fresh=True)
    assert fresh.get(key) is None
    fresh.set(key, "private")
    assert redis_client().get(key) == "shared"
    assert redis_client(fresh=True).get(key) is None  # every fresh client gets its own server


def test_decode_responses_false_gives_bytes():
    client = redis_client(fresh=True, decode_responses=False)
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_empty_redis_url_means_fakeredis(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDIS_URL", "")
    assert redis_url() is None
    assert isinstance(redis_client(), fakeredis.FakeRedis)


@pytest.mark.redis_server
def test_redis_url_gives_real_client(monkeypatch: pytest.MonkeyPatch, redis_server: str, redis_real: redis.Redis):
    monkeypatch.setenv("REDIS_URL", redis_server)
    assert redis_url() == redis_server
    client = redis_client()
    assert not isinstance(client, fakeredis.FakeRedis)
    client.set("from-env", "1")
    assert redis_real.get("from-env") == "1"  # the very same server
    # fresh=True only isolates fakeredis: with a URL the caller asked for that server.
    assert redis_client(fresh=True).get("from-env") == "1"
    assert "redis_version" in client.info("server")


@pytest.mark.redis_server
def test_explicit_url_wins_over_env(monkeypatch: pytest.MonkeyPatch, redis_server: str, redis_real: redis.Redis):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    client = redis_client(redis_server)
    client.set("explicit", "yes")
    assert redis_real.get("explicit") == "yes"


# --- SQLite ----------------------------------------------------------------------------------


def test_sqlite_rows_are_dicts():
    conn = sqlite()
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO t (name) VALUES (?)", ("a",))
    rows = conn.execute("SELECT id, name FROM t").fetchall()
    assert rows == [{"id": 1, "name": "a"}]


def test_sqlite_creates_parent_folders_and_persists(tmp_path: Path):
    path = tmp_path / "deep" / "er" / "lab.db"
    conn = sqlite(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (42)")  # autocommit: isolation_level=None
    conn.close()
    assert path.exists()
    assert sqlite(str(path)).execute("SELECT x FROM t").fetchone() == {"x": 42}
    # WAL journal for files, so readers do not block the writer
    assert sqlite(path).execute("PRAGMA journal_mode").fetchone() == {"journal_mode": "wal"}


def test_sqlite_foreign_keys_enforced():
    conn = sqlite()
    conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c (pid INTEGER REFERENCES p(id))")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO c VALUES (7)")


@pytest.mark.parametrize("where", ["memory", "file"])
def test_sqlite_connection_usable_across_threads(where: str, tmp_path: Path):
    conn = sqlite(":memory:" if where == "memory" else tmp_path / "threads.db")
    conn.execute("CREATE TABLE t (thread INTEGER, i INTEGER)")
    lock = threading.Lock()  # callers serialise use of one connection, as the docstring asks
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                with lock:
                    conn.execute("INSERT INTO t VALUES (?, ?)", (n, i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # check_same_thread=False: no ProgrammingError from other threads
    assert conn.execute("SELECT COUNT(*) AS n FROM t").fetchone() == {"n": 200}
    per_thread = conn.execute("SELECT thread, COUNT(*) AS n FROM t GROUP BY thread").fetchall()
    assert per_thread == [{"thread": n, "n": 25} for n in range(8)]


# --- the shared test helpers (tests/conftest.py) ------------------------------------------------


def test_need_finds_tools_by_path_and_on_path():
    assert need(sys.executable, "the running interpreter") == sys.executable
    assert Path(need("sh", "a POSIX shell")).is_file()


def test_need_reports_redis_server_missing_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing is installed
    with pytest.raises(pytest.skip.Exception, match="^redis-server not installed: real Redis"):
        need("redis-server", "real Redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="redis-server not installed"):
        need("redis-server", "real Redis")


def test_need_skips_outside_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz not installed: for a test"):
        need("no-such-tool-xyz", "for a test")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        need("/no/such/dir/chromium", "for a test")


def test_need_fails_under_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz not installed: for a test"):
        need("no-such-tool-xyz", "for a test")


def test_shared_data_fixture_points_at_a_folder(shared_data: Path):
    assert shared_data.is_dir()
    assert (shared_data / "README.md").exists()
