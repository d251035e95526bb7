"""Calibrations shipped for extractors whose weights carry no thresholds of their own
(dlib's .dat, a FaceNet graph): `facefleet/models/calibration/<model id>.json`, written by
`facefleet calibrate`. A B0 checkpoint and an ONNX file's sidecar carry theirs."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from facefleet.core.errors import ModelError
from facefleet.core.schemas import (
    IdentificationReport,
    PairEvaluation,
    Thresholds,
    TrackingGates,
)


class Calibration(BaseModel):
    """What `facefleet calibrate` measured for one set of weights."""

    model_id: str
    thresholds: Thresholds
    devtest: PairEvaluation | None = None
    identification: IdentificationReport | None = None
    tracking: TrackingGates | None = None
    rule: str = Field(
        default="cosine: best F1 on the DevTest pairs; identification: 1% FAR on the "
        "DevTest open-set protocol (facefleet eval)"
    )


def calibration_dir() -> Path:
    return Path(str(files("facefleet").joinpath("models", "calibration")))


def read_calibration(path: Path) -> Calibration:
    try:
        return Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ModelError(f"not a readable calibration ({exc})", subject=path) from None


def shipped_calibration(model_id: str) -> Calibration | None:
    path = calibration_dir() / f"{model_id}.json"
    return read_calibration(path) if path.is_file() else None
