"""Presigned uploads in the object store: `uploads/<id>/upload.json`, the ticket the HTTP API
writes when it hands out a URL (facefleet.api.uploads), beside `uploads/<id>/file.<ext>`,
what the client PUT there. A job, gallery or search that takes an upload moves or deletes
its file and drops the ticket; an upload nobody takes would stay forever, so beat has a
worker sweep them (`facefleet.expire_uploads`, facefleet.tasks.watchdog).

A folder is deleted when its ticket is older than the URL's expiry (`presign_expiry_s`)
plus UPLOAD_MARGIN_S, never sooner. Folders without a ticket are left alone: they are the
SDK's own photos for a search or an enrolment still waiting in a queue, or the moment
between a job taking an upload and dropping its ticket.

Free of Celery and of the API: the sweep runs on the workers."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from facefleet.jobs.records import now
from facefleet.jobs.storage import ObjectNotFound, ObjectStore, StorageError

UPLOADS = "uploads/"
TICKET = "upload.json"
# After its URL expired an upload can still be submitted (a client that PUT in the URL's
# last minute and submits tomorrow); a day also leaves any enrolment or search that took
# an old upload ample time to read it before the sweep could delete it.
UPLOAD_MARGIN_S = 24 * 3600


class UploadSweep(BaseModel):
    """What one sweep did."""

    deleted: list[str] = Field(default_factory=list, description="Ids of the uploads deleted")
    objects: int = Field(default=0, description="Objects deleted (tickets and files)")
    kept: int = Field(default=0, description="Uploads with a ticket too young to expire")


class _TicketTime(BaseModel):
    """The one field of a ticket (facefleet.api.records.UploadRecord) the sweep needs."""

    created: datetime


def ticket_key(upload_id: str) -> str:
    return f"{UPLOADS}{upload_id}/{TICKET}"


def _folders(store: ObjectStore) -> dict[str, dict[str, datetime]]:
    """Each upload folder: its objects (names below the folder) and when each was written,
    from one listing."""
    folders: dict[str, dict[str, datetime]] = {}
    for key, written in store.modified(UPLOADS).items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[1] and parts[2]:
            folders.setdefault(parts[1], {})[parts[2]] = written
    return folders


def _ticket_created(store: ObjectStore, upload_id: str, written: datetime) -> datetime | None:
    """When the ticket was handed out; None when it is gone meanwhile (a job took it)."""
    try:
        return store.get_model(ticket_key(upload_id), _TicketTime).created
    except ObjectNotFound:
        return None
    except StorageError:
        return written  # unreadable: the time it was stored is the best there is


def _delete_folder(store: ObjectStore, upload_id: str, names: dict[str, datetime]) -> int:
    # The ticket goes last: a sweep stopped half-way leaves it, and the next one finishes.
    ordered = sorted(names, key=lambda name: name == TICKET)
    for name in ordered:
        store.delete(f"{UPLOADS}{upload_id}/{name}")
    return len(ordered)


def expire_uploads(
    store: ObjectStore,
    expiry_s: float,
    margin_s: float = UPLOAD_MARGIN_S,
    at: datetime | None = None,
) -> UploadSweep:
    """Delete every upload folder whose ticket was handed out more than `expiry_s +
    margin_s` before `at` (default: now); younger ones and folders without a ticket stay."""
    cutoff = (at or now()) - timedelta(seconds=expiry_s + margin_s)
    sweep = UploadSweep()
    for upload_id, names in sorted(_folders(store).items()):
        if TICKET not in names:
            continue
        created = _ticket_created(store, upload_id, names[TICKET])
        if created is None:
            continue
        if created > cutoff:
            sweep.kept += 1
            continue
        sweep.objects += _delete_folder(store, upload_id, names)
        sweep.deleted.append(upload_id)
    return sweep
