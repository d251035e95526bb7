"""Jobs whose queued tasks were lost are published again (`facefleet.resume_stalled`, fired
by beat); here in-process on a local store, in tests/faults after a real Redis restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import pytest

from facefleet.client import Client
from facefleet.core.settings import get_settings
from facefleet.jobs.job_store import JobStore, job_activity
from facefleet.jobs.records import JobInput, JobKeys, JobSpec, JobStatus, new_job_id
from facefleet.tasks.app import make_app


@pytest.fixture()
def client(tmp_path: Path) -> Client:
    return Client(get_settings(store_dir=tmp_path / "store", resume_stalled_after_s=600))


def _recorded_job(client: Client, photo: Path) -> str:
    """An image job as submit leaves it (input uploaded, spec, status queued) whose first
    task never reached a worker: what a broker restarted without persistence leaves."""
    job_id = new_job_id()
    keys = JobKeys(job_id)
    key = keys.input(photo.name)
    client.store.put_file(key, photo)
    inputs = [JobInput(key=key, name=photo.stem, source=photo.name, size=photo.stat().st_size)]
    client.store.put_model(keys.spec, JobSpec(job_id=job_id, kind="images", inputs=inputs))
    client.store.put_model(keys.status, JobStatus(job_id=job_id, kind="images", state="queued"))
    return job_id


def _age(client: Client, job_id: str, seconds: float) -> None:
    """Make everything the job wrote look `seconds` old."""
    root = Path(client.settings.store_dir) / "jobs" / job_id
    then = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (then, then))


def test_only_stalled_unfinished_jobs_are_resumed(
    client: Client, tmp_path: Path, astronaut_bgr
) -> None:
    photo = tmp_path / "collins.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    lost, fresh, failed = (_recorded_job(client, photo) for _ in range(3))
    JobStore(client.store, failed).fail("gave up")
    _age(client, lost, 3600)
    _age(client, failed, 3600)
    assert sorted(job_activity(client.store)) == sorted([lost, fresh, failed])
    last = JobStore(client.store, lost).last_activity()
    assert last is not None and time.time() - last.timestamp() == pytest.approx(3600, abs=5)

    resumed = client._run("facefleet.resume_stalled", []).get()

    assert resumed == [lost]
    status = client.job(lost).status()
    assert status.state == "done", status.message
    result = json.loads(client.store.get_bytes(JobKeys(lost).output("collins.json")))
    assert len(result["faces"]) == 1  # the astronaut's face, found by the resumed job
    assert client.job(fresh).status().state == "queued"  # silent for less than 600 s
    assert client.job(failed).status().state == "failed"
    # Resuming counts as activity: the next check leaves the job alone.
    assert client._run("facefleet.resume_stalled", []).get() == []


def test_beat_fires_the_check_unless_turned_off() -> None:
    entry = make_app(get_settings(stall_check_s=120)).conf.beat_schedule["facefleet-resume-stalled"]
    assert entry["task"] == "facefleet.resume_stalled"
    assert entry["schedule"].run_every.total_seconds() == 120
    off = make_app(get_settings(resume_stalled_after_s=0)).conf.beat_schedule
    assert "facefleet-resume-stalled" not in off
