"""Entry points: `facefleet worker`, `facefleet beat`, `facefleet flower`."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from facefleet.core.errors import FacefleetError
from facefleet.core.settings import Settings

QUEUES = ("gpu", "cpu")


def _require_broker(settings: Settings) -> str:
    if not settings.broker_url:
        raise FacefleetError(
            "FACEFLEET_BROKER_URL is not set: workers need Redis (e.g. redis://127.0.0.1:6379/0)"
        )
    return settings.broker_url


def run_worker(
    settings: Settings,
    queues: list[str],
    concurrency: int = 1,
    hostname: str | None = None,
    loglevel: str = "INFO",
) -> int:
    """A Celery worker for `queues`, models loaded once per process (workers.warmup)."""
    _require_broker(settings)
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise FacefleetError(f"unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    from facefleet.workers.warmup import threads_per_process

    # Set before torch is imported in the pool processes, so no process oversubscribes.
    threads = settings.threads or threads_per_process(concurrency)
    # The pool processes read their settings (FACEFLEET_THREADS) from the environment.
    for var in ("FACEFLEET_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import facefleet.workers.warmup  # noqa: F401  (connects the warm-up signal)
    from facefleet.tasks.app import app

    name = hostname or f"{'+'.join(queues)}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--hostname",
            name,
            "--loglevel",
            loglevel,
            "--pool",
            "prefork",
        ]
    )
    return 0


def run_beat(settings: Settings, schedule_file: Path | None = None, loglevel: str = "INFO") -> int:
    _require_broker(settings)
    from facefleet.tasks.app import app

    if not app.conf.beat_schedule:
        print(
            "facefleet beat: no schedule (set FACEFLEET_RETRAIN_CRON, e.g. '0 3 * * 0'); "
            "running anyway so that a later configuration change needs no new process",
            file=sys.stderr,
        )
    args = ["beat", "--loglevel", loglevel]
    if schedule_file is not None:
        args += ["--schedule", str(schedule_file)]
    app.start(args)
    return 0


def run_flower(settings: Settings, port: int | None = None, address: str = "127.0.0.1") -> int:
    """Flower with basic auth; credentials and the broker URL (which may hold the Redis
    password) travel in the environment, never in argv where `ps` shows them."""
    _require_broker(settings)
    if not settings.flower_user or not settings.flower_password:
        raise FacefleetError(
            "Flower needs FACEFLEET_FLOWER_USER and FACEFLEET_FLOWER_PASSWORD "
            "(it is never started without authentication)"
        )
    env = dict(os.environ)
    env["FLOWER_BASIC_AUTH"] = (
        f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    )
    env["FLOWER_UNAUTHENTICATED_API"] = "false"
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "facefleet.tasks.app:app",
        "flower",
        f"--port={port or settings.flower_port}",
        f"--address={address}",
    ]
    os.execvpe(command[0], command, env)
    return 0  # not reached
