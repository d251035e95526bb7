"""The production topology on one machine, without Docker (deploy/stack.py is its command).

redis-server (broker and result backend), SeaweedFS `weed mini` (the S3 store), PostgreSQL
with pgvector (the track archive), the GPU and CPU workers, celery beat and Flower, every one
on 127.0.0.1 with ports chosen free, so that several stacks (and test runs) live side by
side, each in a folder of its own.

    errors           StackError, the one-line setup problem
    ports            free ports on 127.0.0.1
    processes        Service, a process in its own session, pid checks, stopping, memory
    redis_server     redis-server
    s3_server        SeaweedFS weed mini, its credentials and the bucket
    postgres_server  the archive's PostgreSQL (facefleet.archive.embedded_server)
    apps             start_facefleet: the one way a worker, beat or Flower is started
    state            stack.json and stack.env
    stack            up, down, status
    cli              the `stack.py` command line

Tests and benchmarks use it too: `from facefleet import localstack`.
"""

from facefleet.localstack.apps import start_facefleet
from facefleet.localstack.errors import StackError
from facefleet.localstack.ports import HOST, free_port
from facefleet.localstack.postgres_server import start_postgres, stop_postgres
from facefleet.localstack.processes import (
    Service,
    pid_alive,
    process_start_time,
    stop_pid,
    wait_for_exit,
)
from facefleet.localstack.redis_server import redis_ping, start_redis
from facefleet.localstack.s3_server import start_s3
from facefleet.localstack.stack import down, status, stop_service, up
from facefleet.localstack.state import STACK_ENV, STACK_JSON, stack_env

__all__ = [
    "HOST",
    "STACK_ENV",
    "STACK_JSON",
    "Service",
    "StackError",
    "down",
    "free_port",
    "pid_alive",
    "process_start_time",
    "redis_ping",
    "stack_env",
    "start_facefleet",
    "start_postgres",
    "start_redis",
    "start_s3",
    "status",
    "stop_pid",
    "stop_postgres",
    "stop_service",
    "up",
    "wait_for_exit",
]
