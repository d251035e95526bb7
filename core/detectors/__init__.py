"""Face detector backends, chosen by name."""

from __future__ import annotations

from collections.abc import Callable

from facefleet.core.detectors.base import Detector, DetectorConfig
from facefleet.core.errors import ModelError
from facefleet.core.settings import Settings


def _retinaface(config: DetectorConfig) -> Detector:
    from facefleet.core.detectors.retinaface import RetinaFaceDetector

    return RetinaFaceDetector(config)


def _yolov8_face(config: DetectorConfig) -> Detector:
    from facefleet.core.detectors.yolo import YoloFaceDetector

    return YoloFaceDetector(config)


DETECTORS: dict[str, Callable[[DetectorConfig], Detector]] = {
    "retinaface": _retinaface,
    "yolov8-face": _yolov8_face,
}


def create_detector(name: str, config: DetectorConfig | None = None) -> Detector:
    """Build the detector backend called `name`."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise ModelError(f"unknown detector {name!r}; choose one of: {known}") from None
    return factory(config or DetectorConfig())


def detector_from_settings(settings: Settings, device: str = "cpu") -> Detector:
    config = DetectorConfig(
        score_threshold=settings.det_score_threshold,
        nms_threshold=settings.det_nms_threshold,
        min_face_size=settings.min_face_size,
        max_input_side=settings.max_input_side,
        weights=settings.detector_weights,
        device=device,
        config_dir=settings.yolo_config_dir,
        threads=settings.threads,
    )
    return create_detector(settings.detector, config)


__all__ = ["DETECTORS", "Detector", "DetectorConfig", "create_detector", "detector_from_settings"]
