"""Named locks across the whole cluster (Redis), or within the process (in-process mode)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from facefleet.core.errors import FacefleetError
from facefleet.tasks.runtime import get_runtime

_local: dict[str, threading.Lock] = {}
_guard = threading.Lock()


class LockBusy(FacefleetError):
    """Somebody else holds the lock."""


@contextmanager
def cluster_lock(name: str, ttl_s: float, wait_s: float = 60.0) -> Iterator[None]:
    """Hold `name` while the block runs. In Redis the lock expires after `ttl_s` unless it
    is extended, so a worker that dies does not keep it forever."""
    settings = get_runtime().settings
    if not settings.broker_url:
        with _guard:
            lock = _local.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=wait_s):
            raise LockBusy(f"{name} is busy")
        try:
            yield
        finally:
            lock.release()
        return
    import redis

    client = get_runtime().redis()
    lock = client.lock(f"facefleet:lock:{name}", timeout=ttl_s, blocking_timeout=wait_s)
    if not lock.acquire():
        raise LockBusy(f"{name} is busy")
    try:
        yield
    finally:
        # Expired meanwhile: nothing to release.
        with suppress(redis.exceptions.LockError):
            lock.release()
