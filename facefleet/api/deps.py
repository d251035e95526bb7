"""What a route needs from the app: the SDK client, the settings, the public store."""

from __future__ import annotations

from fastapi import Request

from facefleet.client import Client
from facefleet.core.settings import Settings
from facefleet.jobs.storage import ObjectStore


def client_of(request: Request) -> Client:
    return request.app.state.client


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def public_store_of(request: Request) -> ObjectStore:
    """The store as the API's users reach it: the presigned URLs handed out name it."""
    return request.app.state.public_store
