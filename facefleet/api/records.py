"""What the HTTP API takes and returns, beyond the SDK's own records (JobStatus,
SearchReport, ...), which it serves as they are."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facefleet.api.keys import Scope
from facefleet.jobs.records import JobOptions, JobProgress, JobStatus
from facefleet.training.records import TrainOptions

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
NAME_MAX = 120


class Strict(BaseModel):
    """Request bodies: unknown fields are a mistake worth a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def check_upload_id(value: str) -> str:
    if not _UPLOAD_ID.match(value):
        raise ValueError(f"invalid upload id {value!r} (expected 32 hex digits)")
    return value


class UploadRequest(Strict):
    filename: str = Field(min_length=1, max_length=255, description="The file's own name")
    size: int = Field(gt=0, description="Bytes that will be PUT; larger is refused at once")


class UploadTicket(BaseModel):
    upload_id: str
    url: str = Field(description="PUT the file's bytes here (presigned, no key needed)")
    method: Literal["PUT"] = "PUT"
    expires_s: int
    max_bytes: int


class UploadRecord(BaseModel):
    """Kept beside the upload (uploads/<id>/upload.json) until a job or gallery takes it."""

    upload_id: str
    key: str
    filename: str
    size: int
    key_id: str = Field(description="The API key that asked for it: only it may use it")
    created: datetime


class JobRequest(Strict):
    kind: Literal["video", "images"]
    uploads: list[str] = Field(min_length=1, max_length=1000)
    gallery: str | None = Field(default="default", max_length=NAME_MAX)
    options: JobOptions = JobOptions()
    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        description="POSTed a signed event when the job ends (default: the key's own)",
    )

    _ids = field_validator("uploads")(lambda cls, v: [check_upload_id(u) for u in v])


class JobView(BaseModel):
    status: JobStatus
    progress: JobProgress | None = None


class EnrollRequest(Strict):
    person: str = Field(min_length=1, max_length=NAME_MAX)
    uploads: list[str] = Field(min_length=1, max_length=100)

    _ids = field_validator("uploads")(lambda cls, v: [check_upload_id(u) for u in v])


class SearchRequest(Strict):
    person: str | None = Field(default=None, max_length=NAME_MAX)
    gallery: str = Field(default="default", max_length=NAME_MAX)
    upload: str | None = Field(default=None, description="An uploaded photo instead of a name")

    _id = field_validator("upload")(lambda cls, v: v if v is None else check_upload_id(v))


class CorrectionRequest(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    is_name: str | None = Field(default=None, alias="is", max_length=NAME_MAX)
    not_name: str | None = Field(default=None, alias="not", max_length=NAME_MAX)
    gallery: str = Field(default="default", max_length=NAME_MAX)


class NameRequest(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    gallery: str = Field(default="default", max_length=NAME_MAX)
    version: int | None = Field(default=None, ge=0)


class TrainingRequest(Strict):
    run: str | None = Field(default=None, max_length=NAME_MAX)
    options: TrainOptions = TrainOptions()
    promote: bool = True


class KeyView(BaseModel):
    key_id: str
    name: str
    scopes: list[Scope]
