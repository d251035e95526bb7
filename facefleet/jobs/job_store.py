"""A job's records in the object store: its spec, plan and status, its progress counted from
the objects the steps have written, cancellation, and clean-up.

The status lives in the object store, not in Celery's result backend: it survives broker
restarts and result expiry, and the SDK reads it with nothing but S3 access.
"""

from __future__ import annotations

from datetime import datetime

from facefleet.jobs.records import (
    FINISHED,
    JobKeys,
    JobPlan,
    JobProgress,
    JobSpec,
    JobState,
    JobStatus,
    now,
)
from facefleet.jobs.storage import ObjectNotFound, ObjectStore

FINISHING = "finish"  # the stage of a job's last step, while it writes outputs and cleans up


def job_activity(store: ObjectStore) -> dict[str, datetime]:
    """Every job in the store (those with a status record) with when anything of it was
    last written, from one listing."""
    newest: dict[str, datetime] = {}
    recorded = set()
    for key, written in store.modified("jobs/").items():
        parts = key.split("/")
        if len(parts) < 3:
            continue
        job_id = parts[1]
        newest[job_id] = max(written, newest.get(job_id, written))
        if len(parts) == 3 and parts[2] == "status.json":
            recorded.add(job_id)
    return {job_id: newest[job_id] for job_id in recorded}


class JobStore:
    def __init__(self, store: ObjectStore, job_id: str) -> None:
        self.store = store
        self.keys = JobKeys(job_id)
        self.job_id = job_id

    # ---- records ------------------------------------------------------------------------

    def spec(self) -> JobSpec:
        try:
            return self.store.get_model(self.keys.spec, JobSpec)
        except ObjectNotFound:
            raise ObjectNotFound(f"no job {self.job_id} in {self.store.location}") from None

    def plan(self) -> JobPlan:
        return self.store.get_model(self.keys.plan, JobPlan)

    def status(self) -> JobStatus:
        status = self.store.get_model_or_none(self.keys.status, JobStatus)
        if status is None:
            raise ObjectNotFound(f"no job {self.job_id} in {self.store.location}")
        return status

    def set_status(self, state: JobState, **fields: object) -> JobStatus:
        """Update the status; a finished job stays finished (a late task cannot revive it)."""
        current = self.status()
        if current.finished and state != current.state:
            return current
        updated = current.model_copy(update={"state": state, "updated": now(), **fields})
        self.store.put_model(self.keys.status, updated)
        return updated

    def last_activity(self) -> datetime | None:
        """When anything of this job was last written: its records, chunks, results, parts."""
        return self.store.newest(self.keys.root + "/")

    def finished(self) -> bool:
        try:
            return self.status().state in FINISHED
        except ObjectNotFound:
            return True  # deleted jobs do no more work

    def cancelled(self) -> bool:
        return self.store.exists(self.keys.cancelled)

    def stopped(self) -> bool:
        """Should a step skip its work? True once the job ended; a cancelled job is also
        cleaned again, since a step that was running at cancel time may have written."""
        if self.cancelled():
            self.cleanup(outputs=True)
            return True
        return self.finished()

    def keep_if_running(self, *keys: str) -> None:
        """Called by a step right after it wrote `keys`. A duplicate delivery can outlive
        its job (the other copy finished it and cleaned up meanwhile): then what it wrote
        goes again, so an ended job keeps no stray intermediates."""
        if self.cancelled() or self.finished():
            for key in keys:
                self.store.delete(key)

    # ---- progress -----------------------------------------------------------------------

    def finishing(self) -> JobStatus:
        """Called by the last step before it removes the intermediates that progress is
        counted from: from here on progress shows every step done."""
        return self.set_status("running", stage=FINISHING)

    def progress(self, status: JobStatus | None = None) -> JobProgress:
        """Steps done of all steps: analysing and rendering each chunk, then finishing.
        `status`: the job's status when the caller has just read it (one store read less)."""
        status = status or self.status()
        if status.state == "done":
            return JobProgress(stage="done", done=1, total=1)
        if not status.chunks:
            return JobProgress(stage=status.stage, done=0, total=0)
        renders = status.chunks if status.render_parts else 1
        total = status.chunks if status.kind == "images" else status.chunks + renders
        if status.stage == FINISHING:
            # The chunks and parts are going: counting them now would run backwards.
            return JobProgress(stage=status.stage, done=total, total=total)
        keys = self.store.list(self.keys.chunks())
        analysed = sum(1 for k in keys if k.endswith("/result.json"))
        if status.kind == "images":
            return JobProgress(stage=status.stage, done=analysed, total=total)
        rendered = sum(1 for k in self.store.list(self.keys.parts()) if k.endswith("/part.mp4"))
        return JobProgress(stage=status.stage, done=analysed + rendered, total=total)

    # ---- ending -------------------------------------------------------------------------

    def fail(self, message: str) -> JobStatus:
        """Mark failed with a message and drop every intermediate and partial output."""
        if self.status().finished:
            return self.status()
        # Intermediates go before the state flips, so whoever sees "failed" finds none.
        self.cleanup()
        status = self.set_status("failed", stage="failed", message=message)
        # A late duplicate failing after the job finished must not touch a done job's output;
        # otherwise sweep again for what a step still running wrote meanwhile.
        if status.state == "failed":
            self.cleanup(outputs=True)
        return status

    def cancel(self) -> JobStatus:
        """A finished job stays as it is; otherwise its steps stop and nothing is output."""
        if self.status().finished:
            return self.status()
        self.store.put_bytes(self.keys.cancelled, b"cancelled")
        self.cleanup()
        status = self.set_status("cancelled", stage="cancelled", message="cancelled by the user")
        self.cleanup(outputs=True)
        return status

    def cleanup(self, outputs: bool = False) -> None:
        self.store.delete_prefix(self.keys.chunks())
        self.store.delete_prefix(self.keys.parts())
        if outputs:
            self.store.delete_prefix(self.keys.outputs())
            self.store.delete(self.keys.result)
