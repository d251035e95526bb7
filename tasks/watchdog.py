"""Beat's periodic checks of the job store: stalled jobs published again, lost webhook
announcements sent again, expired uploads deleted. Thin adapters: what to do is decided in
facefleet.jobs.

Stalled jobs are published again. A broker that restarts without persistence loses the
queued tasks of the jobs in flight, and nothing else would ever run them: celery beat fires
`resume_stalled` every `FACEFLEET_STALL_CHECK_S`, and a job that is not finished and has
written nothing for `FACEFLEET_RESUME_STALLED_AFTER_S` gets its first step published again.
Every step skips what the store already holds, so the job continues where it stopped. A
job that was only waiting in a long queue costs one quick extra pass, at most once per
interval, because resuming writes its status (and so counts as activity).

A job's end is announced once, as it ends; if the broker was down then, its delivery task
was never queued. `announce_lost`, fired on the same interval, sends it for every job that
ended within ANNOUNCE_WITHIN_S and whose event is neither delivered nor given up. Sending
it again is safe: the event id is stable per job and event, and a copy that finds a chain
of retries in flight does nothing.

Presigned uploads nobody took are deleted by `expire_uploads` once their ticket is older
than the URL's expiry plus a margin (facefleet.jobs.uploads)."""

from __future__ import annotations

import logging
from datetime import timedelta

from facefleet.jobs.job_store import JobStore, job_activity
from facefleet.jobs.records import now
from facefleet.jobs.storage import ObjectNotFound
from facefleet.jobs.uploads import expire_uploads as sweep_uploads
from facefleet.jobs.webhooks import unannounced_since
from facefleet.tasks.app import FIRST_STEP, app
from facefleet.tasks.runtime import get_runtime
from facefleet.tasks.webhooks import announce_end

log = logging.getLogger("facefleet.tasks.watchdog")

# Bounds the statuses read per check; an event lost for longer than a day is given up on.
ANNOUNCE_WITHIN_S = 24 * 3600


@app.task(name="facefleet.resume_stalled")
def resume_stalled() -> list[str]:
    """The ids of the jobs published again."""
    runtime = get_runtime()
    after = runtime.settings.resume_stalled_after_s
    if not after:
        return []
    cutoff = now() - timedelta(seconds=after)
    resumed = []
    for job_id, last in job_activity(runtime.store).items():
        if last > cutoff:
            continue
        job = JobStore(runtime.store, job_id)
        try:
            status = job.status()
        except ObjectNotFound:
            continue  # deleted meanwhile
        if status.finished:
            continue
        idle = (now() - last).total_seconds()
        job.set_status(status.state, message=f"resumed after {idle:.0f} s without progress")
        app.tasks[FIRST_STEP[status.kind]].apply_async(args=[job_id])
        log.warning("job %s: nothing written for %.0f s, published again", job_id, idle)
        resumed.append(job_id)
    return resumed


@app.task(name="facefleet.announce_lost")
def announce_lost() -> list[str]:
    """The ids of the jobs whose end was announced again."""
    runtime = get_runtime()
    since = now() - timedelta(seconds=ANNOUNCE_WITHIN_S)
    due = unannounced_since(runtime.store, since)
    for job_id in due:
        log.info("job %s: webhook event not delivered yet, delivery task sent again", job_id)
        announce_end(runtime.settings, runtime.store, job_id)
    return due


@app.task(name="facefleet.expire_uploads")
def expire_uploads() -> dict[str, object]:
    """What the sweep did (facefleet.jobs.uploads.UploadSweep)."""
    runtime = get_runtime()
    sweep = sweep_uploads(runtime.store, runtime.settings.presign_expiry_s)
    if sweep.deleted:
        log.info("deleted %d upload(s) never taken by a job", len(sweep.deleted))
    return sweep.model_dump(mode="json")
