"""`/metrics` (Prometheus text format), `/healthz` and `/readyz` as plain functions; the
routes in facefleet.api.routes.health only map their results onto HTTP.

What a scrape reads, and from where (docs/metrics.md lists every metric):
- jobs by state: the `jobs/*/status.json` records of the object store (the job status
  lives there, not in Celery), from one listing; finished jobs' states are kept between
  scrapes (they never change), unfinished ones are read again, and the whole scan is
  reused for `SCAN_TTL_S` so that several scrapers cost one scan;
- frames, faces, chunks and the chunk throughput histogram: the hash the workers keep in
  the broker's Redis (facefleet.tasks.metrics);
- queue depth: the Redis lists kombu keeps per queue (one per priority step), and the
  tasks reserved by workers but not acknowledged yet (kombu's `unacked` hash);
- workers alive: a Celery `ping` broadcast;
- the archive's size: row counts of its database.

Every source is read on its own thread under a deadline, so a dependency that hangs makes
its metrics absent and its `facefleet_dependency_up` 0 instead of timing out the scrape.
Each call builds a fresh CollectorRegistry: nothing is registered globally, and several
apps in one process (tests) never clash.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, Field

from facefleet.core.settings import Settings
from facefleet.jobs.records import FINISHED, JobState, JobStatus
from facefleet.jobs.storage import ObjectNotFound, ObjectStore, StorageError, StorageUnavailable
from facefleet.tasks.metrics import FPS_BUCKETS, INF, KINDS, METRICS_KEY, bucket_label
from facefleet.tasks.metrics import field as metric_field

T = TypeVar("T")

SCAN_TTL_S = 5.0  # jobs-by-state and archive counts are reused this long
SOURCE_TIMEOUT_S = 3.0  # per source of a scrape (Prometheus' default scrape timeout: 10 s)
CHECK_TIMEOUT_S = 2.0  # per readiness check
PING_TIMEOUT_S = 0.5  # how long a scrape collects the workers' pong replies
DEFAULT_QUEUES = ("gpu", "cpu")
JOB_STATES: tuple[str, ...] = get_args(JobState)

_STARTED = time.time()


# ---- running calls under a deadline ---------------------------------------------------------


@dataclass
class _Outcome:
    ok: bool
    value: Any = None
    error: str = ""
    ms: float = 0.0


def _bounded(calls: dict[str, Callable[[], Any]], timeout_s: float) -> dict[str, _Outcome]:
    """Run `calls` concurrently, each for at most `timeout_s`. Daemon threads: one that
    hangs past its deadline (a blackholed S3 endpoint retries for many seconds) neither
    delays the answer nor keeps the process from exiting."""
    results: dict[str, _Outcome] = {}
    lock = threading.Lock()

    def run(name: str, fn: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            outcome = _Outcome(ok=True, value=fn())
        except Exception as exc:  # reported, never raised: health must answer
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            outcome = _Outcome(ok=False, error=f"{type(exc).__name__}: {text}".rstrip(": "))
        outcome.ms = round((time.perf_counter() - start) * 1000, 1)
        with lock:
            results[name] = outcome

    threads = {
        name: threading.Thread(target=run, args=(name, fn), name=f"facefleet-{name}", daemon=True)
        for name, fn in calls.items()
    }
    deadline = time.monotonic() + timeout_s
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        out = dict(results)
    for name in calls:
        if name not in out:
            out[name] = _Outcome(
                ok=False, error=f"no answer within {timeout_s:g} s", ms=timeout_s * 1000
            )
    return out


# ---- the sources ----------------------------------------------------------------------------


def _redis(settings: Settings, timeout_s: float) -> Any:
    import redis

    return redis.Redis.from_url(
        settings.broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )


def _queue_names(celery_app: Any) -> tuple[str, ...]:
    queues = getattr(getattr(celery_app, "conf", None), "task_queues", None)
    names = tuple(q.name for q in queues or ()) if queues else ()
    return names or DEFAULT_QUEUES


def _queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue: the plain name for priority 0, the name +
    separator + step for the others (empty unless tasks are sent with a priority)."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [queue if pri == 0 else f"{queue}{Channel.sep}{pri}" for pri in PRIORITY_STEPS]


@dataclass
class _BrokerReading:
    counters: dict[str, str]
    depth: dict[str, int]
    unacked: int


def _read_broker(settings: Settings, queues: tuple[str, ...]) -> _BrokerReading:
    from kombu.transport.redis import Channel

    client = _redis(settings, SOURCE_TIMEOUT_S)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.ping()
        pipe.hgetall(METRICS_KEY)
        for queue in queues:
            for key in _queue_keys(queue):
                pipe.llen(key)
        pipe.hlen(Channel.unacked_key)
        replies = pipe.execute()
    finally:
        client.close()
    counters = {k.decode(): v.decode() for k, v in replies[1].items()}
    lengths = iter(replies[2:-1])
    depth = {queue: sum(next(lengths) for _ in _queue_keys(queue)) for queue in queues}
    return _BrokerReading(counters=counters, depth=depth, unacked=int(replies[-1]))


def _ping_workers(celery_app: Any) -> int:
    replies = celery_app.control.ping(timeout=PING_TIMEOUT_S) or []
    return len({name for reply in replies for name in reply})


@dataclass
class _JobScan:
    """The states of one store's jobs; finished jobs' states kept between scans."""

    finished: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    counts: dict[str, int] | None = None
    at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def states(self, store: ObjectStore, ttl_s: float) -> dict[str, int]:
        with self.lock:
            if self.counts is not None and time.monotonic() - self.at < ttl_s:
                return self.counts
            counts = dict.fromkeys(JOB_STATES, 0)
            kept: dict[str, tuple[datetime, str]] = {}
            for key, written in store.modified("jobs/").items():
                parts = key.split("/")
                if len(parts) != 3 or parts[2] != "status.json":
                    continue
                known = self.finished.get(key)
                if known is not None and known[0] == written:
                    state = known[1]
                else:
                    try:
                        state = store.get_model(key, JobStatus).state
                    except ObjectNotFound:
                        continue  # deleted since the listing
                    except StorageUnavailable:
                        raise
                    except StorageError:
                        continue  # not a status record facefleet wrote; not a job
                if state in FINISHED:
                    kept[key] = (written, state)
                counts[state] = counts.get(state, 0) + 1
            self.finished, self.counts, self.at = kept, counts, time.monotonic()
            return counts


@dataclass
class _Cached:
    value: Any = None
    at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, ttl_s: float, compute: Callable[[], T]) -> T:
        with self.lock:
            if self.value is None or time.monotonic() - self.at >= ttl_s:
                self.value, self.at = compute(), time.monotonic()
            return self.value


# Per store location and per database: the scan state that makes a scrape cheap. This is
# the module's only state, a cache; the metric registry itself is built per call.
_scans: dict[str, _JobScan] = {}
_archive_counts: dict[str, _Cached] = {}
_caches_lock = threading.Lock()


def _scan_for(store: ObjectStore) -> _JobScan:
    with _caches_lock:
        return _scans.setdefault(store.location, _JobScan())


def _archive_url(settings: Settings) -> str | None:
    """The database the archive lives in, when the API should reach one. The in-process
    mode's embedded server is started on demand by jobs, never by a scrape or a probe."""
    return settings.archive_url if settings.archive and settings.archive_url else None


