"""`onnx`: a face recognition model of your own as an ONNX file, in the ArcFace convention
unless a sidecar says otherwise (insightface's recognition models, e.g. `w600k_r50.onnx`,
follow it): an (N, 3, S, S) input of RGB crops aligned to the ArcFace five-point template,
normalized as (pixel - 127.5) / 127.5, and an (N, D) embedding out.

A sidecar `<model>.json` beside the file may give what the file cannot say: the channel
order, mean and std, another template, and calibrated thresholds (`facefleet calibrate
--extractor onnx --model M.onnx --out M.json` writes them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ValidationError

from facefleet.core.alignment import ARCFACE_112, CropGeometry
from facefleet.core.errors import ModelError
from facefleet.core.extractors.base import (
    CardBacked,
    ExtractorCard,
    ExtractorConfig,
    embed_in_batches,
)
from facefleet.core.extractors.calibration import shipped_calibration
from facefleet.core.schemas import IdentificationReport, Point, Thresholds, TrackingGates

log = logging.getLogger(__name__)


class OnnxSidecar(BaseModel):
    """`<model>.json`: how to feed the model, when it is not the ArcFace convention, and
    its calibration."""

    input_size: int | None = None
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    template: tuple[Point, Point, Point, Point, Point] | None = None
    thresholds: Thresholds | None = None
    identification: IdentificationReport | None = None
    tracking: TrackingGates | None = None
    lfw_disjoint: bool | None = None
    licence: str | None = None


def sidecar_path(model: Path) -> Path:
    return model.with_suffix(".json")


def read_sidecar(model: Path) -> OnnxSidecar:
    path = sidecar_path(model)
    if not path.is_file():
        return OnnxSidecar()
    try:
        return OnnxSidecar.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"not a readable ONNX sidecar ({first})", subject=path) from None


class OnnxFileExtractor(CardBacked):
    """A user-supplied ONNX model in ONNX Runtime (CUDA when asked for and available)."""

    def __init__(self, config: ExtractorConfig) -> None:
        if config.weights is None:
            raise ModelError(
                "the onnx extractor needs a model file: --model PATH.onnx (FACEFLEET_MODEL)"
            )
        path = Path(config.weights)
        if not path.is_file():
            raise ModelError("ONNX model file not found", subject=path)
        data = path.read_bytes()
        sidecar = read_sidecar(path)
        self.session = _session(path, data, config)
        size = _input_size(path, self.session, sidecar)
        outputs = self.session.get_outputs()
        dim = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if not isinstance(dim, int) or dim < 2:
            raise ModelError(
                f"output shape {outputs[0].shape if outputs else None} is not (N, D)", subject=path
            )
        template = sidecar.template
        geometry = (
            CropGeometry(name="sidecar", size=size, template=template)
            if template
            else ARCFACE_112.scaled(size)
        )
        model_id = "onnx-" + hashlib.sha256(data).hexdigest()[:12]
        self.input_name = self.session.get_inputs()[0].name
        self.device = config.device
        self.batch_size = config.batch_size
        self.bgr = sidecar.channel_order == "BGR"
        self.mean = np.asarray(sidecar.mean, dtype=np.float32)
        self.std = np.asarray(sidecar.std, dtype=np.float32)
        shipped = shipped_calibration(model_id)
        thresholds = sidecar.thresholds or (shipped.thresholds if shipped else None)
        if thresholds is None:
            log.warning(
                "%s has no calibrated thresholds (no sidecar %s): using cosine 0.5; "
                "run `facefleet calibrate --extractor onnx --model %s --out %s`",
                path,
                sidecar_path(path).name,
                path,
                sidecar_path(path),
            )
        self.card = ExtractorCard(
            backend="onnx",
            model_id=model_id,
            embedding_size=dim,
            geometry=geometry,
            normalization=f"{sidecar.channel_order}, (pixel - {sidecar.mean}) / {sidecar.std}",
            thresholds=thresholds or Thresholds(),
            identification=sidecar.identification or (shipped.identification if shipped else None),
            tracking=sidecar.tracking or (shipped.tracking if shipped else None) or TrackingGates(),
            lfw_disjoint=sidecar.lfw_disjoint,
            licence=sidecar.licence,
            source=str(path),
        )

    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        return embed_in_batches(crops, self.batch_size, self.dim, self._forward)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        pixels = batch.astype(np.float32)
        if not self.bgr:
            pixels = pixels[..., ::-1]
        x = np.ascontiguousarray(((pixels - self.mean) / self.std).transpose(0, 3, 1, 2))
        (y, *_) = self.session.run(None, {self.input_name: x})
        return np.asarray(y, dtype=np.float32).reshape(len(x), -1)


def _session(path: Path, data: bytes, config: ExtractorConfig) -> Any:
    import onnxruntime as ort

    from facefleet.core.device import onnx_session_options

    providers = ["CPUExecutionProvider"]
    if config.device.startswith("cuda") and "CUDAExecutionProvider" in (
        ort.get_available_providers()
    ):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(data, onnx_session_options(config.threads), providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"not a loadable ONNX model ({first[:200]})", subject=path) from None


def _input_size(path: Path, session: Any, sidecar: OnnxSidecar) -> int:
    """S of an (N, 3, S, S) input: from the file, else from the sidecar."""
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[1] != 3:
        found = [list(i.shape) for i in inputs]
        raise ModelError(f"input shape {found} is not one (N, 3, S, S) image batch", subject=path)
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        if height != width:
            raise ModelError(f"input {height}x{width} is not square", subject=path)
        if sidecar.input_size not in (None, height):
            raise ModelError(
                f"the sidecar says input {sidecar.input_size} px, the file {height} px",
                subject=path,
            )
        return int(height)
    if sidecar.input_size is None:
        raise ModelError(
            f"input size {height}x{width} is not fixed: give input_size in the sidecar "
            f"{sidecar_path(path).name}",
            subject=path,
        )
    return sidecar.input_size
