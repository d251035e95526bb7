"""Per worker process: thread counts that fit the machine, then models loaded and run once
before the first task arrives (Celery's `worker_process_init`)."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init

log = logging.getLogger("facefleet.worker")


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Split the cores between worker processes: oversubscribed BLAS/torch threads on a
    small machine make every process slower than one thread each."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, processes))


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    from facefleet.core.device import limit_threads
    from facefleet.tasks.runtime import get_runtime

    runtime = get_runtime()
    threads = runtime.settings.threads or threads_per_process(1)
    limit_threads(threads)
    if not runtime.settings.worker_warmup:
        return
    try:
        seconds = runtime.registry.warm_up()
    except Exception:
        # A worker that cannot load its models still starts: tasks then fail with the reason.
        log.exception("model warm-up failed")
        return
    log.info("models ready on %s in %.1f s (%d threads)", runtime.registry.device, seconds, threads)
