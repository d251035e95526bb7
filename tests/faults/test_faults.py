"""The fault suite: real Redis, a real S3 server and real worker processes, disturbed on
purpose. Each scenario asserts the end state: job status, the objects in S3, identical
output, clear error text."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facefleet import localstack
from facefleet.client import Client, Job
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import JobKeys, now
from tests.cluster import Cluster, child_pids, running_cluster
from tests.data import shared_data_root

pytestmark = pytest.mark.data
CHUNK = 50  # trump.mp4 (243 frames) -> 3 chunks (ranges end on its keyframe at 160)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        "FACEFLEET_LFW_DIR": str(shared_data_root() / "lfw"),  # for the training scenario
        # Short enough that a task of a dead worker comes back within the test.
        "FACEFLEET_VISIBILITY_TIMEOUT_S": "20",
        "FACEFLEET_MAX_DELIVERIES": "2",
        "FACEFLEET_TASK_MAX_RETRIES": "8",
        # Chord counters expire with the results: well above the redelivery delay.
        "FACEFLEET_RESULT_EXPIRES_S": "600",
        "FACEFLEET_TRAIN_LOCK_TTL_S": "10",
        # The watchdog only runs when a scenario sends it (no beat here).
        "FACEFLEET_RESUME_STALLED_AFTER_S": "20",
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


def _wait_for_task(
    cluster: Cluster,
    task: str,
    since: dict[str, int],
    timeout: float = 120,
    workers: tuple[str, ...] = ("w1", "w2"),
) -> str:
    """The worker (of `workers`) that received `task` after the log sizes in `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in workers:
            if f"{task}[" in cluster.log(name)[since.get(name, 0) :]:
                return name
        time.sleep(0.1)
    raise TimeoutError(f"no worker received {task}")


def _active(cluster: Cluster) -> dict[str, list[dict]]:
    """The tasks each worker runs now. kombu pools connections process-wide, and an
    earlier scenario restarts Redis: a stale pooled connection fails once, then is
    replaced, so ask again."""
    import redis
    from kombu.exceptions import OperationalError

    from facefleet.tasks.app import make_app

    for _ in range(5):
        try:
            return make_app(cluster.settings()).control.inspect(timeout=1.0).active() or {}
        except (redis.RedisError, OperationalError, OSError):
            time.sleep(0.5)
    raise AssertionError("cannot inspect the workers")


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


def test_replacement_pool_process_may_load_slowly(
    cluster: Cluster, client: Client, video: Path, reference, tmp_path: Path
):
    """A pool process that replaces a crashed one loads its models before it reports for
    work. On a busy machine, or with a large model, that takes longer than Celery's 4 s
    default, after which Celery would kill it and start another, forever: the worker would
    never work again. Here loading takes 8 s more than usual."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import time\n"
        "from celery.signals import worker_process_init\n"
        "worker_process_init.connect(lambda **_: time.sleep(8), weak=False)\n"
    )
    since = _log_sizes(cluster)
    cluster.stop("w1")
    try:
        cluster.start_worker("w1", extra_env={"PYTHONPATH": str(slow)})
        cluster.wait_log("w1", "models ready", 120, since=since["w1"])
        since["w1"] = len(cluster.log("w1"))
        job = client.submit_video(video, chunk_frames=CHUNK)
        _wait_for_task(cluster, "facefleet.analyze_chunk", since, workers=("w1",))
        time.sleep(1.0)
        (child,) = child_pids(cluster.processes["w1"].pid)
        os.kill(child, signal.SIGKILL)
        _assert_done_like(client, job, reference)
        # The replacement came up and loaded its models; nothing killed it for being slow.
        cluster.wait_log("w1", "models ready", 60, since=since["w1"])
        log = cluster.log("w1")[since["w1"] :]
        assert "WorkerLostError" in log
        assert "Timed out waiting for UP message" not in log
    finally:
        cluster.stop("w1")
        cluster.start_worker("w1")


def test_killed_whole_worker_then_new_worker(
    cluster: Cluster, client: Client, video: Path, reference
):
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    worker = _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    time.sleep(1.0)
    service = cluster.processes.pop(worker)
    os.killpg(service.pid, signal.SIGKILL)  # the main process and its pool: nothing acks
    assert localstack.wait_for_exit(service.pid, 10)
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
    (s3,) = [localstack.Service.from_json(s) for s in record["services"] if s["kind"] == "s3"]
    env = cluster.env
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    localstack.stop_service(s3)
    time.sleep(8)  # tasks meet the outage and retry with backoff
    restarted = localstack.start_s3(
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
    import redis

    from facefleet.tasks.common import delivery_key

    limit = int(cluster.env["FACEFLEET_MAX_DELIVERIES"])
    broker = redis.Redis.from_url(cluster.env["FACEFLEET_BROKER_URL"])
    job = client.submit_video(video, chunk_frames=CHUNK)
    keys = JobKeys(job.id)
    deadline = time.monotonic() + 300
    killed: set[tuple[str, int]] = set()
    while not job.status().finished:
        assert time.monotonic() < deadline, "the job kept running"
        # Whichever pool process analyses chunk 0 of this job dies, every time. A poison
        # input kills its worker in the analysis, so only starts that get past the delivery
        # check die: the one over the limit must be left to fail the job (it cleans S3
        # first, which takes a while on a slow machine).
        for tasks in _active(cluster).values():
            for task in tasks:
                victim = (task["id"], task["worker_pid"])
                if (
                    task["name"] != "facefleet.analyze_chunk"
                    or task["args"] != [job.id, 0]
                    or victim in killed
                ):
                    continue
                starts = int(broker.get(delivery_key(task["id"], 0)) or 0)
                if starts == len(killed) + 1 <= limit:  # counted, so past the check
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(task["worker_pid"], signal.SIGKILL)
                    killed.add(victim)
        time.sleep(0.3)
    broker.close()
    status = job.status()
    assert status.state == "failed"
    assert "worker died" in (status.message or "") and "poison" in (status.message or "")
    assert not client.store.list(keys.outputs()) and not client.store.list(keys.chunks())
    assert len(killed) == limit  # the start after the limit fails the job


def test_pickle_message_is_refused(cluster: Cluster, client: Client) -> None:
    from facefleet.jobs.records import JobSpec, JobStatus, new_job_id

    job_id = new_job_id()
    keys = JobKeys(job_id)
    client.store.put_model(keys.spec, JobSpec(job_id=job_id, kind="video", inputs=[]))
    client.store.put_model(keys.status, JobStatus(job_id=job_id, kind="video", state="queued"))
    since = _log_sizes(cluster)
    client._celery().send_task("facefleet.plan_video", args=[job_id], serializer="pickle")
    # Generous: the workers may still be finishing chunks of the scenario before.
    deadline = time.monotonic() + 120
    logs = ""
    while "untrusted content" not in logs:
        assert time.monotonic() < deadline, "no worker refused the pickle message"
        time.sleep(0.3)
        logs = "".join(cluster.log(n)[since.get(n, 0) :] for n in ("w1", "w2"))
    assert "pickle" in logs
    assert client.job(job_id).status().state == "queued"  # the task never ran


def test_redis_restart_during_job(cluster: Cluster, client: Client, video: Path, reference):
    """Redis restarted without persistence (as the local stack runs it): workers reconnect;
    queued tasks are lost, so the job stalls, and the watchdog that beat fires publishes it
    again: it finishes from what is in S3. (Compose runs Redis with appendonly, which keeps
    the queue across restarts.)"""
    from urllib.parse import urlsplit

    record = json.loads((cluster.workdir / "stack.json").read_text())
    (redis,) = [localstack.Service.from_json(s) for s in record["services"] if s["kind"] == "redis"]
    password = urlsplit(cluster.env["FACEFLEET_BROKER_URL"]).password
    since = _log_sizes(cluster)
    job = client.submit_video(video, chunk_frames=CHUNK)
    _wait_for_task(cluster, "facefleet.analyze_chunk", since)
    localstack.stop_service(redis)
    time.sleep(3)
    restarted = localstack.start_redis(cluster.workdir, redis.port, password)
    record["services"] = [
        restarted.to_json() if s["kind"] == "redis" else s for s in record["services"]
    ]
    (cluster.workdir / "stack.json").write_text(json.dumps(record))
    # Give the workers time to reconnect and finish what they still hold.
    deadline = time.monotonic() + 90
    while not job.status().finished and time.monotonic() < deadline:
        time.sleep(1)
    since = _log_sizes(cluster)
    stalled = not job.status().finished
    if stalled:
        assert job.status().state == "running"  # stalled, not falsely done
        # What beat fires every FACEFLEET_STALL_CHECK_S: once the job has written nothing
        # for FACEFLEET_RESUME_STALLED_AFTER_S (20 s here), it is published again.
        records = JobStore(client.store, job.id)
        while (now() - records.last_activity()).total_seconds() < 25:  # type: ignore[operator]
            time.sleep(1)
        client._celery().send_task("facefleet.resume_stalled")
        _wait_for_task(cluster, "facefleet.resume_stalled", since)
    _assert_done_like(client, job, reference)
    if stalled:
        logs = "".join(cluster.log(n)[since.get(n, 0) :] for n in ("w1", "w2"))
        assert f"job {job.id}: nothing written for" in logs


def test_load_fifty_jobs_and_no_redis_leak(
    cluster: Cluster, client: Client, tmp_path: Path, astronaut_bgr
) -> None:
    """50 short jobs at once on 2 workers all finish with the right names; every result and
    chord key carries its expiry and no delivery counter is left: nothing leaks."""
    import cv2
    import redis

    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr)
    client.gallery.enroll("Eileen_Collins", [image], gallery="load")
    db = redis.Redis.from_url(cluster.env["FACEFLEET_BROKER_URL"])
    jobs = [client.submit_images([image], gallery="load") for _ in range(50)]
    for job in jobs:
        status = job.wait(timeout=900)
        assert status.state == "done", status.message
        assert status.summary == {"astronaut": ["Eileen_Collins"]}
    # Every result and chord key expires (within FACEFLEET_RESULT_EXPIRES_S), so Redis
    # returns to its starting level; delivery counters are deleted as tasks end.
    expires = int(cluster.env["FACEFLEET_RESULT_EXPIRES_S"])
    results = db.keys("celery-task-meta-*") + db.keys("*.j") + db.keys("*.t")
    assert results
    left = [k.decode() for k in results if not 0 < db.ttl(k) <= expires]
    left += [k.decode() for k in db.keys("facefleet:deliveries:*")]
    assert not left, left[:10]


def test_training_killed_mid_epoch_resumes_from_s3(cluster: Cluster, client: Client) -> None:
    """The pool process running `train` is SIGKILLed after its first checkpoint reached
    S3: the task comes back, waits for the dead copy's lock to expire, resumes from the
    checkpoint in S3, and every epoch appears exactly once in the metrics."""
    run = client.train(run="fault-resume", epochs=8, max_people=40, batch_size=16, lr=3e-3)
    prefix = "training/fault-resume/"
    deadline = time.monotonic() + 600
    while not client.store.exists(prefix + "latest.pt"):
        assert time.monotonic() < deadline, "no checkpoint reached S3"
        time.sleep(0.5)
    pids = [
        task["worker_pid"]
        for tasks in _active(cluster).values()
        for task in tasks
        if task["name"] == "facefleet.train"
    ]
    assert len(pids) == 1
    progress_at_kill = run.progress()
    os.kill(pids[0], signal.SIGKILL)
    final = run.wait(timeout=900)
    assert final.state == "done", final.message
    assert progress_at_kill is not None and progress_at_kill.epoch < 8
    assert [e.epoch for e in final.evaluations] == list(range(1, 9))
    logs = cluster.log("w1") + cluster.log("w2")
    assert "resuming after epoch" in logs
    metrics = client.store.get_bytes(prefix + "metrics.jsonl").decode().splitlines()
    epochs = [json.loads(line)["epoch"] for line in metrics if '"type": "epoch"' in line]
    assert epochs == list(range(1, 9))
    logs_after = cluster.log("w1") + cluster.log("w2")
    assert "could not extend" not in logs_after  # the heartbeat kept the lock
