"""Presigned uploads no job takes are deleted by beat's `facefleet.expire_uploads` once their
ticket is older than the URL's expiry plus a day, never sooner: on SeaweedFS with tickets
written and files PUT the way the API and its clients do, and in-process on a folder store
through the Celery task."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from facefleet.api.keys import ApiKey
from facefleet.api.records import UploadRecord, UploadRequest
from facefleet.api.uploads import create_ticket
from facefleet.client import Client
from facefleet.core.settings import Settings, get_settings
from facefleet.jobs.records import now
from facefleet.jobs.storage import ObjectStore, open_public_store, open_store
from facefleet.jobs.uploads import UPLOAD_MARGIN_S, expire_uploads, ticket_key
from facefleet.localstack import down, stack_env, up
from tests.cluster import Cluster, _missing_servers

EXPIRY_S = 600
PHOTO = b"\xff\xd8 not really a jpeg, but bytes the store keeps"
CALLER = ApiKey(key_id="0123456789ab", name="uploads-test", scopes=["submit"], created=now())


@pytest.fixture()
def seaweedfs(tmp_path: Path) -> Iterator[Cluster]:
    """The local stack's Redis and SeaweedFS (no PostgreSQL, no workers)."""
    reason = _missing_servers()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path / "stack"
    up(workdir, services_only=True, archive=False)  # stops what it started if it fails
    try:
        yield Cluster(workdir, stack_env(workdir))
    finally:
        down(workdir)


def _ticket(settings: Settings, store: ObjectStore, public: ObjectStore) -> str:
    """An upload as a client leaves it: a ticket from the API, the bytes PUT to its URL."""
    ticket = create_ticket(
        UploadRequest(filename="face.jpg", size=len(PHOTO)), CALLER, settings, store, public
    )
    put = httpx.put(ticket.url, content=PHOTO)
    assert put.status_code == 200, put.text
    return ticket.upload_id


def _created(store: ObjectStore, upload_id: str) -> datetime:
    return store.get_model(ticket_key(upload_id), UploadRecord).created


def _backdate(store: ObjectStore, upload_id: str, seconds: float) -> None:
    """The ticket as the API would have written it `seconds` ago."""
    record = store.get_model(ticket_key(upload_id), UploadRecord)
    old = record.model_copy(update={"created": record.created - timedelta(seconds=seconds)})
    store.put_model(ticket_key(upload_id), old)


def test_stale_uploads_are_deleted_on_seaweedfs(seaweedfs: Cluster) -> None:
    settings = seaweedfs.settings(presign_expiry_s=EXPIRY_S)
    store, public = open_store(settings), open_public_store(settings)
    stale = _ticket(settings, store, public)
    fresh = _ticket(settings, store, public)
    _backdate(store, stale, EXPIRY_S + UPLOAD_MARGIN_S + 60)
    # The SDK's own photos for a search or an enrolment carry no ticket: never swept.
    store.put_bytes("uploads/" + "f" * 32 + "/0000.jpg", PHOTO)
    assert len(store.list(f"uploads/{stale}/")) == 2

    sweep = expire_uploads(store, EXPIRY_S)

    assert sweep.deleted == [stale] and sweep.objects == 2 and sweep.kept == 1
    assert store.list(f"uploads/{stale}/") == []
    assert sorted(k.rsplit("/", 1)[1] for k in store.list(f"uploads/{fresh}/")) == [
        "file.jpg",
        "upload.json",
    ]
    assert store.get_bytes(f"uploads/{fresh}/file.jpg") == PHOTO
    assert store.list("uploads/" + "f" * 32 + "/") != []

    # The boundary: a second short of expiry + margin the upload stays, a second past
    # it goes.
    due = _created(store, fresh) + timedelta(seconds=EXPIRY_S + UPLOAD_MARGIN_S)
    early = expire_uploads(store, EXPIRY_S, at=due - timedelta(seconds=1))
    assert early.deleted == [] and early.kept == 1
    assert store.exists(f"uploads/{fresh}/file.jpg")
    late = expire_uploads(store, EXPIRY_S, at=due + timedelta(seconds=1))
    assert late.deleted == [fresh]
    assert store.list(f"uploads/{fresh}/") == []


def test_the_beat_task_sweeps_a_folder_store(tmp_path: Path) -> None:
    settings = get_settings(store_dir=tmp_path / "store", presign_expiry_s=EXPIRY_S)
    client = Client(settings)
    store = client.store
    ids = []
    for age in (EXPIRY_S + UPLOAD_MARGIN_S + 5, EXPIRY_S + UPLOAD_MARGIN_S - 60, 0):
        upload_id = f"{len(ids):032x}"
        record = UploadRecord(
            upload_id=upload_id,
            key=f"uploads/{upload_id}/file.jpg",
            filename="face.jpg",
            size=len(PHOTO),
            key_id=CALLER.key_id,
            created=now() - timedelta(seconds=age),
        )
        store.put_bytes(record.key, PHOTO)
        store.put_model(ticket_key(upload_id), record)
        ids.append(upload_id)

    report = client._run("facefleet.expire_uploads", []).get()

    assert report == {"deleted": [ids[0]], "objects": 2, "kept": 2}
    assert store.list(f"uploads/{ids[0]}/") == []
    assert not (Path(settings.store_dir) / "uploads" / ids[0]).exists()
    for kept in ids[1:]:
        assert store.get_bytes(f"uploads/{kept}/file.jpg") == PHOTO
    beat = client.celery_app.conf.beat_schedule["facefleet-expire-uploads"]
    assert beat["task"] == "facefleet.expire_uploads"
    assert beat["schedule"].run_every.total_seconds() == settings.stall_check_s
