"""Stalled jobs are published again. A broker that restarts without persistence loses the
queued tasks of the jobs in flight, and nothing else would ever run them: celery beat fires
`resume_stalled` every `FACEFLEET_STALL_CHECK_S`, and a job that is not finished and has
written nothing for `FACEFLEET_RESUME_STALLED_AFTER_S` gets its first step published again.
Every step skips what the store already holds, so the job continues where it stopped. A
job that was only waiting in a long queue costs one quick extra pass, at most once per
interval, because resuming writes its status (and so counts as activity)."""

from __future__ import annotations

import logging
from datetime import timedelta

from facefleet.jobs.job_store import JobStore, job_activity
from facefleet.jobs.records import now
from facefleet.jobs.storage import ObjectNotFound
from facefleet.tasks.app import FIRST_STEP, app
from facefleet.tasks.runtime import get_runtime

log = logging.getLogger("facefleet.tasks.watchdog")


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
