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
from facefleet.core.device import onnx_session_of
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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"dlib-resnet-{digest[:12]}"


class DlibResNetExtractor(CardBacked):
    """dlib's descriptor on DLIB_150 chips, L2-normalized (dlib's raw descriptors have norms
    of 1.3-1.7 and are compared by raw distance; facefleet compares unit vectors)."""

    def __init__(self, config: ExtractorConfig) -> None:
        from facefleet.core.extractors.dlib_net import load_dlib_resnet

        path = Path(config.weights) if config.weights else default_weights()
        self.model = load_dlib_resnet(path)
        self.device = config.device
        self.batch_size = config.batch_size
        self.means = np.asarray(self.model.input_means.tolist(), dtype=np.float32)
        model_id = weights_id(path)
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
            source=str(path),
        )
        self._session: Any = None
        self._use_torch = config.runtime == "torch" or config.device.startswith("cuda")
        if config.runtime == "onnx" and config.device != "cpu":
            raise ModelError("the onnx extractor runtime runs on the CPU; use torch on CUDA")
        if self._use_torch:
            self.model = self.model.to(config.device)
        else:
            self._session = onnx_session_of(self.model, DLIB_150.size, config.threads)

    @property
    def runtime(self) -> str:
        return "torch" if self._use_torch else "onnx"

    def _inputs(self, crops: np.ndarray) -> np.ndarray:
        rgb = np.asarray(crops)[..., ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - self.means) / 256.0).transpose(0, 3, 1, 2))

    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, 128) unit rows from BGR DLIB_150 chips."""
        return embed_in_batches(
            crops, self.batch_size, self.dim, lambda batch: self._forward(self._inputs(batch))
        )

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            (y,) = self._session.run(None, {"input": x})
            return y
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(x).to(self.device)
            with torch.autocast(
                device_type="cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")
            ):
                y = self.model(tensor)
            return y.float().cpu().numpy()


# Until calibrated: dlib's impostor pairs on LFW DevTest at the 99.9th and 99.99th percentile.
_DLIB_GATES = TrackingGates(link=0.926, appearance=0.94)


def _uncalibrated(model_id: str) -> Thresholds:
    log.warning("no calibration shipped for %s: using dlib's own rule (distance 0.6)", model_id)
    # dlib's raw distance 0.6 corresponds to about cosine 0.9 on the unit descriptors.
    return Thresholds(cosine=0.9, euclidean=0.45)
