"""Uploads, jobs, their results, downloads, cancel and delete, track corrections."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse

from facefleet.api.auth import Admin, Reader, Submitter
from facefleet.api.deps import client_of, public_store_of, settings_of
from facefleet.api.records import (
    CorrectionRequest,
    JobRequest,
    JobView,
    UploadRequest,
    UploadTicket,
)
from facefleet.api.uploads import create_ticket, take_upload, used_up
from facefleet.archive.records import CorrectionReport, DeleteReport, JobEntry
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import JobStatus, check_job_id
from facefleet.jobs.webhooks import WebhookLog, read_webhook_log

router = APIRouter(prefix="/v1", tags=["jobs"])


def _job_store(request: Request, job_id: str) -> JobStore:
    return _job_and_status(request, job_id)[0]


def _job_and_status(request: Request, job_id: str) -> tuple[JobStore, JobStatus]:
    """The job's store and its status, read once (404 for an unknown job)."""
    jobs = JobStore(client_of(request).store, check_job_id(job_id))
    return jobs, jobs.status()


@router.post("/uploads", status_code=201, response_model=UploadTicket)
def new_upload(body: UploadRequest, request: Request, caller: Submitter) -> UploadTicket:
    """A presigned URL to PUT one file to (the size is checked before anything is stored)."""
    return create_ticket(
        body,
        caller.key,
        settings_of(request),
        client_of(request).store,
        public_store_of(request),
    )


@router.post("/jobs", status_code=202, response_model=JobView)
def submit_job(body: JobRequest, request: Request, caller: Submitter) -> JobView:
    """Start a job on uploaded files: one video, or any number of images."""
    if body.kind == "video" and len(body.uploads) != 1:
        raise HTTPException(400, "a video job takes exactly one upload")
    client = client_of(request)
    files = [take_upload(upload, caller.key, client.store) for upload in body.uploads]
    job = client.submit_stored(
        body.kind,
        files,
        gallery=body.gallery,
        options=body.options,
        callback_url=body.callback_url or caller.key.callback_url,
    )
    used_up(body.uploads, client.store)
    return JobView(status=job.status(), progress=job.progress())


@router.get("/jobs", response_model=list[JobEntry])
def list_jobs(request: Request, caller: Reader) -> list[JobEntry]:
    """Every job, newest first, with its number of archived tracks."""
    entries = client_of(request).jobs()
    return sorted(entries, key=lambda e: e.created, reverse=True)


@router.get("/jobs/{job_id}", response_model=JobView)
def job_status(job_id: str, request: Request, caller: Reader) -> JobView:
    # The status is read once: this is the route clients poll.
    jobs, status = _job_and_status(request, job_id)
    return JobView(status=status, progress=jobs.progress(status))


def _done(jobs: JobStore) -> JobStatus:
    status = jobs.status()
    if status.state != "done":
        message = f": {status.message}" if status.message else ""
        raise HTTPException(409, f"job {status.job_id} is {status.state}{message}")
    return status


@router.get("/jobs/{job_id}/results")
def job_results(job_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    """The result JSON of each input of a done job (VideoResult or ImageResult), by name."""
    jobs = _job_store(request, job_id)
    store = client_of(request).store
    return {
        key.rsplit("/", 1)[-1].removesuffix(".json"): json.loads(store.get_bytes(key))
        for key in _done(jobs).outputs
        if key.endswith(".json")
    }


@router.get("/jobs/{job_id}/downloads")
def job_downloads(job_id: str, request: Request, caller: Reader) -> dict[str, str]:
    """Presigned download URLs of a done job's outputs, by file name."""
    jobs = _job_store(request, job_id)
    public, expiry = public_store_of(request), settings_of(request).presign_expiry_s
    return {key.rsplit("/", 1)[-1]: public.url(key, expiry) for key in _done(jobs).outputs}


@router.get("/jobs/{job_id}/video", include_in_schema=False)
def job_video(job_id: str, request: Request, caller: Reader) -> RedirectResponse:
    """The annotated video of a done video job (a redirect to its presigned URL)."""
    jobs = _job_store(request, job_id)
    videos = [k for k in _done(jobs).outputs if k.endswith(".mp4")]
    if not videos:
        raise HTTPException(404, f"job {job_id} has no video output")
    url = public_store_of(request).url(videos[0], settings_of(request).presign_expiry_s)
    return RedirectResponse(url, status_code=307)


@router.get("/jobs/{job_id}/tracks/{track_id}/thumbnail", include_in_schema=False)
def track_thumbnail(
    job_id: str, track_id: int, request: Request, caller: Reader
) -> RedirectResponse:
    """A track's best face (a redirect to its presigned URL)."""
    _job_store(request, job_id)
    key = f"archive/{job_id}/{track_id}-0.jpg"
    store = client_of(request).store
    if track_id < 0 or not store.exists(key):
        raise HTTPException(404, f"no thumbnail of track {track_id} of job {job_id}")
    url = public_store_of(request).url(key, settings_of(request).presign_expiry_s)
    return RedirectResponse(url, status_code=307)


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus)
def cancel_job(job_id: str, request: Request, caller: Submitter) -> JobStatus:
    """Stop a job: pending chunks do nothing, no output is written. A finished job stays."""
    jobs = _job_store(request, job_id)
    return client_of(request).job(jobs.job_id).cancel()


@router.get("/jobs/{job_id}/webhooks", response_model=WebhookLog | None)
def job_webhooks(job_id: str, request: Request, caller: Reader) -> WebhookLog | None:
    """The job's webhook event and every delivery attempt (null: no callback, or the job
    has not ended)."""
    jobs = _job_store(request, job_id)
    return read_webhook_log(client_of(request).store, jobs.job_id)


@router.delete("/jobs/{job_id}", response_model=DeleteReport)
def delete_job(job_id: str, request: Request, caller: Admin) -> DeleteReport:
    """Delete a finished job: its objects and archived tracks."""
    _job_store(request, job_id)
    return client_of(request).delete_job(job_id)


@router.post("/jobs/{job_id}/tracks/{track_id}/correction", response_model=CorrectionReport)
def correct_track(
    job_id: str,
    track_id: int,
    body: CorrectionRequest,
    request: Request,
    caller: Submitter,
) -> CorrectionReport:
    """Say who a track is (`is`) or is not (`not`): its result JSON and index follow."""
    _job_store(request, job_id)
    return client_of(request).correct_track(
        job_id, track_id, is_name=body.is_name, not_name=body.not_name, gallery=body.gallery
    )
