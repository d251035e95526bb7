"""Jobs of the batch system as data: what was asked (`JobSpec`), how it was cut (`JobPlan`),
where it stands (`JobStatus`), and the object keys every step reads and writes.

Kept free of torch and Celery: the client SDK imports this module.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from facefleet.core.errors import InputError
from facefleet.core.media import VideoInfo
from facefleet.core.names import ExtractorName, Metric, check_store_name

JobKind = Literal["video", "images"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InputError(f"invalid job id {job_id!r} (expected 32 hex digits)")
    return job_id


class JobOptions(BaseModel):
    """How one job runs; unset fields take the deployment's settings."""

    every: int = Field(
        default=1,
        ge=1,
        description="videos: detect on every K-th frame and carry tracks between (faster by "
        "about K, boxes interpolated)",
    )
    chunk_frames: int | None = Field(
        default=None, ge=1, description="videos: frames per chunk task (as the cluster cuts)"
    )
    extractor: ExtractorName | None = Field(
        default=None,
        description="feature extractor for this job (default: the deployment's, "
        "FACEFLEET_EXTRACTOR); pinned by id when the job is planned",
    )
    metric: Metric | None = Field(default=None, description="matching metric (default cosine)")
    embedding_budget: bool | None = Field(
        default=None,
        description="videos: embed a track's faces only when its identity needs it (default: "
        "the deployment's, FACEFLEET_EMBEDDING_BUDGET, on)",
    )
    threshold: float | None = Field(
        default=None, description="match threshold (default: the model's calibrated one)"
    )


class JobInput(BaseModel):
    key: str = Field(description="Object key of the uploaded input")
    name: str = Field(description="Output stem: OUT/<name>.mp4|.jpg and .json")
    source: str = Field(description="What the user submitted (file name), for messages")
    size: int


class JobSpec(BaseModel):
    job_id: str
    kind: JobKind
    inputs: list[JobInput]
    gallery: str | None = None
    options: JobOptions = JobOptions()
    created: datetime = Field(default_factory=now)
    callback_url: str | None = Field(
        default=None,
        description="Where the job's end is POSTed as a signed event (facefleet.jobs.webhooks)",
    )


class ChunkPlan(BaseModel):
    index: int
    start: int
    end: int  # exclusive
    inputs: list[int] = Field(default_factory=list, description="Image jobs: input numbers")


class JobPlan(BaseModel):
    job_id: str
    model_id: str | None = Field(description="Extractor pinned for every chunk of the job")
    chunks: list[ChunkPlan]
    video: VideoInfo | None = Field(default=None, description="Video jobs: the input as probed")
    reading: Literal["source", "lossless-chunks"] = Field(
        default="source",
        description="Video jobs: workers seek to their range in the source through its frame "
        "index, or (a source whose seeking is not exact) read lossless chunks cut at plan time",
    )
    reading_reason: str | None = Field(
        default=None, description="Why this source is read from lossless chunks"
    )
    render_parts: bool = Field(
        default=True,
        description="Video jobs: rendered in parallel parts, or in one pass by the last step",
    )


class ChunkMeta(BaseModel):
    """Stored beside a video chunk: which frames of the source it holds and their times."""

    start: int
    end: int
    times: list[float]


class ImageOutcome(BaseModel):
    input: int
    name: str
    faces: int = 0
    identities: list[str] = Field(default_factory=list)
    error: str | None = None


class ImageChunkResult(BaseModel):
    outcomes: list[ImageOutcome]


