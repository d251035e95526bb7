"""Feature extractor backends, chosen by name (like the detectors).

    dlib-resnet   dlib's ResNet descriptor re-built in torch (the default: it names people
                  best, see README), 128-d, 150 px dlib chip; weights from the
                  face-recognition-models wheel
    facefleet-b0  the EfficientNet-B0 that facefleet trains, 512-d, ArcFace 112 px crop;
                  shipped inside facefleet (or a checkpoint of your own)
    onnx          any ArcFace-convention ONNX model you supply (e.g. insightface's
                  w600k_r50.onnx), with an optional JSON sidecar
    none          no recognition: faces are detected and tracked, never named

Every backend declares its crop geometry, normalization, embedding size, id and calibrated
thresholds (`Extractor.card`); imports are lazy, so naming one never loads the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from facefleet.core.errors import ModelError
from facefleet.core.extractors.base import Extractor, ExtractorCard, ExtractorConfig
from facefleet.core.names import ExtractorName


def _dlib_resnet(config: ExtractorConfig) -> Extractor:
    from facefleet.core.extractors.dlib_resnet import DlibResNetExtractor

    return DlibResNetExtractor(config)


def _facefleet_b0(config: ExtractorConfig) -> Extractor:
    from facefleet.core.extractors.b0 import load_b0

    return load_b0(config)


def _onnx(config: ExtractorConfig) -> Extractor:
    from facefleet.core.extractors.onnx_file import OnnxFileExtractor

    return OnnxFileExtractor(config)


EXTRACTORS: dict[str, Callable[[ExtractorConfig], Extractor]] = {
    "dlib-resnet": _dlib_resnet,
    "facefleet-b0": _facefleet_b0,
    "onnx": _onnx,
}
assert set(EXTRACTORS) | {"none"} == set(get_args(ExtractorName))


def create_extractor(name: str, config: ExtractorConfig | None = None) -> Extractor:
    """Build the extractor backend called `name`."""
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        known = ", ".join([*sorted(EXTRACTORS), "none"])
        raise ModelError(f"unknown extractor {name!r}; choose one of: {known}") from None
    return factory(config or ExtractorConfig())


__all__ = ["EXTRACTORS", "Extractor", "ExtractorCard", "ExtractorConfig", "create_extractor"]
