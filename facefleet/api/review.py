"""The review page: server-rendered HTML over the same SDK calls as the JSON API. A browser
logs in with an API key (kept server side: the session cookie only names the key), and the
page's scripts call the JSON API with that cookie and the session's CSRF token."""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

import cv2
from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from facefleet.api.auth import Principal, end_session, principal, read_session, start_session
from facefleet.api.deps import client_of, public_store_of, settings_of
from facefleet.core.errors import FacefleetError
from facefleet.core.gallery import Gallery
from facefleet.jobs.galleries import gallery_pointer, list_galleries
from facefleet.jobs.gallery_store import load_gallery
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import check_job_id

HERE = Path(__file__).parent
LOGIN = "/review/login"
# Jinja2Templates autoescapes .html templates: every value rendered is escaped.
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(prefix="/review", include_in_schema=False)
STATIC = {"review.js": "text/javascript", "review.css": "text/css"}


def viewer(request: Request) -> Principal:
    """The logged-in caller with the read scope; without a session, a redirect to the login
    form (a page, unlike the JSON API, answers 401 with somewhere to go)."""
    try:
        caller = principal(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise HTTPException(303, "log in first", headers={"Location": LOGIN}) from None
        raise
    if not caller.key.allows("read"):
        raise HTTPException(403, "this API key lacks the 'read' scope")
    return caller


Viewer = Annotated[Principal, Depends(viewer)]


def _page(request: Request, name: str, caller: Principal | None, **context: Any) -> HTMLResponse:
    context.update(
        caller=caller,
        csrf=caller.csrf if caller else "",
        can_submit=bool(caller and caller.key.allows("submit")),
    )
    status = context.pop("status_code", 200)
    return templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """The page's two files, served by name from a fixed list (nothing else on disk)."""
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None, message=None)


@router.post("/login", response_model=None)
def login(request: Request, key: str = Form(default="")) -> Response:
    found = request.app.state.keys.authenticate(key) if key.strip() else None
    if found is None:
        return _page(
            request, "login.html", None, message="Unknown or revoked API key.", status_code=401
        )
    response = RedirectResponse("/review/", status_code=303)
    start_session(request, response, found)
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(default="")) -> RedirectResponse:
    # A plain form cannot send the X-CSRF-Token header: the token comes as a form field.
    session = read_session(request)
    if session is not None and not secrets.compare_digest(csrf, session[1]):
        raise HTTPException(403, "missing or wrong CSRF token")
    response = RedirectResponse(LOGIN, status_code=303)
    end_session(response)
    return response


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request, caller: Viewer) -> HTMLResponse:
    client = client_of(request)
    rows = []
    for entry in sorted(client.jobs(), key=lambda e: e.created, reverse=True):
        progress = None
        if entry.state not in ("done", "failed", "cancelled"):
            try:
                progress = JobStore(client.store, entry.job_id).progress()
            except FacefleetError:  # gone between the listing and now
                progress = None
        rows.append({"entry": entry, "progress": progress})
    return _page(request, "jobs.html", caller, rows=rows)


def _video_result(client: Any, job_id: str) -> tuple[Any, dict[str, Any] | None]:
    """The job's status and, once done, its (first) video result JSON."""
    status = JobStore(client.store, check_job_id(job_id)).status()
    if status.state != "done":
        return status, None
    for key in status.outputs:
        if key.endswith(".json"):
            result = json.loads(client.store.get_bytes(key))
            if "tracks" in result:
                return status, result
    return status, None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, caller: Viewer) -> HTMLResponse:
    client = client_of(request)
    status, result = _video_result(client, job_id)
    jobs = JobStore(client.store, status.job_id)
    progress = None if status.finished else jobs.progress()
    try:
        gallery = jobs.spec().gallery or "default"
    except FacefleetError:
        gallery = "default"
    # Only what the page draws goes into it: the per-frame boxes can be megabytes.
    view = None
    if result is not None:
        view = {
            "source": result["source"],
            "duration": result["frame_count"] / result["fps"] if result["fps"] else 0.0,
            "tracks": result["tracks"],
        }
    return _page(
        request, "job.html", caller, status=status, progress=progress, view=view, gallery=gallery
    )


@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, caller: Viewer) -> HTMLResponse:
    public, expiry = public_store_of(request), settings_of(request).presign_expiry_s
    clusters = [
        {"cluster": c, "thumb": public.url(c.thumbnail, expiry)}
        for c in client_of(request).people.list()
    ]
    return _page(request, "people.html", caller, clusters=clusters)


@router.get("/galleries", response_class=HTMLResponse)
def galleries_page(request: Request, caller: Viewer) -> HTMLResponse:
    store = client_of(request).store
    galleries = []
    for name, pointer in sorted(list_galleries(store).items()):
        counts = _sample_counts(store, name)
        people = [{"name": p, "photos": counts.get(p, 0)} for p in pointer.people]
        galleries.append({"name": name, "faces": pointer.faces, "people": people})
    return _page(request, "galleries.html", caller, galleries=galleries)


# Loaded galleries by (name, version): a version never changes, so entries never go stale;
# a few are kept so a page of photos loads each gallery once.
_GALLERIES: OrderedDict[tuple[str, str], Gallery] = OrderedDict()
_GALLERIES_LOCK = threading.Lock()
_GALLERIES_KEPT = 4


def _gallery(store: Any, name: str) -> Gallery | None:
    pointer = gallery_pointer(store, name)
    if pointer is None:
        return None
    key = (name, pointer.version)
    with _GALLERIES_LOCK:
        if key in _GALLERIES:
            _GALLERIES.move_to_end(key)
            return _GALLERIES[key]
    # No extractor: the stored regions are what is shown, no re-embedding needed.
    gallery = load_gallery(store, name, None, pointer)
    if gallery is None:
        return None
    with _GALLERIES_LOCK:
        _GALLERIES[key] = gallery
        while len(_GALLERIES) > _GALLERIES_KEPT:
            _GALLERIES.popitem(last=False)
    return gallery


def _sample_counts(store: Any, name: str) -> dict[str, int]:
    try:
        gallery = _gallery(store, name)
    except FacefleetError:  # a damaged version: list the people without photos
        return {}
    counts: dict[str, int] = {}
    for sample in gallery.samples if gallery else []:
        counts[sample.person] = counts.get(sample.person, 0) + 1
    return counts


@router.get("/galleries/{gallery}/{person}/{k}.jpg")
def gallery_photo(gallery: str, person: str, k: int, request: Request, caller: Viewer) -> Response:
    """The k-th stored face region of a person (the aligned crop the gallery embeds)."""
    found = _gallery(client_of(request).store, gallery)
    regions = (
        [i for i, s in enumerate(found.samples) if s.person == person] if found is not None else []
    )
    if not 0 <= k < len(regions):
        raise HTTPException(404, f"no photo {k} of {person!r} in gallery {gallery!r}")
    assert found is not None
    ok, jpeg = cv2.imencode(".jpg", found.regions[regions[k]], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise HTTPException(500, "could not encode the face region")
    # Immutable per gallery version only: keep the browser's copy briefly.
    return Response(
        jpeg.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "max-age=60"}
    )
