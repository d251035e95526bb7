"""The command line of the local stack: `stack.py up | down | status --dir DIR`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from facefleet.exits import EXIT_INPUT_ERRORS as EXIT_NOT_RUNNING  # some are down
from facefleet.exits import EXIT_OK, EXIT_SETUP_ERROR
from facefleet.localstack.errors import StackError
from facefleet.localstack.stack import down, status, up
from facefleet.localstack.state import STACK_ENV


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
        "redis-server, SeaweedFS (S3), PostgreSQL + pgvector (the track archive), GPU and CPU "
        "workers, celery beat and Flower, all on 127.0.0.1 with free ports and random "
        "credentials. One folder per stack.",
        epilog="after `up`: `source DIR/stack.env` gives a shell (and the facefleet client) the "
        "stack's FACEFLEET_* settings; Flower's address and login are in it too.\n"
        "exit status: 0 ok; 1 (status) some processes are not running; 2 setup error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p_up = sub.add_parser("up", help="start a stack in DIR (created)")
    p_up.add_argument("--dir", type=Path, required=True, help="the stack's folder")
    p_up.add_argument(
        "--services-only",
        action="store_true",
        help="only the services: redis-server, SeaweedFS and PostgreSQL",
    )
    p_up.add_argument(
        "--no-archive",
        action="store_true",
        help="without PostgreSQL: the workers get no FACEFLEET_ARCHIVE_URL (no track archive)",
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
                archive=not args.no_archive,
            )
            print(f"stack up in {time.monotonic() - t0:.1f} s: {record['dir']}")
            for s in record["services"]:
                port = f" port {s['port']}" if s.get("port") else ""
                print(f"  {s['name']:<12} pid {s['pid']}{port}  log {s['log']}")
            print(f"  broker {record['broker']}  s3 {record['s3_endpoint']}/{record['bucket']}")
            if record.get("archive"):
                print(f"  archive {record['archive']} (password in stack.env)")
            if record.get("flower"):
                print(f"  flower {record['flower']} (user/password in stack.env)")
            if record.get("api"):
                print(
                    f"  api {record['api']} (review page /review/, docs /docs; admin key in "
                    f"{record['api_key_file']})"
                )
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
