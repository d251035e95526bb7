"""The service entry points: `facefleet worker`, `facefleet beat`, `facefleet flower` (they
need the worker extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    worker = sub.add_parser(
        "worker",
        help="run a Celery worker (models loaded once per process)",
        description="Needs FACEFLEET_BROKER_URL and the FACEFLEET_S3_* settings. The gpu "
        "queue runs detection, embedding, rendering and training; cpu runs planning, "
        "merging and finishing. A GPU is used when present (FACEFLEET_DEVICE).",
    )
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated (default gpu,cpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes")
    worker.add_argument("--hostname", help="Celery node name (default QUEUES@host)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=_worker)

    beat = sub.add_parser(
        "beat",
        help="run celery beat: the stalled-job check (FACEFLEET_STALL_CHECK_S) and scheduled "
        "retraining (FACEFLEET_RETRAIN_CRON)",
    )
    beat.add_argument("--schedule-file", type=Path, help="where beat keeps its state")
    beat.set_defaults(func=_beat)

    flower = sub.add_parser(
        "flower",
        help="run Flower, the monitoring UI, with basic auth",
        description="Credentials come from FACEFLEET_FLOWER_USER / FACEFLEET_FLOWER_PASSWORD.",
    )
    flower.add_argument("--port", type=int)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(func=_flower)


def _worker(args: argparse.Namespace) -> int:
    from facefleet.core.settings import get_settings
    from facefleet.workers.main import run_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    return run_worker(get_settings(), queues, args.concurrency, args.hostname, args.loglevel)


def _beat(args: argparse.Namespace) -> int:
    from facefleet.core.settings import get_settings
    from facefleet.workers.main import run_beat

    return run_beat(get_settings(), args.schedule_file)


def _flower(args: argparse.Namespace) -> int:
    from facefleet.core.settings import get_settings
    from facefleet.workers.main import run_flower

    return run_flower(get_settings(), args.port, args.address)
