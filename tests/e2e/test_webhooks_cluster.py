"""Webhooks on the real cluster: jobs with a callback URL, their events posted by the
workers' `facefleet.webhook_deliver` task (signed, retried with backoff) to a receiver on
127.0.0.1, every attempt recorded in jobs/<id>/webhook.json."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facefleet.client import Client
from facefleet.jobs.records import JobKeys, JobSpec
from facefleet.jobs.webhooks import WebhookLog, read_webhook_log
from tests.cluster import Cluster
from tests.test_webhooks import Receiver, check_signed, serve_receiver

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Client:
    return Client(cluster.settings())


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as server:
        yield server


def _secret(client: Client) -> bytes:
    assert client.settings.webhook_secret is not None
    return client.settings.webhook_secret.get_secret_value().encode()


def _settled_log(client: Client, job_id: str, timeout: float = 30) -> WebhookLog:
    """The job's webhook log once it is delivered or given up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = read_webhook_log(client.store, job_id)
        if log is not None and (log.delivered or log.gave_up):
            return log
        time.sleep(0.1)
    last = read_webhook_log(client.store, job_id)
    raise TimeoutError(f"job {job_id}: webhook not settled: {last}")


def test_done_event_is_signed_retried_and_logged(
    client: Client, receiver: Receiver, data_root: Path
) -> None:
    # The receiver fails the first attempt: the worker retries after the backoff.
    receiver.answer = lambda path, n: 500 if n == 1 else 200
    image = data_root / "images" / "misc" / "two_people.jpg"
    job = client.submit_images([image], gallery=None, callback_url=receiver.url + "/done")
    assert client.store.get_model(JobKeys(job.id).spec, JobSpec).callback_url == (
        receiver.url + "/done"
    )
    status = job.wait(timeout=60)
    assert status.state == "done", status.message
    log = _settled_log(client, job.id)
    assert log.delivered and not log.gave_up
    assert [d.status_code for d in log.deliveries] == [500, 200]
    assert [d.attempt for d in log.deliveries] == [1, 2]
    # The second attempt came after the backoff (FACEFLEET_WEBHOOK_BACKOFF_S=0.2).
    gap = (log.deliveries[1].at - log.deliveries[0].at).total_seconds()
    assert gap >= 0.2, gap
    first, second = receiver.to("/done")
    event = check_signed(second, _secret(client))
    assert check_signed(first, _secret(client)) == event  # same event, each signed
    assert event.type == "job.done" and event.job_id == job.id and event.kind == "images"
    assert event.outputs == status.outputs and event.summary == status.summary
    assert log.event == event
    time.sleep(0.5)
    assert len(receiver.to("/done")) == 2  # nothing more once delivered


def test_cancelled_job_posts_job_cancelled(
    client: Client, receiver: Receiver, data_root: Path
) -> None:
    images = sorted((data_root / "images" / "misc").glob("*.jpg"))
    job = client.submit_images(images, gallery=None, callback_url=receiver.url + "/cancel")
    status = job.cancel()
    assert status.state == "cancelled"
    log = _settled_log(client, job.id)
    assert log.delivered and [d.status_code for d in log.deliveries] == [200]
    (request,) = receiver.wait("/cancel", 1, 5)
    event = check_signed(request, _secret(client))
    assert event.type == "job.cancelled" and event.job_id == job.id
    assert event.state == "cancelled" and event.outputs == []
    time.sleep(1.0)  # steps still queued end without posting again
    assert len(receiver.to("/cancel")) == 1
