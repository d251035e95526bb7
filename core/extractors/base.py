"""What every feature extractor backend provides: its crop geometry, its embedding and its
calibrated thresholds. Backends are chosen by name (facefleet.core.extractors)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from facefleet.core.alignment import CropGeometry
from facefleet.core.names import ExtractorRuntime
from facefleet.core.schemas import (
    IdentificationReport,
    Thresholds,
    TrackingGates,
    TrainingRecord,
)


class ExtractorCard(BaseModel):
    """Everything about an extractor except its weights: where it comes from and what it
    was measured to do. Shown by `facefleet eval`, stored with galleries and archives."""

    backend: str = Field(description="registry name, e.g. dlib-resnet")
    model_id: str = Field(description="id of these weights; tags every embedding made")
    embedding_size: int
    geometry: CropGeometry
    normalization: str = Field(description="how crops become network input")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    lfw_disjoint: bool | None = Field(
        default=None,
        description="True when the weights' authors kept LFW identities out of training; "
        "None when it is not known",
    )
    training: TrainingRecord | None = Field(
        default=None, description="how facefleet trained it (its own models only)"
    )
    identification: IdentificationReport | None = Field(
        default=None, description="the open-set protocol's figures when it was calibrated"
    )
    tracking: TrackingGates = Field(default_factory=TrackingGates)
    licence: str | None = None
    source: str | None = Field(default=None, description="where the weights come from")

    def identification_dir(self, far: float = 0.01) -> float | None:
        """Faces named right at this false-accept rate, on LFW DevTest's open-set protocol."""
        return self.identification.at(far).dir if self.identification else None


@runtime_checkable
class Extractor(Protocol):
    """Turns aligned BGR uint8 crops (in the extractor's own geometry) into L2-normalized
    float32 embeddings."""

    card: ExtractorCard
    device: str

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def geometry(self) -> CropGeometry: ...

    @property
    def thresholds(self) -> Thresholds: ...

    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray: ...


class CardBacked:
    """What every backend derives from its card."""

    card: ExtractorCard

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def dim(self) -> int:
        return self.card.embedding_size

    @property
    def geometry(self) -> CropGeometry:
        return self.card.geometry

    @property
    def thresholds(self) -> Thresholds:
        return self.card.thresholds


@dataclass(frozen=True)
class ExtractorConfig:
    """What a backend is built from; `weights` None means the backend's default file."""

    weights: Path | None = None
    device: str = "cpu"
    batch_size: int = 32
    runtime: ExtractorRuntime = "auto"
    threads: int | None = None
    # Where ONNX exports are kept, so that later processes skip torch (None: not kept).
    onnx_cache: Path | None = None


def embed_in_batches(
    crops: Sequence[np.ndarray] | np.ndarray,
    batch_size: int,
    dim: int,
    forward: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """`forward` over the crops `batch_size` at a time, as (N, dim) unit rows."""
    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    out = [forward(crops[s : s + batch_size]) for s in range(0, len(crops), batch_size)]
    return unit_rows(np.concatenate(out))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
