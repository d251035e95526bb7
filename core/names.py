"""The vocabulary every layer shares, declared once: metric, device, detector and runtime
names, and the rules for names that become folder or object names. Pure Python: the client
SDK imports it."""

from __future__ import annotations

import re
from typing import Literal, get_args

from facefleet.core.errors import InputError

Metric = Literal["cosine", "euclidean"]
METRICS: tuple[Metric, ...] = get_args(Metric)
DeviceName = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)
DetectorName = Literal["retinaface", "yolov8-face"]
ExtractorRuntime = Literal["auto", "torch", "onnx"]
ExtractorName = Literal["dlib-resnet", "facefleet-b0", "onnx", "none"]
DEFAULT_EXTRACTOR: ExtractorName = "dlib-resnet"

_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")


def check_store_name(name: str, what: str = "name") -> str:
    """Gallery, run and model names become key prefixes: letters, digits, `._-` only."""
    if not isinstance(name, str) or not _STORE_NAME.match(name) or ".." in name:
        raise InputError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-' (no path separators)"
        )
    return name


def is_person_name(name: str) -> bool:
    """Person names become folder and object names: nothing path-like."""
    return (
        bool(name)
        and name not in (".", "..")
        and name == name.strip()
        and not any(c in name for c in "/\\\x00")
    )
