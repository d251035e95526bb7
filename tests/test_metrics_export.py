"""`/metrics`, `/healthz` and `/readyz` as library calls (facefleet.api.metrics) and the
workers' recorder (facefleet.tasks.metrics): a folder store with fake job records, an
unreachable broker, and (when redis-server is installed) a private Redis of the test's own."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from facefleet.api import metrics as api_metrics
from facefleet.api.metrics import check_health, check_ready, clear_caches, render_metrics
from facefleet.core.settings import Settings
from facefleet.jobs.records import JobStatus, new_job_id
from facefleet.jobs.storage import LocalStore
from facefleet.tasks import metrics as task_metrics
from facefleet.tasks.metrics import METRICS_KEY, record_chunk

DEAD_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def put_jobs(store: LocalStore, states: list[str]) -> list[str]:
    ids = []
    for state in states:
        job_id = new_job_id()
        status = JobStatus(job_id=job_id, kind="video", state=state)  # type: ignore[arg-type]
        store.put_model(f"jobs/{job_id}/status.json", status)
        store.put_bytes(f"jobs/{job_id}/input/a.mp4", b"not read")  # other keys: ignored
        ids.append(job_id)
    return ids


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


def test_jobs_by_state_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "store")
    ids = put_jobs(store, ["done", "done", "failed", "running", "queued", "cancelled", "done"])
    store.put_bytes("jobs/notes.txt", b"not a job")
    store.put_bytes(f"jobs/{new_job_id()}/status.json", b"{not json")  # broken: skipped
    settings = Settings(store_dir=tmp_path / "store")

    body, content_type = render_metrics(settings, store, None)
    assert content_type.startswith("text/plain")
    found = samples(body)
    expected = {"done": 3, "failed": 1, "running": 1, "queued": 1, "cancelled": 1}
    for state, n in expected.items():
        assert value(found, "facefleet_jobs", state=state) == n, state
    assert value(found, "facefleet_dependency_up", dependency="store") == 1
    # In-process: no broker to read, no archive database to count.
    assert value(found, "facefleet_dependency_up", dependency="broker") is None
    assert value(found, "facefleet_archive_up") == 0
    assert value(found, "facefleet_queue_depth", queue="gpu") is None

    # A scrape within SCAN_TTL_S reuses the scan; after it, the running job's new state
    # shows, and finished jobs' records are not read again.
    running = JobStatus(job_id=ids[3], kind="video", state="done")
    store.put_model(f"jobs/{ids[3]}/status.json", running)
    assert (
        value(samples(render_metrics(settings, store, None)[0]), "facefleet_jobs", state="done")
        == 3
    )
    monkeypatch.setattr(api_metrics, "SCAN_TTL_S", 0.0)
    reads: list[str] = []
    get_model = store.get_model

    def counting(key: str, model: type) -> object:
        reads.append(key)
        return get_model(key, model)

    monkeypatch.setattr(store, "get_model", counting)
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_jobs", state="done") == 4
    assert value(found, "facefleet_jobs", state="running") == 0
    # Re-read: the queued job (unfinished), the rewritten one and the broken record.
    assert f"jobs/{ids[0]}/status.json" not in reads
    assert f"jobs/{ids[3]}/status.json" in reads
    assert f"jobs/{ids[4]}/status.json" in reads


def test_an_unreachable_store_is_a_dependency_down(tmp_path: Path) -> None:
    from facefleet.jobs.storage import StorageUnavailable

    class DownStore(LocalStore):
        def modified(self, prefix: str) -> dict:
            raise StorageUnavailable("s3 at 10.0.0.1:9000 unreachable")

        def exists(self, key: str) -> bool:
            raise StorageUnavailable("s3 at 10.0.0.1:9000 unreachable")

    store = DownStore(tmp_path / "store")
    settings = Settings(store_dir=tmp_path / "store")
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_dependency_up", dependency="store") == 0
    assert value(found, "facefleet_jobs", state="done") is None
    report = check_ready(settings, store)
    assert not report.ok
    assert not report.checks["store"].ok
    assert "unreachable" in report.checks["store"].detail


def test_ready_names_an_unreachable_broker(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    settings = Settings(store_dir=tmp_path / "store", broker_url=DEAD_BROKER)
    started = time.monotonic()
    report = check_ready(settings, store)
    assert time.monotonic() - started < api_metrics.CHECK_TIMEOUT_S + 1
    assert not report.ok
    assert set(report.checks) == {"broker", "store", "database"}
    assert not report.checks["broker"].ok
    assert "127.0.0.1:1" in report.checks["broker"].detail
    assert report.checks["store"].ok
    # A cluster without FACEFLEET_ARCHIVE_URL has no archive: not a reason to refuse.
    assert report.checks["database"].ok
    assert "not configured" in report.checks["database"].detail
    assert report.model_dump(mode="json")["checks"]["broker"]["ok"] is False

    # The scrape still answers: the broker is marked down and its metrics are absent.
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_dependency_up", dependency="broker") == 0
    assert value(found, "facefleet_queue_depth", queue="gpu") is None
    assert value(found, "facefleet_jobs", state="done") == 0


def test_ready_in_process_and_health(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    report = check_ready(Settings(store_dir=tmp_path / "store"), store)
    assert report.ok, report
    assert "in-process" in report.checks["broker"].detail
    health = check_health()
    assert health["ok"] is True


def test_a_hanging_check_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class SlowStore(LocalStore):
        def exists(self, key: str) -> bool:
            time.sleep(5)
            return False

    monkeypatch.setattr(api_metrics, "CHECK_TIMEOUT_S", 0.3)
    store = SlowStore(tmp_path / "store")
    started = time.monotonic()
    report = check_ready(Settings(store_dir=tmp_path / "store"), store)
    assert time.monotonic() - started < 1.5
    assert not report.ok
    assert "no answer within 0.3 s" in report.checks["store"].detail


def test_a_database_that_does_not_answer(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    url = "postgresql://facefleet:x@127.0.0.1:1/facefleet"
    settings = Settings(store_dir=tmp_path / "store", archive_url=url)
    report = check_ready(settings, store)
    assert not report.checks["database"].ok
    assert "cannot be reached" in report.checks["database"].detail
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_archive_up") == 0
    assert value(found, "facefleet_dependency_up", dependency="database") == 0


def test_recording_never_fails_a_chunk(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    # In-process: nothing to record, nothing attempted.
    record_chunk(Settings(store_dir=tmp_path), 100, 3, 1.0, "video")
    task_metrics._warned = False
    settings = Settings(store_dir=tmp_path, broker_url=DEAD_BROKER)
    with caplog.at_level(logging.WARNING, logger="facefleet.tasks.metrics"):
        record_chunk(settings, 100, 3, 1.0, "video")
        record_chunk(settings, 100, 3, 1.0, "video")
    warnings = [r for r in caplog.records if "metrics not recorded" in r.getMessage()]
    assert len(warnings) == 1


# ---- against a Redis of this test's own -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def test_recorded_chunks_and_queues_in_the_scrape(tmp_path: Path, redis_url: str) -> None:
    import redis
    from kombu.transport.redis import Channel

    settings = Settings(store_dir=tmp_path / "store", broker_url=redis_url)
    store = LocalStore(tmp_path / "store")
    record_chunk(settings, 150, 12, 10.0, "video")  # 15 frames/s
    record_chunk(settings, 150, 0, 1.0, "video")  # 150 frames/s
    record_chunk(settings, 16, 20, 4.0, "images")  # 4 images/s
    client = redis.Redis.from_url(redis_url)
    assert client.hget(METRICS_KEY, "frames_total:video") == b"300"
    client.lpush("gpu", b"a", b"b")
    client.lpush(f"gpu{Channel.sep}9", b"c")  # a task sent with a priority
    client.lpush("cpu", b"d")
    client.hset("unacked", "tag", b"e")

    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_dependency_up", dependency="broker") == 1
    assert value(found, "facefleet_frames_processed_total", kind="video") == 300
    assert value(found, "facefleet_faces_processed_total", kind="video") == 12
    assert value(found, "facefleet_chunks_total", kind="video") == 2
    assert value(found, "facefleet_frames_processed_total", kind="images") == 16
    assert value(found, "facefleet_faces_processed_total", kind="images") == 20
    assert value(found, "facefleet_chunk_seconds_total", kind="video") == pytest.approx(11.0)
    assert value(found, "facefleet_chunk_fps_bucket", kind="video", le="10.0") == 0
    assert value(found, "facefleet_chunk_fps_bucket", kind="video", le="20.0") == 1
    assert value(found, "facefleet_chunk_fps_bucket", kind="video", le="200.0") == 2
    assert value(found, "facefleet_chunk_fps_bucket", kind="video", le="+Inf") == 2
    assert value(found, "facefleet_chunk_fps_count", kind="video") == 2
    assert value(found, "facefleet_chunk_fps_sum", kind="video") == pytest.approx(165.0)
    assert value(found, "facefleet_chunk_fps_bucket", kind="images", le="5.0") == 1
    assert value(found, "facefleet_queue_depth", queue="gpu") == 3
    assert value(found, "facefleet_queue_depth", queue="cpu") == 1
    assert value(found, "facefleet_tasks_unacked") == 1
    # No Celery app given: no ping, no worker count.
    assert value(found, "facefleet_workers_alive") is None

    report = check_ready(settings, store)
    assert report.ok, report
    assert report.checks["broker"].detail == "redis answered PING"


def test_the_archive_size_before_and_after_migration(tmp_path: Path, postgres_server) -> None:
    import uuid

    import psycopg

    from facefleet.archive.store import ArchiveStore

    # A database of this test's own: the session's server is shared, its schema migrated.
    name = f"metrics_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.dsn_for(name)
    store = LocalStore(tmp_path / "store")
    settings = Settings(store_dir=tmp_path / "store", archive_url=url)

    # No worker has migrated it yet: reachable, every table counted 0.
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_archive_up") == 1
    assert value(found, "facefleet_dependency_up", dependency="database") == 1
    assert value(found, "facefleet_archive_tracks") == 0
    report = check_ready(settings, store)
    assert report.ok, report
    assert report.checks["database"].detail == "SELECT 1 answered"

    archive = ArchiveStore(url)
    archive.migrate()
    assert archive.index_size() == archive.counts()
    clear_caches()
    found = samples(render_metrics(settings, store, None)[0])
    assert value(found, "facefleet_archive_jobs") == 0