def _count_archive(url: str) -> dict[str, int]:
    with _caches_lock:
        cached = _archive_counts.setdefault(url, _Cached())
    from facefleet.archive.store import ArchiveStore

    return cached.get(
        SCAN_TTL_S, lambda: ArchiveStore(url, connect_timeout_s=CHECK_TIMEOUT_S).index_size()
    )


def clear_caches() -> None:
    """Forget the cached scans (tests; a store wiped under a running API)."""
    with _caches_lock:
        _scans.clear()
        _archive_counts.clear()


# ---- /metrics -------------------------------------------------------------------------------

ARCHIVE_TABLES = {
    "jobs": "facefleet_archive_jobs",
    "tracks": "facefleet_archive_tracks",
    "track_faces": "facefleet_archive_faces",
    "clusters": "facefleet_archive_clusters",
    "labelled_faces": "facefleet_archive_labelled_faces",
}


@dataclass
class _Reading:
    """Everything one scrape gathered; turned into metric families by `_Collector`."""

    jobs: _Outcome | None
    broker: _Outcome | None
    workers: _Outcome | None
    archive: _Outcome | None


class _Collector:
    def __init__(self, reading: _Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        r = self.reading
        up = GaugeMetricFamily(
            "facefleet_dependency_up",
            "1 when the dependency answered this scrape, 0 when it did not; absent when "
            "this deployment has none (no broker in-process, no archive database)",
            labels=["dependency"],
        )
        for name, outcome in (("broker", r.broker), ("store", r.jobs), ("database", r.archive)):
            if outcome is not None:
                up.add_metric([name], 1.0 if outcome.ok else 0.0)
        yield up

        if r.jobs is not None and r.jobs.ok:
            jobs = GaugeMetricFamily(
                "facefleet_jobs", "Jobs in the object store by state", labels=["state"]
            )
            for state, n in sorted(r.jobs.value.items()):
                jobs.add_metric([state], n)
            yield jobs

        if r.broker is not None and r.broker.ok:
            yield from self._broker(r.broker.value, CounterMetricFamily, HistogramMetricFamily)
            depth = GaugeMetricFamily(
                "facefleet_queue_depth",
                "Tasks waiting in each Celery queue (all priority steps)",
                labels=["queue"],
            )
            for queue, n in r.broker.value.depth.items():
                depth.add_metric([queue], n)
            yield depth
            yield GaugeMetricFamily(
                "facefleet_tasks_unacked",
                "Tasks delivered to workers and not acknowledged yet (running or reserved)",
                value=r.broker.value.unacked,
            )

        if r.workers is not None and r.workers.ok:
            yield GaugeMetricFamily(
                "facefleet_workers_alive",
                f"Celery workers that answered a ping within {PING_TIMEOUT_S:g} s",
                value=r.workers.value,
            )

        archive_ok = r.archive is not None and r.archive.ok
        yield GaugeMetricFamily(
            "facefleet_archive_up",
            "1 when the track archive's database answered, 0 when absent or unreachable",
            value=1.0 if archive_ok else 0.0,
        )
        if archive_ok:
            for table, name in ARCHIVE_TABLES.items():
                if table in r.archive.value:
                    yield GaugeMetricFamily(
                        name, f"Rows of the archive's {table} table", value=r.archive.value[table]
                    )

    @staticmethod
    def _broker(reading: _BrokerReading, counter: Any, histogram: Any) -> Iterator[Any]:
        c = reading.counters

        def number(name: str, kind: str, le: str | None = None) -> float:
            return float(c.get(metric_field(name, kind, le), 0) or 0)

        for name, key, doc in (
            ("facefleet_frames_processed", "frames_total", "Frames (or images) analysed"),
            ("facefleet_faces_processed", "faces_total", "Faces detected in them"),
            ("facefleet_chunks", "chunks_total", "Chunks analysed"),
            ("facefleet_chunk_seconds", "seconds_total", "Seconds spent analysing chunks"),
        ):
            family = counter(name, doc + ", by job kind", labels=["kind"])
            for kind in KINDS:
                family.add_metric([kind], number(key, kind))
            yield family
        fps = histogram(
            "facefleet_chunk_fps",
            "Frames (or images) per second of each analysed chunk, by job kind",
            labels=["kind"],
        )
        for kind in KINDS:
            buckets = [
                (bucket_label(b), number("fps_bucket", kind, bucket_label(b))) for b in FPS_BUCKETS
            ]
            buckets.append((INF, number("fps_count", kind)))
            fps.add_metric([kind], buckets, sum_value=number("fps_sum", kind))
        yield fps


def render_metrics(settings: Settings, store: ObjectStore, celery_app: Any) -> tuple[bytes, str]:
    """The Prometheus exposition of this deployment: (body, content type)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    calls: dict[str, Callable[[], Any]] = {
        "jobs": lambda: _scan_for(store).states(store, SCAN_TTL_S)
    }
    if settings.broker_url:
        queues = _queue_names(celery_app)
        calls["broker"] = lambda: _read_broker(settings, queues)
    url = _archive_url(settings)
    if url:
        calls["archive"] = lambda: _count_archive(url)
    outcomes = _bounded(calls, SOURCE_TIMEOUT_S)
    workers = None
    # A ping through a broker that is down would retry its connection for long: only ask
    # when the broker just answered.
    if celery_app is not None and "broker" in outcomes and outcomes["broker"].ok:
        workers = _bounded({"ping": lambda: _ping_workers(celery_app)}, SOURCE_TIMEOUT_S)["ping"]
    reading = _Reading(
        jobs=outcomes["jobs"],
        broker=outcomes.get("broker"),
        workers=workers,
        archive=outcomes.get("archive"),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(reading))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


# ---- /healthz and /readyz -------------------------------------------------------------------


class CheckResult(BaseModel):
    ok: bool
    detail: str = Field(description="What answered, or why it did not")
    ms: float = Field(description="How long the check took, in milliseconds")


class ReadyReport(BaseModel):
    ok: bool = Field(description="Every check passed: the API can serve requests")
    checks: dict[str, CheckResult]


def check_health() -> dict[str, object]:
    """Liveness: the process serves. Nothing else is checked (a broker outage must not get
    a healthy API process restarted)."""
    return {"ok": True, "pid": os.getpid(), "uptime_s": round(time.time() - _STARTED, 1)}


def _ping_broker(settings: Settings) -> str:
    client = _redis(settings, CHECK_TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()
    return "redis answered PING"


def _probe_store(store: ObjectStore) -> str:
    # A stat of a key that need not exist: reaches the server and the bucket, writes nothing.
    store.exists("jobs/readyz-probe")
    return f"{store.location} answered"


def _select_one(url: str) -> str:
    from facefleet.archive.store import ArchiveStore

    ArchiveStore(url, connect_timeout_s=CHECK_TIMEOUT_S).ping()
    return "SELECT 1 answered"


def check_ready(settings: Settings, store: ObjectStore) -> ReadyReport:
    """Readiness: the broker (PING), the object store (a stat) and the archive's database
    (SELECT 1) answer, checked concurrently, each within CHECK_TIMEOUT_S. What this
    deployment does not use passes as "not configured"."""
    calls: dict[str, Callable[[], str]] = {"store": lambda: _probe_store(store)}
    fixed: dict[str, CheckResult] = {}
    if settings.broker_url:
        calls["broker"] = lambda: _ping_broker(settings)
    else:
        fixed["broker"] = CheckResult(ok=True, detail="not configured (in-process mode)", ms=0)
    url = _archive_url(settings)
    if url:
        calls["database"] = lambda: _select_one(url)
    else:
        detail = "not configured (no archive)"
        if settings.archive and not settings.broker_url:
            detail = "embedded, started on demand (in-process mode)"
        fixed["database"] = CheckResult(ok=True, detail=detail, ms=0)
    checks = dict(fixed)
    for name, outcome in _bounded(calls, CHECK_TIMEOUT_S).items():
        checks[name] = CheckResult(
            ok=outcome.ok, detail=outcome.value if outcome.ok else outcome.error, ms=outcome.ms
        )
    ordered = {name: checks[name] for name in ("broker", "store", "database")}
    return ReadyReport(ok=all(c.ok for c in ordered.values()), checks=ordered)
