"""A pretrained face embedder used only as a distillation teacher (a labelled variant).

dlib's ResNet face descriptor (`dlib-bin` + `face-recognition-models`, both from PyPI, the
weights inside the wheel) gives 128-d embeddings. Its author states that the identities of
LFW were kept out of its training data. It never runs at inference: the shipped extractor is
always the EfficientNet-B0, and the model card says when a teacher was used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facefleet.core.detectors.base import Detector
from facefleet.core.errors import ModelError
from facefleet.core.images import read_image
from facefleet.training.facecache import central_face

TEACHER_ID = "dlib_face_recognition_resnet_model_v1"
TEACHER_DIM = 128


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the distillation teacher needs the face-recognition-models and dlib-bin packages "
            "(pip install dlib-bin face-recognition-models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibTeacher:
    """dlib's 5-point shape predictor + ResNet descriptor on a face box we detected."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelError("the distillation teacher needs dlib (pip install dlib-bin)") from None
        models = _models_dir()
        shape_file = models / "shape_predictor_5_face_landmarks.dat"
        net_file = models / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (shape_file, net_file):
            if not f.is_file():
                raise ModelError(f"teacher weights {f} are missing")
        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(shape_file))
        self.net = dlib.face_recognition_model_v1(str(net_file))

    def embed(
        self, images_bgr: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]
    ) -> np.ndarray:
        """(N, 128) unit-length descriptors of the face in each box (x0, y0, x1, y1)."""
        dlib = self._dlib
        chips = []
        for image, box in zip(images_bgr, boxes, strict=True):
            rgb = np.ascontiguousarray(image[:, :, ::-1])
            rect = dlib.rectangle(*(round(v) for v in box))
            chips.append(dlib.get_face_chip(rgb, self.shape(rgb, rect), size=150, padding=0.25))
        if not chips:
            return np.zeros((0, TEACHER_DIM), dtype=np.float32)
        vectors = np.asarray(self.net.compute_face_descriptor(chips), dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def teacher_embeddings(
    root: Path,
    relpaths: Sequence[str],
    detector: Detector,
    cache_file: Path,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(N, 128) teacher descriptors, cached in `cache_file` (rows of zeros: no face)."""
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as data:
            cached = dict(zip((str(p) for p in data["relpaths"]), data["vectors"], strict=True))
        if all(p in cached for p in relpaths):
            return np.stack([cached[p] for p in relpaths])
    teacher = DlibTeacher()
    vectors = np.zeros((len(relpaths), TEACHER_DIM), dtype=np.float32)
    for start in range(0, len(relpaths), batch_size):
        chunk = relpaths[start : start + batch_size]
        images = [read_image(root / rel) for rel in chunk]
        faces = [
            central_face(f, im.shape) for f, im in zip(detector.detect(images), images, strict=True)
        ]
        found = [k for k, f in enumerate(faces) if f is not None]
        if found:
            vectors[[start + k for k in found]] = teacher.embed(
                [images[k] for k in found],
                [faces[k].box for k in found],  # type: ignore[union-attr]
            )
        if on_batch:
            on_batch(len(chunk))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + ".part")
    with open(tmp, "wb") as fh:
        np.savez(fh, relpaths=np.array(list(relpaths)), vectors=vectors)
    tmp.replace(cache_file)
    return vectors
