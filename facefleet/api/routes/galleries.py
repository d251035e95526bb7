"""Galleries and the people enrolled in them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from facefleet.api.auth import Admin, Reader, Submitter
from facefleet.api.deps import client_of
from facefleet.api.records import EnrollRequest
from facefleet.api.uploads import take_upload, used_up
from facefleet.archive.records import ForgetReport
from facefleet.jobs.galleries import gallery_pointer
from facefleet.jobs.records import EnrollReport, RemoveReport

router = APIRouter(prefix="/v1/galleries", tags=["galleries"])


@router.get("")
def galleries(request: Request, caller: Reader) -> dict[str, int]:
    """Gallery name → number of enrolled faces."""
    return client_of(request).gallery.galleries()


@router.get("/{gallery}/people")
def people(gallery: str, request: Request, caller: Reader) -> list[str]:
    client = client_of(request)
    if gallery_pointer(client.store, gallery) is None:
        raise HTTPException(404, f"no gallery named {gallery!r}")
    return client.gallery.list(gallery)


@router.post("/{gallery}/people", status_code=201, response_model=EnrollReport)
def enroll(
    gallery: str,
    body: EnrollRequest,
    request: Request,
    caller: Submitter,
) -> EnrollReport:
    """Enroll a person from uploaded photos (the largest face of each)."""
    client = client_of(request)
    photos = [take_upload(upload, caller.key, client.store) for upload in body.uploads]
    report = client.gallery.enroll_stored(body.person, photos, gallery)
    used_up(body.uploads, client.store)
    return report


@router.delete("/{gallery}/people/{person}", response_model=RemoveReport | ForgetReport)
def remove(
    gallery: str,
    person: str,
    request: Request,
    caller: Admin,
    forget: bool = False,
) -> RemoveReport | ForgetReport:
    """Remove a person from a gallery; `forget=true` also removes their name from every
    past result and the archive, and their labelled faces."""
    client = client_of(request)
    if forget:
        return client.forget(person, gallery)
    return client.gallery.remove(person, gallery)
