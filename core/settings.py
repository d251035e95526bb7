"""The one settings object. Nothing else in facefleet reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DetectorName = Literal["retinaface", "yolov8-face"]
Metric = Literal["cosine", "euclidean"]
DeviceName = Literal["auto", "cpu", "cuda"]

REPO_ROOT = Path(__file__).resolve().parents[1]
# The release extractor ships inside the facefleet package so that a fresh install recognizes
# faces without any download.
SHIPPED_MODEL = REPO_ROOT / "facefleet" / "models" / "facefleet-b0.pt"


class Settings(BaseSettings):
    """facefleet settings; every field can be set as FACEFLEET_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="FACEFLEET_", extra="ignore")

    # Detection
    detector: DetectorName = "retinaface"
    detector_weights: Path | None = Field(
        default=None, description="Weights file for yolov8-face (e.g. yolov8n-face.pt)."
    )
    det_score_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
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
    model: Path | None = Field(
        default=None, description="Extractor checkpoint; default: the model shipped with facefleet."
    )
    metric: Metric = "cosine"
    threshold: float | None = Field(
        default=None, description="Match threshold; default: the model's calibrated threshold."
    )
    align_size: int = Field(default=112, ge=32)
    align_refine: bool = Field(
        default=True,
        description="Second landmark pass on de-rotated faces (more accurate on tilted faces).",
    )
    batch_size: int = Field(default=32, ge=1)
    device: DeviceName = "auto"

    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "facefleet",
        description="Derived data kept between runs (e.g. the aligned LFW faces).",
    )

    # Data for the real-data tests and training.
    test_data: Path = REPO_ROOT.parent / "shared" / "data"

    def resolved_model_path(self) -> Path | None:
        """The checkpoint to use: the explicit one, else the shipped one if present."""
        if self.model is not None:
            return self.model
        return SHIPPED_MODEL if SHIPPED_MODEL.is_file() else None


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. from CLI flags) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
