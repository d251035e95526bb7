"""redis-server for a local stack: Celery's broker and result backend."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from facefleet.localstack.errors import StackError
from facefleet.localstack.ports import HOST, free_port
from facefleet.localstack.processes import START_TIMEOUT_S, Service, spawn, stop_pid, wait_until
from facefleet.localstack.state import write_private


def redis_ping(port: int, password: str | None = None, timeout: float = 1.0) -> bool:
    """Whether the Redis on 127.0.0.1:`port` answers PING, authenticated with `password`
    when given (a server that wants a password refuses a PING without one)."""
    try:
        # RESP2: AUTH + PING, which every redis-server answers (HELLO needs Redis 6).
        with redis.Redis(
            host=HOST,
            port=port,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # one try: start-up polls on its own
            protocol=2,
        ) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def start_redis(workdir: Path, port: int | None = None, password: str | None = None) -> Service:
    """redis-server on 127.0.0.1, nothing persisted, ready when PING answers.

    The password goes through a mode-0600 config file, never the command line (which any
    local user can read in `ps`).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            "redis-server not found on PATH; install it (apt-get install redis-server)"
        )
    workdir = Path(workdir).resolve()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log = workdir / "logs" / "redis.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    conf = data / "redis.conf"
    write_private(conf, f"requirepass {password}\n" if password else "")
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        cmd = [
            binary,
            str(conf),
            "--port",
            str(chosen),
            "--bind",
            HOST,
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(log),
            "--daemonize",
            "no",
        ]
        service = spawn("redis", "redis", cmd, log, os.environ, data, chosen)
        try:
            wait_until(
                service, lambda p=chosen: redis_ping(p, password), START_TIMEOUT_S, "answer PING"
            )
            return service
        except StackError:
            stop_pid(service.pid, 2.0, start_time=service.start_time)
            # A port taken between choosing and binding: try a fresh one.
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")
