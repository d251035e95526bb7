"""The fault suite: real Redis, a real S3 server and real worker processes, disturbed on
purpose. Each scenario asserts the end state: job status, the objects in S3, identical
output, clear error text."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.jobs import JobKeys
from facefleet.client import Client, Job
from tests.cluster import Cluster, child_pids, running_cluster, stack

pytestmark = pytest.mark.data
CHUNK = 50  # trump.mp4 (243 frames) -> 5 chunks


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        # Short enough that a task of a dead worker comes back within the test.
        "FACEFLEET_VISIBILITY_TIMEOUT_S": "20",
        "FACEFLEET_MAX_DELIVERIES": "2",
        "FACEFLEET_TASK_MAX_RETRIES": "8",
    }
    with running_cluster(tmp_path_factory.mktemp("faults"), env) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: Cluster, data_root: Path) -> Client:
    client = Client(cluster.settings())
    gallery = data_root / "videos" / "trump_speech" / "gallery"
    for person in sorted(gallery.iterdir()):
        client.gallery.enroll(person.name, sorted(person.iterdir()))
    return client


@pytest.fixture(scope="module")
def video(data_root: Path) -> Path:
    return data_root / "videos" / "trump_speech" / "trump.mp4"


@pytest.fixture(scope="module")
def reference(client: Client, video: Path) -> dict:
    """The undisturbed run every disturbed one must reproduce."""
    job = client.submit_video(video, chunk_frames=CHUNK)
    assert job.wait(timeout=600).state == "done"
    return _result(client, job)


def _result(client: Client, job: Job) -> dict:
    keys = JobKeys(job.id)
    data = json.loads(client.store.get_bytes(keys.output("trump.json")))
    return {"tracks": data["tracks"], "frames": data["frames"]}


def _assert_done_like(client: Client, job: Job, reference: dict) -> None:
    status = job.wait(timeout=600)
    assert status.state == "done", status.message
    assert _result(client, job) == reference
    keys = JobKeys(job.id)
    assert sorted(client.store.list(keys.outputs())) == sorted(status.outputs)
    assert not client.store.list(keys.chunks()) and not client.store.list(keys.parts())


def _wait_for_task(cluster: Cluster, task: str, since: dict[str, int], timeout: float = 120) -> str:
    """The worker that received `task` after the log sizes in `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ("w1", "w2"):
            if f"{task}[" in cluster.log(name)[since.get(name, 0) :]:
                return name
        time.sleep(0.1)
    raise TimeoutError(f"no worker received {task}")


def _log_sizes(cluster: Cluster) -> dict[str, int]:
    return {name: len(cluster.log(name)) for name in cluster.processes}


def test_killed_pool_process_mid_chunk(cluster: Cluster, client: Client, video: Path, reference):
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    worker = _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    time.sleep(1.0)
    (child,) = child_pids(cluster.processes[worker].pid)
    os.kill(child, signal.SIGKILL)
    _assert_done_like(client, job, reference)
    assert "WorkerLostError" in cluster.log(worker)[since[worker] :]


def test_killed_whole_worker_then_new_worker(
    cluster: Cluster, client: Client, video: Path, reference
):
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    worker = _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    time.sleep(1.0)
    proc = cluster.processes.pop(worker)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its pool: nothing acks
    proc.wait(timeout=10)
    # Its unacknowledged chunk comes back after the visibility timeout (20 s here).
    cluster.start_worker(worker)
    _assert_done_like(client, job, reference)


def test_duplicate_delivery_is_harmless(cluster: Cluster, client: Client, video: Path, reference):
    job = client.submit_video(video, chunk_frames=CHUNK)
    celery = client._celery()
    # The same chunk task published twice more while the job runs.
    for _ in range(2):
        celery.send_task("facefleet.analyze_chunk", args=[job.id, 0])
        celery.send_task("facefleet.analyze_chunk", args=[job.id, 1])
    _assert_done_like(client, job, reference)
    # Every step of a finished job published again: nothing changes.
    before = {k: client.store.get_bytes(k) for k in job.status().outputs}
    for name, args in [
        ("facefleet.plan_video", [job.id]),
        ("facefleet.analyze_chunk", [job.id, 2]),
        ("facefleet.merge_video", [job.id]),
        ("facefleet.render_chunk", [job.id, 0]),
        ("facefleet.finalize_video", [job.id]),
    ]:
        celery.send_task(name, args=args).get(timeout=60)
    assert {k: client.store.get_bytes(k) for k in job.status().outputs} == before
    assert len(_result(client, job)["tracks"]) == len(reference["tracks"])


def test_s3_down_during_job(cluster: Cluster, client: Client, video: Path, reference):
    record = json.loads((cluster.workdir / "stack.json").read_text())
    (s3,) = [stack.Service.from_json(s) for s in record["services"] if s["kind"] == "s3"]
    env = cluster.env
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    stack.stop_service(s3)
    time.sleep(8)  # tasks meet the outage and retry with backoff
    restarted = stack.start_s3(
        cluster.workdir,
        s3.port,
        access_key=env["FACEFLEET_S3_ACCESS_KEY"],
        secret_key=env["FACEFLEET_S3_SECRET_KEY"],
        bucket=env["FACEFLEET_S3_BUCKET"],
    )
    record["services"] = [
        restarted.to_json() if s["kind"] == "s3" else s for s in record["services"]
    ]
    (cluster.workdir / "stack.json").write_text(json.dumps(record))
    _assert_done_like(client, job, reference)
    assert "Retry in" in cluster.log("w1") + cluster.log("w2")


def test_poison_chunk_fails_the_job_after_bounded_attempts(
    cluster: Cluster, client: Client, video: Path
):
    """A chunk whose worker dies every time it runs it ends the job as failed."""
    job = client.submit_video(video, chunk_frames=CHUNK)
    keys = JobKeys(job.id)
    deadline = time.monotonic() + 300
    kills = 0
    while not job.status().finished:
        assert time.monotonic() < deadline, "the job kept running"
        for name in ("w1", "w2"):
            proc = cluster.processes.get(name)
            children = child_pids(proc.pid) if proc else []
            # Kill a pool process whenever it holds chunk 0 (it has not written its result).
            if (
                children
                and _holds_chunk0(cluster, name, job.id)
                and not client.store.exists(keys.chunk_result(0))
            ):
                os.kill(children[0], signal.SIGKILL)
                kills += 1
                time.sleep(1.0)
        time.sleep(0.2)
    status = job.status()
    assert status.state == "failed"
    assert "worker died" in (status.message or "") and "poison" in (status.message or "")
    assert not client.store.list(keys.outputs()) and not client.store.list(keys.chunks())
    assert 2 <= kills <= 4


def _holds_chunk0(cluster: Cluster, name: str, job_id: str) -> bool:
    """The worker's last analyze line is chunk 0 of this job, received and not finished."""
    log = cluster.log(name)
    marker = "facefleet.analyze_chunk["
    last = log.rfind(marker)
    if last < 0:
        return False
    line = log[last : log.find("\n", last)]
    return f"'{job_id}', 0" in line and "received" in line
