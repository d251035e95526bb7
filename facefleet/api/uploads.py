"""Uploads through presigned PUT URLs: the bytes go from the user straight to the object
store, never through the API process. A ticket is refused before any byte is stored when
its declared size is over the limit; when it is used, the stored object is checked against
that size (a client that PUT more than it declared loses the upload). An upload no job
takes is deleted by a worker once its ticket is a day older than the URL's expiry
(facefleet.jobs.uploads)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from fastapi import HTTPException

from facefleet.api.keys import ApiKey
from facefleet.api.records import UploadRecord, UploadRequest, UploadTicket
from facefleet.core.media import is_image_path
from facefleet.core.settings import Settings
from facefleet.jobs.records import now
from facefleet.jobs.storage import ObjectNotFound, ObjectStore
from facefleet.jobs.uploads import UPLOADS, ticket_key

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
)


def create_ticket(
    request: UploadRequest,
    caller: ApiKey,
    settings: Settings,
    store: ObjectStore,
    public: ObjectStore,
) -> UploadTicket:
    name = Path(request.filename).name
    if name != request.filename or name in ("", ".", ".."):
        raise HTTPException(400, f"filename {request.filename!r} must be a plain file name")
    suffix = Path(name).suffix.lower()
    if not _SUFFIX.match(suffix) or not (is_image_path(Path(name)) or suffix in VIDEO_SUFFIXES):
        raise HTTPException(
            400, f"{name!r}: not an image or video file name (.jpg, .png, .mp4, .mov, ...)"
        )
    if request.size > settings.max_input_bytes:
        raise HTTPException(
            413,
            f"{name!r}: {request.size} bytes is more than this deployment accepts "
            f"({settings.max_input_bytes})",
        )
    upload_id = uuid.uuid4().hex
    key = f"{UPLOADS}{upload_id}/file{suffix}"
    record = UploadRecord(
        upload_id=upload_id,
        key=key,
        filename=name,
        size=request.size,
        key_id=caller.key_id,
        created=now(),
    )
    store.put_model(ticket_key(upload_id), record)
    return UploadTicket(
        upload_id=upload_id,
        url=public.upload_url(key, settings.presign_expiry_s),
        expires_s=settings.presign_expiry_s,
        max_bytes=request.size,
    )


def take_upload(upload_id: str, caller: ApiKey, store: ObjectStore) -> tuple[str, str]:
    """(object key, file name) of an upload of this key that holds its file (its ticket
    stays until `used_up`: a refused job can be sent again). 404 for an unknown upload or
    another key's, 400 when nothing was PUT yet, 413 (and the object deleted) when more was
    stored than declared."""
    record = store.get_model_or_none(ticket_key(upload_id), UploadRecord)
    if record is None or (record.key_id != caller.key_id and "admin" not in caller.scopes):
        raise HTTPException(404, f"no upload {upload_id}")
    try:
        size = store.size(record.key)
    except ObjectNotFound:
        raise HTTPException(
            400, f"upload {upload_id} has no file yet: PUT it to the URL of its ticket"
        ) from None
    if size > record.size:
        store.delete(record.key)
        store.delete(ticket_key(upload_id))
        raise HTTPException(
            413, f"upload {upload_id}: {size} bytes stored, {record.size} declared; deleted"
        )
    return record.key, record.filename


def used_up(upload_ids: list[str], store: ObjectStore) -> None:
    """Drop the tickets of uploads a job or gallery has taken."""
    for upload_id in upload_ids:
        store.delete(ticket_key(upload_id))
