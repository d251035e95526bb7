"""Webhook delivery: `facefleet.webhook_deliver(job_id)` POSTs a finished job's signed event
(facefleet.jobs.webhooks) to its callback URL and records each attempt in
`jobs/<id>/webhook.json`.

A 2xx answer ends it. Anything else (another status, a redirect: redirects are not
followed, a timeout, a refused connection) is retried after `webhook_backoff_s * 2**n`
seconds (at most 10 minutes) until `webhook_max_attempts` attempts were made; then the
log says `gave_up`. Retries are Celery retries with a countdown, under the deterministic
task id `webhook-<job_id>`, each carrying the attempt number it is meant to make.

Idempotent: a delivered or given-up log ends the task at once; a copy that is not the
chain's next attempt (a duplicate announcement, a redelivered retry) does nothing; a Redis
lock keeps two copies from posting at the same moment. Delivery is still at least once
(a worker can die between the receiver's 2xx and the log write): receivers deduplicate
on `Facefleet-Event-Id`.

In-process mode (no broker, tasks run eagerly in the SDK's process): there is no worker to
run a retry later and a countdown there would block the caller, so the attempts are made
back to back, without waiting, and at most IN_PROCESS_ATTEMPTS of them; the log then says
`gave_up` if none got a 2xx.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import Task

from facefleet import __version__
from facefleet.core.settings import Settings
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import check_job_id, now
from facefleet.jobs.storage import ObjectNotFound, ObjectStore
from facefleet.jobs.webhooks import (
    ATTEMPT_HEADER,
    DELIVER_TASK,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookDelivery,
    WebhookLog,
    backoff_s,
    delivery_task_id,
    event_for,
    needs_announcement,
    read_webhook_log,
    sign,
    write_webhook_log,
)
from facefleet.tasks.app import app
from facefleet.tasks.locks import LockBusy, cluster_lock
from facefleet.tasks.runtime import Runtime, get_runtime

log = logging.getLogger("facefleet.tasks.webhooks")

IN_PROCESS_ATTEMPTS = 3
# A fresh announcement that finds attempts already made leaves them to the chain of
# retries in flight, unless its next attempt is overdue by this much (the retry was lost,
# e.g. a broker restarted without persistence): then it carries on from there.
LOST_CHAIN_AFTER_S = 300.0
_ERROR_CHARS = 500


def announce_end(settings: Settings, store: ObjectStore, job_id: str) -> None:
    """Send the delivery task when the job has ended, has a callback URL and its event is
    not yet delivered. Called where jobs end; never raises (the job's end stands even when
    its announcement cannot be sent: the error is logged). `settings` are the deployment's,
    as every step has them; the task reads its own from the runtime where it runs."""
    try:
        if not needs_announcement(store, job_id):
            return
        webhook_deliver.apply_async(args=[job_id], task_id=delivery_task_id(job_id))
    except Exception:
        log.exception("job %s: could not send the task that delivers its webhook", job_id)


def _post(settings: Settings, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status code; the response body is never read."""
    import httpx

    # trust_env off: the settings are the only configuration read (no proxy from env).
    with (
        httpx.Client(
            timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
        ) as client,
        client.stream("POST", url, content=body, headers=headers) as response,
    ):
        return response.status_code


