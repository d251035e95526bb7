"""Counters the workers keep in the broker's Redis, read by the API's `/metrics`.

Every analysed chunk adds its frames, faces and time to one Redis hash (`METRICS_KEY`) in
one MULTI/EXEC pipeline, so a scrape never sees half a chunk. Counters live in Redis, not
in each worker's memory: workers come and go (and pool processes are replaced), while the
API process that serves `/metrics` is a single scrape target that must see the sum.

Recording is best effort: a metrics failure never fails a chunk; it is logged once per
process. Without a broker (the in-process mode) nothing is recorded.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from facefleet.core.settings import Settings

log = logging.getLogger("facefleet.tasks.metrics")

METRICS_KEY = "facefleet:metrics"

# Upper bounds (frames/s) of the chunk throughput histogram; +Inf is added by the reader.
# From 1/s (a CPU worker on a 4K video) to 500/s (a GPU on a small one, detecting every K).
FPS_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)
INF = "+Inf"

KINDS = ("video", "images")


def bucket_label(bound: float) -> str:
    """A bucket's upper bound as Prometheus writes it (`le="5.0"`)."""
    return INF if bound == float("inf") else repr(float(bound))


def field(name: str, kind: str, le: str | None = None) -> str:
    """The hash field of one counter: `frames_total:video`, `fps_bucket:video:5.0`."""
    return f"{name}:{kind}" if le is None else f"{name}:{kind}:{le}"


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_warned = False


def _client(url: str) -> Any:
    """One Redis client per URL and process (its pool reconnects after a fork)."""
    import redis

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            # Short timeouts: a chunk waits at most this long on a broker that went away.
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            _clients[url] = client
        return client


def record_chunk(settings: Settings, frames: int, faces: int, seconds: float, kind: str) -> None:
    """Count one analysed chunk: `frames` analysed (video frames or images), `faces`
    detected, in `seconds` of analysis. Never raises."""
    global _warned
    if not settings.broker_url:
        return
    try:
        if kind not in KINDS:
            raise ValueError(f"unknown chunk kind {kind!r}")
        frames, faces = max(0, int(frames)), max(0, int(faces))
        seconds = max(0.0, float(seconds))
        fps = frames / max(seconds, 1e-6)
        pipe = _client(settings.broker_url).pipeline(transaction=True)
        pipe.hincrby(METRICS_KEY, field("frames_total", kind), frames)
        pipe.hincrby(METRICS_KEY, field("faces_total", kind), faces)
        pipe.hincrby(METRICS_KEY, field("chunks_total", kind), 1)
        pipe.hincrbyfloat(METRICS_KEY, field("seconds_total", kind), seconds)
        # Cumulative buckets, as Prometheus exposes them: the reader needs no arithmetic.
        for bound in (*FPS_BUCKETS, float("inf")):
            if fps <= bound:
                pipe.hincrby(METRICS_KEY, field("fps_bucket", kind, bucket_label(bound)), 1)
        pipe.hincrby(METRICS_KEY, field("fps_count", kind), 1)
        pipe.hincrbyfloat(METRICS_KEY, field("fps_sum", kind), fps)
        pipe.execute()
    except Exception as exc:  # a metrics failure must never fail the chunk
        if not _warned:
            _warned = True
            log.warning(
                "metrics not recorded (%s: %s); further failures not logged",
                type(exc).__name__,
                exc,
            )
