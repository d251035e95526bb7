"""facefleet's own processes on a local stack (workers, beat, Flower): the one function that
starts them, the environment they get, and the set that `up` starts."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from facefleet.localstack.ports import HOST
from facefleet.localstack.processes import (
    Service,
    exited_error,
    find_binary,
    pid_alive,
    spawn,
    wait_until,
)
from facefleet.localstack.state import stack_env

# Connection settings that only the stack may set: a FACEFLEET_RESULT_BACKEND, S3 region or
# archive URL left in the user's shell would point the workers at another server.
STACK_OWNED = (
    "FACEFLEET_BROKER_URL",
    "FACEFLEET_RESULT_BACKEND",
    "FACEFLEET_ARCHIVE_URL",
    "FACEFLEET_S3_",
    "FACEFLEET_FLOWER_",
)
FACEFLEET_HINT = "install this project first (pip install -e . in the repository)"


def facefleet_env(
    values: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a facefleet process: the user's own FACEFLEET_* (device, retrain
    cron, LFW) stay, the stack's connection settings `values` replace any others, `extra`
    goes on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_OWNED)}
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"  # logs appear while the process runs
    env.update(extra or {})
    return env


def start_facefleet(
    workdir: Path,
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    port: int | None = None,
    executable: str | None = None,
) -> Service:
    """Start `facefleet ARGS...` (a worker, beat or Flower) on the stack in `workdir`.

    The one way a facefleet process is started against a local stack: `up` starts its
    workers, beat and Flower with it, and so do the test cluster (tests/cluster.py) and the
    benchmarks (bench/speed.py).

    - Settings: the stack's, from DIR/stack.env, in place of any connection settings of this
      environment (see facefleet_env); `env` goes on top (e.g. FACEFLEET_THREADS, PYTHONPATH).
    - Output: appended to `log`, default DIR/logs/NAME.log; stdin is closed.
    - Process: in a session of its own, in `workdir`; the Service's kind is ARGS[0]
      ("worker", "beat", "flower"), `port` what it listens on, if anything.
    - `executable`: the facefleet command; default the console script beside
      sys.executable, else the one on PATH.

    Nothing is recorded in stack.json (`up` records what it starts); stop the process with
    stop_service(). Returns as soon as it runs; raises StackError when it cannot start.
    """
    workdir = Path(workdir).resolve()
    command = executable or find_binary("facefleet", FACEFLEET_HINT)
    return spawn(
        name,
        args[0] if args else "",
        [command, *args],
        log or workdir / "logs" / f"{name}.log",
        facefleet_env(stack_env(workdir), env),
        workdir,
        port,
    )


def stack_apps(
    workdir: Path,
    gpu_workers: int,
    cpu_workers: int,
    gpu_concurrency: int | None,
    cpu_concurrency: int | None,
    flower_port: int,
    api_port: int | None = None,
) -> Iterator[tuple[str, list[str], int | None]]:
    """(name, facefleet arguments, port) of each facefleet process `up` starts, in order;
    the HTTP API when `api_port` is given (it needs the archive, where its keys live)."""

    def worker(queue: str, index: int, concurrency: int | None) -> list[str]:
        # %h: Celery puts the machine's name in; the prefix keeps the names distinct.
        args = ["worker", "--queues", queue, "--hostname", f"{queue}{index}@%h"]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        return args

    for i in range(1, gpu_workers + 1):
        yield f"worker-gpu{i}", worker("gpu", i, gpu_concurrency), None
    for i in range(1, cpu_workers + 1):
        yield f"worker-cpu{i}", worker("cpu", i, cpu_concurrency), None
    schedule = Path(workdir) / "celerybeat-schedule"
    yield "beat", ["beat", "--schedule-file", str(schedule)], None
    yield "flower", ["flower", "--port", str(flower_port), "--address", HOST], flower_port
    if api_port is not None:
        yield "api", ["api", "serve", "--host", HOST, "--port", str(api_port)], api_port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # 401 without credentials: it is up
    except OSError:
        return False


def check_started(services: Sequence[Service], flower_port: int, settle_s: float) -> None:
    """Catch what dies right away (bad settings, import errors) and wait for Flower and
    the API."""
    for service in services:
        if service.kind == "flower":
            url = f"http://{HOST}:{flower_port}/"
        elif service.kind == "api":
            url = f"http://{HOST}:{service.port}/healthz"
        else:
            continue
        wait_until(service, lambda url=url: _answers(url), 60.0, "answer HTTP")
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        for service in services:
            if not pid_alive(service.pid):
                raise exited_error(service)
        time.sleep(0.2)
