"""The HTTP API: `create_app(settings)` builds it (the one place it is built); `facefleet api
serve` runs it under uvicorn. It serves a batch system (Redis, S3, PostgreSQL): jobs go to the
workers through the SDK's direct transport, files go straight to the object store through
presigned URLs, keys live in the archive database."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from facefleet import __version__
from facefleet.api.keys import KeyStore
from facefleet.archive.connect import open_archive
from facefleet.archive.store import ArchiveConflict, ArchiveStore, ArchiveUnavailable
from facefleet.client import Client, JobFailed, JobTimeout
from facefleet.core.errors import FacefleetError, GalleryError, InputError
from facefleet.core.settings import Settings, get_settings
from facefleet.jobs.storage import ObjectNotFound, StorageUnavailable, open_public_store
from facefleet.jobs.webhooks import api_base_urls

log = logging.getLogger("facefleet.api")

# Request bodies of the API itself are small JSON; files never pass through it.
MAX_BODY_BYTES = 1024 * 1024

DESCRIPTION = """Face recognition for bulk video. Authenticate with
`Authorization: Bearer <API key>` (keys: `facefleet api keys create`). Upload files with
`POST /v1/uploads` and a PUT of the bytes to the presigned URL it returns, then submit a job
with `POST /v1/jobs`."""

# Errors the SDK raises, as HTTP statuses; the message is always the error's own line.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ArchiveConflict, 409),
    (ObjectNotFound, 404),
    (GalleryError, 404),
    (InputError, 400),
    (JobFailed, 409),
    (JobTimeout, 504),
    (ArchiveUnavailable, 503),
    (StorageUnavailable, 503),
)


def status_for(exc: Exception) -> int:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


def _pooled(archive: ArchiveStore) -> Any:
    """The app's lifespan: the archive's connection pool opens before the first request
    (a connection per request cost most of a key check) and closes at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Off the event loop: opening waits for the connections, closing for their threads.
        await asyncio.to_thread(archive.open_pool)
        try:
            yield
        finally:
            await asyncio.to_thread(archive.close_pool)

    return lifespan


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """The API of the batch system these settings name. Refuses, with one line, settings
    without a broker, an S3 store or an archive database."""
    settings = settings or get_settings()
    if not settings.distributed or not settings.s3_endpoint:
        raise FacefleetError(
            "the API serves a batch system: set FACEFLEET_BROKER_URL and FACEFLEET_S3_* "
            "(for a local one: python deploy/stack.py up DIR, then source DIR/stack.env)"
        )
    if not settings.archive_url:
        raise FacefleetError(
            "the API keeps its keys in the archive database: set FACEFLEET_ARCHIVE_URL"
        )
    migrated = open_archive(settings)
    assert migrated is not None  # archive_url is set
    # The API's own store: its pool lives as long as this app, not as the process's cache.
    archive = ArchiveStore(
        migrated.dsn, migrated.connect_timeout_s, pool_size=settings.api_db_pool_size
    )
    app = FastAPI(
        title="facefleet",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        lifespan=_pooled(archive),
    )
    app.state.settings = settings
    app.state.client = client or Client(settings)
    app.state.public_store = open_public_store(settings)
    app.state.archive = archive
    app.state.keys = KeyStore(archive)
    app.state.base_url = api_base_urls(settings)[0].rstrip("/")
    app.state.https = app.state.base_url.startswith("https://")
    app.state.session_secret = (
        settings.api_session_secret.get_secret_value()
        if settings.api_session_secret
        else secrets.token_hex(32)
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {
                    "detail": f"request body over {MAX_BODY_BYTES} bytes: upload files with "
                    "POST /v1/uploads and PUT them to the URL it returns"
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(FacefleetError)
    async def facefleet_error(request: Request, exc: FacefleetError) -> JSONResponse:
        code = status_for(exc)
        if code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return JSONResponse(
            {"detail": f"{where}: {first['msg']}" if where else first["msg"], "errors": errors},
            status_code=422,
        )

    from facefleet.api import review
    from facefleet.api.routes import archive as archive_routes
    from facefleet.api.routes import galleries, health, jobs, training

    for module in (jobs, galleries, archive_routes, training, health, review):
        app.include_router(module.router)
    return app
