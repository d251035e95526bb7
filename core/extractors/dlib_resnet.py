"""`dlib-resnet`: dlib's 2017 face descriptor network (the one behind face_recognition),
re-built in torch (facefleet.core.extractors.dlib_net) and run batched: in ONNX Runtime on
the CPU, in torch with fp16 on CUDA. No dlib at run time.

Its chip is made from facefleet's own five landmarks with `DLIB_150`, a template fitted to
dlib's chip geometry (get_face_chip, 150 px, padding 0.25): on 593 LFW DevTrain photos the
RetinaFace points (after the refine pass) were mapped into dlib's own chip of the same face
and averaged. On LFW DevTest this pipeline scores 0.986 against 0.984 for dlib's own
(HOG box, shape predictor, get_face_chip).

Weights: `dlib_face_recognition_resnet_model_v1.dat` by Davis King (CC0), as shipped in the
`face-recognition-models` wheel, or any copy given as the weights path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facefleet.core.alignment import CropGeometry
from facefleet.core.device import cached_onnx_session, onnx_export
from facefleet.core.errors import ModelError
from facefleet.core.extractors.base import (
    CardBacked,
    ExtractorCard,
    ExtractorConfig,
    embed_in_batches,
)
from facefleet.core.extractors.calibration import shipped_calibration
from facefleet.core.schemas import Thresholds, TrackingGates

log = logging.getLogger(__name__)

WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_150 = CropGeometry(
    name="dlib-chip",
    size=150,
    template=(
        (46.875, 46.063),
        (102.090, 46.100),
        (74.340, 77.246),
        (51.313, 103.925),
        (97.462, 103.969),
    ),
)

# Names the graph a cached export holds (its input: RGB pixels 0..255, normalization inside):
# change it when the export changes, so no process loads a stale file.
ONNX_EXPORT = "rgb255-v1"


def default_weights() -> Path:
    """dlib's weights inside the installed face-recognition-models package (found, not
    imported: its __init__ needs pkg_resources, which new setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the dlib-resnet extractor needs {WEIGHTS_FILE}: install the worker extra "
            "(pip install 'facefleet[worker]', which brings face-recognition-models) or give "
            "the file with --model / FACEFLEET_MODEL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE


def weights_id(path: Path) -> str:
    """The extractor id: a content hash of the weights file."""
    if not path.is_file():
        raise ModelError("dlib face recognition model file not found", subject=path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"dlib-resnet-{digest[:12]}"


class DlibResNetExtractor(CardBacked):
    """dlib's descriptor on DLIB_150 chips, L2-normalized (dlib's raw descriptors have norms
    of 1.3-1.7 and are compared by raw distance; facefleet compares unit vectors)."""

    def __init__(self, config: ExtractorConfig) -> None:
        self.weights = Path(config.weights) if config.weights else default_weights()
        self.device = config.device
        self.batch_size = config.batch_size
        self._net: Any = None
        model_id = weights_id(self.weights)
        calibration = shipped_calibration(model_id)
        self.card = ExtractorCard(
            backend="dlib-resnet",
            model_id=model_id,
            embedding_size=128,
            geometry=DLIB_150,
            normalization="RGB, (pixel - dlib's channel means) / 256, then L2-normalized",
            thresholds=calibration.thresholds if calibration else _uncalibrated(model_id),
            identification=calibration.identification if calibration else None,
            tracking=calibration.tracking if calibration and calibration.tracking else _DLIB_GATES,
            lfw_disjoint=True,  # dlib's author: LFW identities were kept out of training
            licence="CC0 (weights by Davis King; face-recognition-models wheel: MIT)",
            source=str(self.weights),
        )
        self._session: Any = None
        self._use_torch = config.runtime == "torch" or config.device.startswith("cuda")
        if config.runtime == "onnx" and config.device != "cpu":
            raise ModelError("the onnx extractor runtime runs on the CPU; use torch on CUDA")
        if self._use_torch:
            self._net = self.model.to(config.device)
        else:
            # The export takes the normalization in, so a process that finds it cached
            # needs neither torch nor the network's means.
            cached = (
                config.onnx_cache / f"{model_id}.{ONNX_EXPORT}.onnx" if config.onnx_cache else None
            )
            self._session = cached_onnx_session(
                cached, lambda: onnx_export(_normalized(self.model), DLIB_150.size), config.threads
            )

    @property
    def model(self) -> Any:
        """dlib's network in torch (loaded from the weights file when first asked for)."""
        if self._net is None:
            from facefleet.core.extractors.dlib_net import load_dlib_resnet

            self._net = load_dlib_resnet(self.weights)
        return self._net

    @property
    def runtime(self) -> str:
        return "torch" if self._use_torch else "onnx"

    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, 128) unit rows from BGR DLIB_150 chips."""
        return embed_in_batches(crops, self.batch_size, self.dim, self._forward)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(np.asarray(crops)[..., ::-1].transpose(0, 3, 1, 2))
        x = rgb.astype(np.float32)
        if self._session is not None:
            (y,) = self._session.run(None, {"input": x})
            return y
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(x).to(self.device)
            with torch.autocast(
                device_type="cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")
            ):
                y = self.model(_normalize(tensor, self.model))
            return y.float().cpu().numpy()


def _normalized(net: Any) -> Any:
    """`net` taking RGB pixels 0..255: dlib's input normalization as part of the graph."""
    import torch

    class Normalized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(_normalize(x, self.net))

    return Normalized()


def _normalize(x: Any, net: Any) -> Any:
    return (x - net.input_means.view(1, 3, 1, 1)) / 256.0


# Until calibrated: dlib's impostor pairs on LFW DevTest at the 99.9th and 99.99th percentile.
_DLIB_GATES = TrackingGates(link=0.926, appearance=0.94)


def _uncalibrated(model_id: str) -> Thresholds:
    log.warning("no calibration shipped for %s: using dlib's own rule (distance 0.6)", model_id)
    # dlib's raw distance 0.6 corresponds to about cosine 0.9 on the unit descriptors.
    return Thresholds(cosine=0.9, euclidean=0.45)
