"""What every face detector backend provides, and the frame scaling they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from facefleet.core.schemas import FaceDetection


@dataclass(frozen=True)
class DetectorConfig:
    """Everything a backend needs; built from Settings by `detector_from_settings`."""

    score_threshold: float = 0.7
    nms_threshold: float = 0.4
    min_face_size: int = 12
    max_input_side: int = 1280
    weights: Path | None = None
    device: str = "cpu"
    config_dir: Path | None = None
    threads: int | None = None  # intra-op threads; None: the runtime's default (every core)


@runtime_checkable
class Detector(Protocol):
    """Takes a batch of BGR uint8 frames, returns the faces found in each frame."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]: ...


def downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink a frame so its longer side is at most `max_side`; returns (frame, scale)."""
    h, w = frame.shape[:2]
    side = max(h, w)
    if side <= max_side:
        return frame, 1.0
    scale = max_side / side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def to_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    *,
    scale: float,
    frame_shape: tuple[int, ...],
    min_face_size: int,
) -> list[FaceDetection]:
    """Map raw (N,4) boxes, (N,) scores, (N,5,2) landmarks back to frame pixels and wrap them."""
    h, w = frame_shape[:2]
    out: list[FaceDetection] = []
    inv = 1.0 / scale
    for box, score, pts in zip(boxes, scores, landmarks, strict=True):
        x0, y0, x1, y1 = (float(v) * inv for v in box)
        x0, x1 = max(0.0, x0), min(float(w), x1)
        y0, y1 = max(0.0, y0), min(float(h), y1)
        if x1 - x0 < min_face_size or y1 - y0 < min_face_size:
            continue
        lm = tuple((float(x) * inv, float(y) * inv) for x, y in pts)
        out.append(
            FaceDetection(
                box=(x0, y0, x1, y1),
                score=float(np.clip(score, 0.0, 1.0)),
                landmarks=lm,  # type: ignore[arg-type]
            )
        )
    out.sort(key=lambda d: d.score, reverse=True)
    return out


def check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise ValueError(f"detectors take BGR frames of shape (H, W, 3); got {shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"detectors take uint8 frames; got {frame.dtype}")