def _attempt(rt: Runtime, log_: WebhookLog, number: int) -> WebhookDelivery:
    settings = rt.settings
    body = log_.event.model_dump_json().encode()
    started = time.perf_counter()
    at = now()
    status_code: int | None = None
    error: str | None = None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        error = "FACEFLEET_WEBHOOK_SECRET is not set where this task ran: not sent unsigned"
    else:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret.encode(), int(time.time()), body),
            EVENT_ID_HEADER: log_.event.id,
            ATTEMPT_HEADER: str(number),
            "User-Agent": f"facefleet-webhooks/{__version__}",
        }
        try:
            status_code = _post(settings, log_.url, body, headers)
        except Exception as exc:  # any failure to get an answer is one failed attempt
            error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
        else:
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}" + (
                    " (redirects are not followed)" if 300 <= status_code < 400 else ""
                )
    return WebhookDelivery(
        attempt=number,
        at=at,
        url=log_.url,
        status_code=status_code,
        error=error,
        ok=error is None,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def deliver_once(
    rt: Runtime, job_id: str, attempt: int | None, max_attempts: int
) -> tuple[int, float] | None:
    """Make the job's next delivery attempt if it is this copy's to make (`attempt`: the
    number a retry is meant to make; None: a fresh announcement). Returns the attempt made
    and the seconds to wait before the next one, or None when there is none to schedule."""
    job = JobStore(rt.store, job_id)
    try:
        spec, status = job.spec(), job.status()
    except ObjectNotFound:
        return None  # deleted meanwhile
    if not spec.callback_url or not status.finished:
        return None
    record = read_webhook_log(rt.store, job_id)
    if record is None:
        record = WebhookLog(event=event_for(status), url=spec.callback_url)
    if record.delivered or record.gave_up:
        return None
    made = len(record.deliveries)
    if attempt is None:
        overdue = record.next_attempt is not None and now() > record.next_attempt + timedelta(
            seconds=LOST_CHAIN_AFTER_S + rt.settings.webhook_timeout_s
        )
        if made and not overdue:
            return None  # a chain of retries is in flight
    elif attempt != made + 1:
        return None  # that attempt was made already (a redelivered or duplicated retry)
    number = made + 1
    delivery = _attempt(rt, record, number)
    record.deliveries.append(delivery)
    retry: tuple[int, float] | None = None
    if delivery.ok:
        record.delivered = True
        record.next_attempt = None
    elif number >= max_attempts:
        record.gave_up = True
        record.next_attempt = None
    else:
        retry = (number, backoff_s(rt.settings, number))
        record.next_attempt = now() + timedelta(seconds=retry[1])
    write_webhook_log(rt.store, job_id, record)
    log.log(
        logging.INFO if delivery.ok else logging.WARNING,
        "job %s: webhook attempt %d to %s: %s%s",
        job_id,
        number,
        record.url,
        delivery.status_code if delivery.ok else delivery.error,
        " (given up)" if record.gave_up else "",
    )
    return retry


# max_retries=None: the log bounds the attempts (webhook_max_attempts), not Celery's count,
# which also counts the short waits for a lock that another copy holds.
@app.task(bind=True, name=DELIVER_TASK, acks_late=True, max_retries=None)
def webhook_deliver(self: Task, job_id: str, attempt: int | None = None) -> str:
    """The job's next delivery attempt (in-process: all of them); says what it did."""
    rt = get_runtime()
    check_job_id(job_id)
    settings = rt.settings
    eager = bool(self.request.is_eager)
    max_attempts = settings.webhook_max_attempts
    if eager:
        max_attempts = min(max_attempts, IN_PROCESS_ATTEMPTS)
    try:
        # Held while posting: two copies never post the same event at the same moment.
        with cluster_lock(f"webhook:{job_id}", ttl_s=settings.webhook_timeout_s + 60, wait_s=0.5):
            retry = deliver_once(rt, job_id, attempt, max_attempts)
            while eager and retry is not None:
                # No later worker will run a retry here, and waiting would block the
                # caller: the remaining attempts follow at once.
                retry = deliver_once(rt, job_id, retry[0] + 1, max_attempts)
    except LockBusy:
        if attempt is None or eager:
            return "busy: another copy is delivering"
        # A scheduled retry must not be lost to a copy that only looked: try again soon
        # (if that copy made this attempt, the retry finds it made and stops).
        raise self.retry(
            args=[job_id], kwargs={"attempt": attempt}, countdown=settings.webhook_timeout_s
        ) from None
    if retry is None:
        return "done"
    made, delay = retry
    raise self.retry(args=[job_id], kwargs={"attempt": made + 1}, countdown=delay)
