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

Run it with the Python of the facefleet environment (the repository's .venv, with the
`worker` extra: redis-py, psutil, minio): the code is the package `facefleet.localstack`
(deploy/localstack/), which tests and benchmarks import as `from facefleet import localstack`.
"""

import sys

try:
    from facefleet.localstack.cli import main
except ImportError as exc:  # another Python: still one line and exit status 2
    print(f"error: {exc}; run stack.py with the facefleet environment's Python", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
