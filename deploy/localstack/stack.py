"""A whole local stack in one folder: `up`, `down`, `status`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facefleet.localstack import state
from facefleet.localstack.apps import FACEFLEET_HINT, check_started, stack_apps, start_facefleet
from facefleet.localstack.errors import StackError
from facefleet.localstack.ports import HOST, free_port
from facefleet.localstack.postgres_server import public_dsn, start_postgres, stop_postgres
from facefleet.localstack.processes import (
    Service,
    find_binary,
    pid_alive,
    stop_pid,
    tree_rss_mib,
)
from facefleet.localstack.redis_server import start_redis
from facefleet.localstack.s3_server import start_s3, stop_s3

# Stop order: what consumes the services goes first, the services last.
STOP_ORDER = {"api": 0, "worker": 0, "beat": 1, "flower": 2, "postgres": 3, "s3": 4, "redis": 5}
SERVICE_KINDS = ("postgres", "s3", "redis")
API_KEY_FILE = "api-key"


def stop_service(service: Service, timeout: float = 10.0) -> str:
    """stop_pid for a recorded service, plus the files weed leaves in /tmp; PostgreSQL
    gets its fast shutdown."""
    if service.kind == "s3":
        return stop_s3(service, timeout)
    if service.kind == "postgres":
        return stop_postgres(service, timeout)
    return stop_pid(service.pid, timeout, start_time=service.start_time)


def _running(services: Sequence[Service]) -> list[Service]:
    return [s for s in services if pid_alive(s.pid, s.start_time)]


def _stop_rank(service: Service) -> int:
    return STOP_ORDER.get(service.kind, 0)


def up(
    workdir: Path,
    services_only: bool = False,
    gpu_workers: int = 1,
    cpu_workers: int = 1,
    *,
    bucket: str = "facefleet",
    gpu_concurrency: int | None = 1,
    cpu_concurrency: int | None = None,
    settle_s: float = 3.0,
    facefleet: str | None = None,
    archive: bool = True,
) -> dict[str, Any]:
    """Start the stack in `workdir`; returns what stack.json records.

    Fresh random credentials every time (S3 keys, Redis and Flower passwords); the
    archive's PostgreSQL (`archive`, default on) keeps its data and its password in
    DIR/postgres across `down` and `up`. If anything fails to start, what was already
    started is stopped again before the error is raised.
    GPU workers default to one process each (a model copy per process on the GPU); scale
    with `gpu_workers`. `facefleet` is the command that runs workers, beat and Flower
    (default: the console script of this environment).
    """
    if gpu_workers < 0 or cpu_workers < 0:
        raise StackError("worker counts must not be negative")
    workdir = Path(workdir).resolve()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (workdir / state.STACK_JSON).exists():
        alive = _running(state.services(state.load(workdir)))
        if alive:
            names = ", ".join(f"{s.name} (pid {s.pid})" for s in alive)
            raise StackError(f"a stack already runs in {workdir}: {names}; run `down` first")
    if services_only:
        facefleet = None
    elif facefleet is None:
        facefleet = find_binary("facefleet", FACEFLEET_HINT)
    (workdir / "logs").mkdir(exist_ok=True)

    redis_password = secrets.token_hex(16)
    access_key = "FF" + secrets.token_hex(9).upper()
    secret_key = secrets.token_hex(20)
    flower_password = secrets.token_urlsafe(18)
    started: list[Service] = []
    extra: dict[str, Any] = {"bucket": bucket}
    try:
        redis = start_redis(workdir, password=redis_password)
        started.append(redis)
        # Recorded as soon as each process runs, so that `down` finds it even when this
        # script is killed half-way.
        state.save(workdir, started, extra)
        s3 = start_s3(workdir, access_key=access_key, secret_key=secret_key, bucket=bucket)
        started.append(s3)
        state.save(workdir, started, extra)
        archive_dsn = None
        if archive:
            postgres, server = start_postgres(workdir)
            started.append(postgres)
            state.save(workdir, started, extra)
            archive_dsn = server.dsn
            extra["archive"] = public_dsn(server)
        flower_port = free_port()
        api_port = free_port() if archive_dsn is not None and facefleet is not None else None
        values = {
            "FACEFLEET_BROKER_URL": f"redis://:{redis_password}@{HOST}:{redis.port}/0",
            "FACEFLEET_S3_ENDPOINT": f"{HOST}:{s3.port}",
            "FACEFLEET_S3_ACCESS_KEY": access_key,
            "FACEFLEET_S3_SECRET_KEY": secret_key,
            "FACEFLEET_S3_BUCKET": bucket,
            "FACEFLEET_S3_SECURE": "false",
            "FACEFLEET_FLOWER_USER": "facefleet",
            "FACEFLEET_FLOWER_PASSWORD": flower_password,
            "FACEFLEET_FLOWER_PORT": str(flower_port),
        }
        if archive_dsn is not None:
            values["FACEFLEET_ARCHIVE_URL"] = archive_dsn
        if api_port is not None:
            assert archive_dsn is not None
            values |= {
                "FACEFLEET_API_PORT": str(api_port),
                "FACEFLEET_API_SESSION_SECRET": secrets.token_hex(32),
                "FACEFLEET_WEBHOOK_SECRET": secrets.token_hex(32),
            }
            extra["api_key_file"] = str(_admin_key(workdir, archive_dsn))
        # Written before the workers start: start_facefleet gives them what it holds.
        state.write_env(workdir, values)
        if facefleet is not None:
            for name, args, port in stack_apps(
                workdir,
                gpu_workers,
                cpu_workers,
                gpu_concurrency,
                cpu_concurrency,
                flower_port,
                api_port,
            ):
                started.append(
                    start_facefleet(workdir, name, args, port=port, executable=facefleet)
                )
                state.save(workdir, started, extra)
            check_started(started, flower_port, settle_s)
        extra |= {
            "broker": f"redis://{HOST}:{redis.port}/0",
            "s3_endpoint": f"{HOST}:{s3.port}",
            "archive": extra.get("archive"),
            "flower": None if services_only else f"http://{HOST}:{flower_port}",
            "api": None if api_port is None else f"http://{HOST}:{api_port}",
        }
        state.save(workdir, started, extra)
    except BaseException:
        for service in sorted(started, key=_stop_rank):
            stop_service(service, 5.0)
        raise
    return state.load(workdir)


def _admin_key(workdir: Path, dsn: str) -> Path:
    """An admin key of the stack's API, in DIR/api-key (mode 0600), made once: the archive
    keeps its hash across `down` and `up`, so the file stays valid."""
    from facefleet.api.keys import KeyStore
    from facefleet.archive.store import ArchiveStore

    path = workdir / API_KEY_FILE
    if not path.exists():
        archive = ArchiveStore(dsn)
        archive.migrate()
        state.write_private(path, KeyStore(archive).create("local-stack-admin", ["admin"]).token)
    return path


def down(workdir: Path, worker_timeout: float = 30.0) -> list[tuple[str, int, str]]:
    """Stop every process stack.json records: workers first, services last.

    Workers get `worker_timeout` seconds to finish the task at hand (SIGTERM is Celery's
    warm shutdown); a task cut short by SIGKILL is delivered again (acks_late). Returns
    (name, pid, "stopped" | "killed" | "not running") per process.
    """
    workdir = Path(workdir).resolve()
    services = sorted(state.services(state.load(workdir)), key=_stop_rank)
    outcomes: dict[int, str] = {}

    def stop(service: Service) -> None:
        timeout = worker_timeout if service.kind == "worker" else 10.0
        outcomes[service.pid] = stop_service(service, timeout)

    # Two phases, each in parallel (a warm shutdown and weed's take seconds apiece): what
    # uses Redis, S3 and PostgreSQL first, then those services themselves (none of them
    # uses another).
    apps = [s for s in services if s.kind not in SERVICE_KINDS]
    infra = [s for s in services if s.kind in SERVICE_KINDS]
    for phase in (apps, infra):
        threads = [threading.Thread(target=stop, args=(s,)) for s in phase]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return [(s.name, s.pid, outcomes[s.pid]) for s in services]


def status(workdir: Path) -> list[dict[str, Any]]:
    """Per recorded process: name, pid, port, running, resident memory with its children
    (MiB), log."""
    workdir = Path(workdir).resolve()
    rows = []
    for service in state.services(state.load(workdir)):
        running = pid_alive(service.pid, service.start_time)
        rows.append(
            {
                "name": service.name,
                "pid": service.pid,
                "port": service.port,
                "running": running,
                "rss_mib": tree_rss_mib(service.pid) if running else None,
                "log": str(service.log),
            }
        )
    return rows
