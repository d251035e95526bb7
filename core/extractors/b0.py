"""`facefleet-b0`: the 512-d EfficientNet-B0 that facefleet trains (ArcFace on LFW
DevTrain, distilled from dlib's network), and its checkpoint format.

A checkpoint carries everything inference needs beside the weights (input size,
normalization, embedding size, calibrated thresholds), so training and inference cannot
disagree on preprocessing. Its crops are the ArcFace five-point template at the input size.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field, ValidationError

from facefleet.core.alignment import ARCFACE_112
from facefleet.core.device import onnx_session_of
from facefleet.core.errors import ModelError
from facefleet.core.extractors.base import CardBacked, ExtractorCard, ExtractorConfig
from facefleet.core.names import ExtractorRuntime
from facefleet.core.schemas import IdentificationReport, Thresholds, TrainingRecord

CHECKPOINT_FORMAT = "facefleet-extractor"
CHECKPOINT_VERSION = 1
BACKBONE_FEATURES = 1280  # EfficientNet-B0's pooled feature width

log = logging.getLogger(__name__)


class ExtractorMeta(BaseModel):
    """Everything about an extractor except its weights."""

    model_id: str = ""
    arch: Literal["efficientnet_b0"] = "efficientnet_b0"
    input_size: int = 112
    channel_order: Literal["RGB"] = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    embedding_size: int = 512
    dropout: float = 0.05
    thresholds: Thresholds = Field(default_factory=Thresholds)
    identification: IdentificationReport | None = Field(
        default=None, description="LFW DevTest open-set figures at calibration"
    )
    training: TrainingRecord = Field(default_factory=TrainingRecord)


def build_extractor(embedding_size: int = 512, dropout: float = 0.05) -> Any:
    """EfficientNet-B0 from torchvision (random init, nothing downloaded), 512-d head."""
    from torch import nn
    from torchvision.models import efficientnet_b0

    model = efficientnet_b0(weights=None)
    model.classifier = nn.Sequential(
        nn.Dropout(p=dropout), nn.Linear(BACKBONE_FEATURES, embedding_size)
    )
    return model


def weights_id(state_dict: dict[str, Any]) -> str:
    """A short content hash of the weights, used to tag gallery embeddings."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key]
        digest.update(key.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return "b0-" + digest.hexdigest()[:12]


def save_checkpoint(
    model: Any, meta: ExtractorMeta, path: Path, *, half: bool = False
) -> ExtractorMeta:
    """Write an inference checkpoint; fills in meta.model_id from the weights."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = meta.model_copy(update={"model_id": weights_id(state)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "meta": meta.model_dump(mode="json"),
            "state_dict": state,
        },
        tmp,
    )
    tmp.replace(path)
    return meta


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[Any, ExtractorMeta]:
    """Load (model in eval mode on `device`, meta). Every failure is a ModelError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"extractor checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{path} is not a readable extractor checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a facefleet extractor checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ModelError(
            f"{path} has checkpoint version {payload.get('version')}, "
            f"this facefleet reads version {CHECKPOINT_VERSION}"
        )
    try:
        meta = ExtractorMeta.model_validate(payload["meta"])
    except (KeyError, ValidationError) as exc:
        raise ModelError(f"{path} has invalid metadata: {exc}") from None
    model = build_extractor(meta.embedding_size, meta.dropout)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path} does not match the {meta.arch} extractor: {first}") from None
    if not meta.model_id:
        meta = meta.model_copy(update={"model_id": weights_id(state)})
    model.eval().to(device)
    return model, meta


def shipped_checkpoint() -> Path:
    """The release B0, shipped inside the installed facefleet package."""
    return Path(str(files("facefleet").joinpath("models", "facefleet-b0.pt")))


def load_b0(config: ExtractorConfig) -> B0Extractor:
    """The registry's factory: the checkpoint at `config.weights`, else the shipped one."""
    path = Path(config.weights) if config.weights else shipped_checkpoint()
    return B0Extractor.from_checkpoint(
        path, config.device, config.batch_size, config.runtime, config.threads
    )


class B0Extractor(CardBacked):
    """Turns aligned BGR face crops into L2-normalized float32 embeddings.

    On the CPU the network runs in ONNX Runtime (`runtime` "auto" or "onnx"), on CUDA in
    torch with fp16 autocast. A model still being trained is always run by torch."""

    def __init__(
        self,
        model: Any,
        meta: ExtractorMeta,
        device: str = "cpu",
        batch_size: int = 64,
        runtime: ExtractorRuntime = "torch",
        threads: int | None = None,
    ):
        self.model = model.eval().to(device)
        self.meta = meta
        self.card = ExtractorCard(
            backend="facefleet-b0",
            model_id=meta.model_id,
            embedding_size=meta.embedding_size,
            geometry=ARCFACE_112.scaled(meta.input_size),
            normalization=f"RGB, x/255, mean {meta.mean}, std {meta.std}",
            thresholds=meta.thresholds,
            identification=meta.identification,
            training=meta.training,
            licence="MIT (facefleet)",
            source="facefleet train (see facefleet/models/MODEL_CARD.md)",
        )
        self.device = device
        self.batch_size = batch_size
        self._session: Any = None
        if runtime == "onnx" and device != "cpu":
            raise ModelError("the onnx extractor runtime runs on the CPU; use torch on CUDA")
        if runtime == "onnx" or (runtime == "auto" and device == "cpu"):
            try:
                self._session = onnx_session_of(self.model, meta.input_size, threads)
            except Exception as exc:  # a missing `onnx` package or an exporter limit
                if runtime == "onnx":
                    raise ModelError(f"cannot run the extractor in ONNX Runtime: {exc}") from exc
                log.warning("extractor stays on torch (ONNX export failed: %s)", exc)

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        device: str = "cpu",
        batch_size: int = 64,
        runtime: ExtractorRuntime = "auto",
        threads: int | None = None,
    ) -> B0Extractor:
        model, meta = load_checkpoint(path, device)
        return cls(model, meta, device, batch_size, runtime, threads)

    @property
    def runtime(self) -> str:
        return "onnx" if self._session is not None else "torch"

    def preprocess(self, crops: Sequence[np.ndarray] | np.ndarray) -> Any:
        """BGR uint8 crops -> normalized float tensor (N, 3, S, S), as training sees them."""
        import torch

        size = self.meta.input_size
        arr = np.stack(
            [c if c.shape[:2] == (size, size) else cv2.resize(c, (size, size)) for c in crops]
        )
        x = torch.from_numpy(np.ascontiguousarray(arr[..., ::-1]))  # BGR -> RGB
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.meta.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.meta.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, embedding_size) float32, each row of unit length."""
        import torch

        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                x = self.preprocess(crops[start : start + self.batch_size])
                if self._session is not None:
                    (y,) = self._session.run(None, {"input": x.numpy()})
                    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
                    out.append(y)
                    continue
                x = x.to(self.device)
                with torch.autocast(
                    device_type="cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")
                ):
                    y = self.model(x)
                y = torch.nn.functional.normalize(y.float(), dim=1)
                out.append(y.cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
