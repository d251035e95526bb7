"""A job whose end could not be announced (the broker was down as it ended, so its delivery
task was never queued) is announced by beat's `facefleet.announce_lost`: once, with the
event id it would have had, only within a day of its end, never for a job without a callback
URL, not ended, or already delivered. In-process (the tasks run eagerly) on a folder store,
to a receiver on 127.0.0.1."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from facefleet.client import Client
from facefleet.jobs.records import JobKeys, JobStatus, now
from facefleet.jobs.storage import ObjectStore
from facefleet.jobs.webhooks import event_for, needs_announcement, read_webhook_log
from tests.test_webhooks import (
    Receiver,
    _deliver,
    _ended_job,
    _settings,
    check_signed,
    serve_receiver,
)

TWO_DAYS_S = 2 * 24 * 3600


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as server:
        yield server


def _ended_long_ago(store: ObjectStore, job_id: str, touch_files: bool) -> None:
    """The job's status says it ended two days ago; its files were written then too, or
    (`touch_files`) recently (e.g. a log written since)."""
    keys = JobKeys(job_id)
    status = store.get_model(keys.status, JobStatus)
    ended = now() - timedelta(seconds=TWO_DAYS_S)
    store.put_model(keys.status, status.model_copy(update={"updated": ended}))
    if not touch_files:
        then = time.time() - TWO_DAYS_S
        for path in (Path(store.location) / keys.root).rglob("*"):
            os.utime(path, (then, then))


def test_lost_announcements_are_sent_once(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path)
    client = Client(settings)
    store = client.store
    hook = receiver.url + "/{}"
    # What jobs that ended while the broker was down leave: a final status, no webhook log.
    lost = _ended_job(store, hook.format("lost"))
    failed = _ended_job(store, hook.format("failed"), state="failed")
    # Jobs the check must leave alone.
    no_callback = _ended_job(store, None)
    _ended_job(store, hook.format("running"), state="running")
    old = _ended_job(store, hook.format("old"))
    _ended_long_ago(store, old, touch_files=False)
    old_touched = _ended_job(store, hook.format("old-touched"))
    _ended_long_ago(store, old_touched, touch_files=True)
    delivered = _ended_job(store, hook.format("delivered"))
    _deliver(settings, store, delivered)  # announced as it ended, as normally
    assert len(receiver.to("/delivered")) == 1
    assert needs_announcement(store, lost) and needs_announcement(store, old)

    announced = client._run("facefleet.announce_lost", []).get()

    assert sorted(announced) == sorted([lost, failed])
    for job_id, path, kind in ((lost, "/lost", "job.done"), (failed, "/failed", "job.failed")):
        (request,) = receiver.to(path)
        event = check_signed(request)
        status = store.get_model(JobKeys(job_id).status, JobStatus)
        assert event.type == kind and event.job_id == job_id
        assert event.id == event_for(status).id  # the id its first announcement had
        record = read_webhook_log(store, job_id)
        assert record is not None and record.delivered and len(record.deliveries) == 1
    for path in ("/running", "/old", "/old-touched"):
        assert receiver.to(path) == []
    assert len(receiver.to("/delivered")) == 1
    assert read_webhook_log(store, no_callback) is None

    # The next check finds nothing left to announce and sends nothing again.
    assert client._run("facefleet.announce_lost", []).get() == []
    assert len(receiver.to("/lost")) == 1 and len(receiver.to("/failed")) == 1
    assert client._run("facefleet.resume_stalled", []).get() == []  # nothing stalled either


def test_beat_fires_the_check_even_with_resuming_off(tmp_path: Path) -> None:
    settings = _settings(tmp_path, stall_check_s=120, resume_stalled_after_s=0)
    beat = Client(settings).celery_app.conf.beat_schedule
    assert beat["facefleet-announce-lost"]["task"] == "facefleet.announce_lost"
    assert beat["facefleet-announce-lost"]["schedule"].run_every.total_seconds() == 120
    assert "facefleet-resume-stalled" not in beat
