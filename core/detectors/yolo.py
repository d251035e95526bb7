"""YOLOv8-face detector: an ultralytics pose model whose 5 keypoints are the face landmarks."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facefleet.core.detectors.base import DetectorConfig, check_frame, downscale, to_detections
from facefleet.core.errors import ModelError
from facefleet.core.schemas import FaceDetection

log = logging.getLogger(__name__)

N_LANDMARKS = 5


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception; ultralytics messages are multi-line with emoji prefixes."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.removeprefix("ERROR ❌️").strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _prepare_ultralytics_env(config_dir: Path | None) -> None:
    """Keep ultralytics offline and inside our config dir.

    ultralytics reads these variables once, at import time (`ultralytics.utils`):
    YOLO_OFFLINE makes `is_online()` skip its DNS probe so ONLINE is False, which turns off
    update checks, analytics and pip auto-updates; YOLO_AUTOINSTALL=0 stops `check_requirements`
    from pip-installing a module a checkpoint asks for; YOLO_CONFIG_DIR is where it writes
    settings.json (default ~/.config).
    """
    # Forced even over a user's value: facefleet promises never to touch the network.
    os.environ["YOLO_OFFLINE"] = "1"
    # The user may have a reason to allow installs (it still cannot download while offline).
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    if config_dir is not None:
        config_dir = Path(config_dir).expanduser()
        try:
            config_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ModelError(
                f"cannot create the ultralytics config dir {config_dir}: {e.strerror or e}"
            ) from e
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


def _undo_pil_patch() -> None:
    """Restore PIL.Image.open, which ultralytics replaces process-wide on import.

    Its replacement tries to pip-install pi-heif whenever a file is not a known image, so
    after this detector loaded, a user's corrupt image would raise ModuleNotFoundError (or
    start an install) instead of facefleet's clear "not an image" error.
    """
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def _as_numpy(x: Any) -> np.ndarray:
    """Results fields are torch tensors (possibly on GPU); accept numpy too for older versions."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


class YoloFaceDetector:
    """Runs a YOLOv8-face checkpoint (e.g. yolov8n-face.pt) through ultralytics."""

    name = "yolov8-face"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        weights = config.weights
        if weights is None:
            raise ModelError(
                "yolov8-face needs a weights file and none was given "
                "(facefleet never downloads weights; pass --detector-weights PATH)"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ModelError(
                f"yolov8-face needs a weights file: {path} {what} "
                "(facefleet never downloads weights; pass --detector-weights PATH)"
            )
        if path.suffix.lower() != ".pt":
            # ultralytics would treat a .yaml as "build an untrained model" and other suffixes as
            # export formats whose runtimes it may try to install; neither is what the user meant.
            raise ModelError(f"yolov8-face weights must be a PyTorch .pt checkpoint; got {path}")
        # Absolute path: ultralytics re-downloads a corrupt file only when given a bare asset name,
        # so a resolved path guarantees it never deletes or replaces the user's file.
        path = path.resolve()

        _prepare_ultralytics_env(config.config_dir)
        try:
            from ultralytics import YOLO
            from ultralytics import utils as ultralytics_utils
            from ultralytics.utils import DEFAULT_CFG_DICT
        except ImportError as e:
            raise ModelError(
                f"yolov8-face needs the ultralytics package ({_one_line(e)}); "
                "install facefleet with its dependencies"
            ) from e

        _undo_pil_patch()

        if getattr(ultralytics_utils, "ONLINE", False):
            # Someone imported ultralytics before the variables above were set, and they are
            # only read at import; say so rather than pretend this process is offline.
            log.warning(
                "ultralytics was imported before facefleet set YOLO_OFFLINE=1; "
                "it may still try to reach the network in this process"
            )

        try:
            self.model = YOLO(str(path))
        except Exception as e:  # torch/pickle/ultralytics raise many types for one user problem
            raise ModelError(f"cannot load yolov8-face weights {path}: {_one_line(e)}") from e

        self._check_is_face_pose(path)

        cuda = config.device.startswith("cuda")
        # ultralytics >= 8.4 replaced `half` by `quantize` and warns on every call with `half`.
        if "quantize" in DEFAULT_CFG_DICT:
            self._precision: dict[str, Any] = {"quantize": 16 if cuda else None}
        else:
            self._precision = {"half": cuda}

    def _check_is_face_pose(self, path: Path) -> None:
        task = getattr(self.model, "task", None)
        net = getattr(self.model, "model", None)
        kpt_shape = getattr(net, "kpt_shape", None)
        if kpt_shape is None and net is not None and hasattr(net, "model"):
            kpt_shape = getattr(net.model[-1], "kpt_shape", None)  # the Pose head keeps it too
        n_kpts = int(kpt_shape[0]) if kpt_shape else None
        if task != "pose" or n_kpts != N_LANDMARKS:
            found = f"a {task or 'unknown'} model" + (
                f" with {n_kpts} keypoints" if n_kpts is not None else ""
            )
            raise ModelError(
                f"{path} is {found}; yolov8-face expects a YOLOv8-face pose model with "
                f"{N_LANDMARKS} landmark keypoints (eyes, nose, mouth corners)"
            )

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        if len(frames) == 0:
            return []
        for frame in frames:
            check_frame(frame)
        cfg = self.config
        scaled = [downscale(frame, cfg.max_input_side) for frame in frames]
        results = self.model.predict(
            source=[small for small, _ in scaled],
            conf=cfg.score_threshold,
            iou=cfg.nms_threshold,
            device=cfg.device,
            verbose=False,
            **self._precision,
        )
        out: list[list[FaceDetection]] = []
        for frame, (_, scale), r in zip(frames, scaled, results, strict=True):
            boxes = _as_numpy(r.boxes.xyxy).reshape(-1, 4)
            scores = _as_numpy(r.boxes.conf).reshape(-1)
            # __init__ made sure this is a 5-keypoint pose model, so keypoints are always there.
            landmarks = _as_numpy(r.keypoints.xy).reshape(-1, N_LANDMARKS, 2)
            out.append(
                to_detections(
                    boxes,
                    scores,
                    landmarks,
                    scale=scale,
                    frame_shape=frame.shape,
                    min_face_size=cfg.min_face_size,
                )
            )
        return out
