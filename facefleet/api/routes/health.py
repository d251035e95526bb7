"""Liveness, readiness and Prometheus metrics: no key needed (they carry no user data), so
orchestrators and Prometheus can reach them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from facefleet.api.deps import client_of, settings_of
from facefleet.api.metrics import check_health, check_ready, render_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, object]:
    """The API process serves."""
    return check_health()


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """200 when the broker, the store and the database answer; 503 naming what does not."""
    report = check_ready(settings_of(request), client_of(request).store)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ok else 503)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    client = client_of(request)
    body, content_type = render_metrics(settings_of(request), client.store, client.celery_app)
    return Response(body, media_type=content_type)