class JobProgress(BaseModel):
    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class JobStatus(BaseModel):
    job_id: str
    kind: JobKind
    state: JobState
    stage: str = "queued"
    message: str | None = None
    chunks: int = 0
    render_parts: bool = Field(
        default=True, description="Video jobs: one render step per chunk (else one in all)"
    )
    outputs: list[str] = Field(default_factory=list, description="Output object keys")
    errors: list[str] = Field(default_factory=list, description="Inputs that failed (image jobs)")
    summary: dict[str, list[str]] = Field(
        default_factory=dict, description="Per output name: the identities found"
    )
    indexed: bool | None = Field(
        default=None,
        description="Video jobs: tracks recorded in the archive (false: not yet, the "
        "archive was unreachable and a later pass indexes it; null: no archive)",
    )
    created: datetime = Field(default_factory=now)
    updated: datetime = Field(default_factory=now)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class JobKeys:
    """`jobs/<job_id>/{input,chunks/<k>,parts/<k>,output}/...` and the job's own records."""

    def __init__(self, job_id: str) -> None:
        self.job_id = check_job_id(job_id)
        self.root = f"jobs/{job_id}"

    @property
    def spec(self) -> str:
        return f"{self.root}/job.json"

    @property
    def status(self) -> str:
        return f"{self.root}/status.json"

    @property
    def plan(self) -> str:
        return f"{self.root}/plan.json"

    @property
    def cancelled(self) -> str:
        return f"{self.root}/cancelled"

    @property
    def result(self) -> str:
        return f"{self.root}/merged.json"

    @property
    def webhook(self) -> str:
        """The job's webhook event and its delivery attempts (a WebhookLog)."""
        return f"{self.root}/webhook.json"

    def input(self, name: str) -> str:
        return f"{self.root}/input/{name}"

    def chunks(self) -> str:
        return f"{self.root}/chunks/"

    @property
    def frame_index(self) -> str:
        return f"{self.root}/chunks/frames.json"

    def chunk_video(self, k: int) -> str:
        return f"{self.root}/chunks/{k:05d}/frames.mkv"

    def chunk_meta(self, k: int) -> str:
        return f"{self.root}/chunks/{k:05d}/chunk.json"

    def chunk_result(self, k: int) -> str:
        return f"{self.root}/chunks/{k:05d}/result.json"

    def parts(self) -> str:
        return f"{self.root}/parts/"

    def part(self, k: int, name: str = "part.mp4") -> str:
        return f"{self.root}/parts/{k:05d}/{name}"

    def outputs(self) -> str:
        return f"{self.root}/output/"

    def output(self, name: str) -> str:
        return f"{self.root}/output/{name}"


class GalleryPointer(BaseModel):
    version: str
    people: list[str]
    faces: int
    model_id: str
    updated: datetime = Field(default_factory=now)


def gallery_pointer_key(gallery: str) -> str:
    return f"galleries/{check_store_name(gallery, 'gallery name')}/current.json"


def gallery_version_prefix(gallery: str, version: str) -> str:
    return f"galleries/{check_store_name(gallery, 'gallery name')}/v/{version}/"


class EnrollReport(BaseModel):
    gallery: str
    person: str
    added: int
    issues: list[str]
    people: list[str]
    faces: int


class RemoveReport(BaseModel):
    gallery: str
    person: str
    removed: int
    people: list[str]
    faces: int


class ModelPointer(BaseModel):
    """`models/latest`: the promoted extractor and the DevTest accuracy it was promoted on."""

    model_id: str
    key: str
    devtest_accuracy: float | None = None
    identification_dir: float | None = Field(
        default=None, description="DIR at 1% FAR on the open-set protocol (facefleet eval)"
    )
    run: str | None = None
    promoted: datetime = Field(default_factory=now)


MODEL_POINTER_KEY = "models/latest.json"


class ModelLineage(BaseModel):
    """`models/<id>/lineage.json`: where a promoted extractor came from."""

    model_id: str
    parent: str | None = Field(description="The extractor it was fine-tuned from")
    run: str
    data: str = Field(description="What it trained on")
    labelled_faces: int = Field(default=0, description="Faces labelled by users among them")
    recipe: dict = Field(description="The run's TrainOptions")
    protocol: str
    figures: dict[str, float | None] = Field(description="DIR at 1% FAR, child and parent")
    promoted: datetime = Field(default_factory=now)


def lineage_key(model_id: str) -> str:
    return f"models/{check_store_name(model_id, 'model id')}/lineage.json"


def model_key(model_id: str) -> str:
    return f"models/{check_store_name(model_id, 'model id')}/extractor.pt"


def training_prefix(run: str) -> str:
    return f"training/{check_store_name(run, 'training run name')}/"
