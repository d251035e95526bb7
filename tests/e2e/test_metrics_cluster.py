"""Metrics and readiness on the real stack: Redis, SeaweedFS, the local stack's PostgreSQL and
two workers; an image job's chunk shows in the counters the workers keep in Redis."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from facefleet.api.metrics import check_ready, clear_caches, render_metrics
from facefleet.client import Client
from tests.cluster import Cluster


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    clear_caches()  # the jobs scan of an earlier scrape in this process would hide the job
    body, _ = render_metrics(client.settings, client.store, client.celery_app)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_and_readiness_on_the_cluster(
    cluster: Cluster, tmp_path: Path, astronaut_bgr
) -> None:
    import cv2

    client = Client(cluster.settings())
    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr)
    images = ("facefleet_frames_processed_total", (("kind", "images"),))
    faces = ("facefleet_faces_processed_total", (("kind", "images"),))
    chunks = ("facefleet_chunks_total", (("kind", "images"),))
    before = scrape(client)

    job = client.submit_images([image], gallery=None)
    assert job.wait(timeout=300).state == "done"

    after = scrape(client)
    # Other tests share this cluster's counters: compare with the scrape before the job.
    assert after[images] == before.get(images, 0) + 1
    assert after[faces] >= before.get(faces, 0) + 1  # Eileen Collins
    assert after[chunks] == before.get(chunks, 0) + 1
    inf = ("facefleet_chunk_fps_bucket", (("kind", "images"), ("le", "+Inf")))
    assert after[inf] == after[("facefleet_chunk_fps_count", (("kind", "images"),))]
    assert after[inf] >= 1
    for queue in ("gpu", "cpu"):
        assert ("facefleet_queue_depth", (("queue", queue),)) in after
    assert after[("facefleet_workers_alive", ())] >= 1
    assert after[("facefleet_jobs", (("state", "done"),))] >= 1
    for dependency in ("broker", "store"):
        assert after[("facefleet_dependency_up", (("dependency", dependency),))] == 1

    report = check_ready(client.settings, client.store)
    assert report.checks["broker"].ok, report
    assert report.checks["store"].ok, report
    if "FACEFLEET_ARCHIVE_URL" in cluster.env:
        # The local stack's PostgreSQL: reachable, and the index sizes exported.
        assert report.ok, report
        assert report.checks["database"].detail == "SELECT 1 answered"
        assert after[("facefleet_archive_up", ())] == 1
        assert ("facefleet_archive_tracks", ()) in after
        assert after[("facefleet_dependency_up", (("dependency", "database"),))] == 1
