"""yolov8-face detector, run for real on an untrained YOLOv8n-face built from ultralytics' own YAML.

No weights ship with the tests and nothing may be downloaded, so the checkpoint is the exact
YOLOv8n-pose architecture with 1 class and 5 keypoints, randomly initialised and saved the way
ultralytics saves models. Its boxes are meaningless, but every code path (load, predict, scaling,
conversion) is the one a real yolov8n-face.pt goes through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facefleet.core.detectors.base import Detector, DetectorConfig, downscale
from facefleet.core.detectors.yolo import YoloFaceDetector
from facefleet.core.errors import ModelError
from facefleet.core.schemas import FaceDetection

REPO_ROOT = Path(__file__).resolve().parents[1]
YOLO_ENV_VARS = ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")
# Random-init class scores sit around 1e-3..1e-2, so a tiny threshold yields plenty of boxes.
LOW_SCORE = 1e-6


@contextmanager
def yolo_env_restored() -> Iterator[None]:
    """The detector sets process-wide env vars on purpose; keep them out of other tests."""
    saved = {k: os.environ.get(k) for k in YOLO_ENV_VARS}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_yolov8n_face(
    workdir: Path,
    *,
    kpt_shape: tuple[int, int] = (5, 3),
    base_yaml: str = "yolov8-pose.yaml",
    seed: int = 0,
) -> Any:
    """Build an untrained YOLOv8n-face (pose, nc=1, 5 keypoints) from the YAML ultralytics ships.

    Returns the `ultralytics.YOLO` object. Import ultralytics with YOLO_OFFLINE=1 and a private
    YOLO_CONFIG_DIR set first (see `face_weights`), since it reads them at import time.
    """
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    src = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / base_yaml
    cfg = yaml.safe_load(src.read_text())
    cfg["nc"] = 1
    if "kpt_shape" in cfg:
        cfg["kpt_shape"] = list(kpt_shape)
    workdir.mkdir(parents=True, exist_ok=True)
    # ultralytics takes the scale from the file name ("yolov8n..." -> the `n` row of `scales`).
    dst = workdir / f"yolov8n-face-{Path(base_yaml).stem}-{kpt_shape[0]}kpt.yaml"
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.manual_seed(seed)
    return YOLO(str(dst))


def save_yolov8n_face_weights(path: Path, **build_kwargs: Any) -> Path:
    """Write an untrained YOLOv8n-face checkpoint to `path` in the format `YOLO(path)` loads."""
    model = build_yolov8n_face(path.parent / "yaml", **build_kwargs)
    # Model.save writes the {"model": ..., "date": ..., "version": ...} ckpt dict that
    # ultralytics' load_checkpoint expects, exactly like a trained release file.
    model.save(str(path))
    return path


@pytest.fixture(autouse=True)
def _restore_yolo_env() -> Iterator[None]:
    with yolo_env_restored():
        yield


@pytest.fixture(scope="module")
def face_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    with yolo_env_restored():
        # Same settings the detector uses, set before this first ultralytics import so the
        # tests neither probe the network nor write ~/.config/Ultralytics.
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_AUTOINSTALL"] = "0"
        os.environ["YOLO_CONFIG_DIR"] = str(root / "cfg")
        return save_yolov8n_face_weights(root / "yolov8n-face.pt")


def make_config(weights: Path, **overrides: Any) -> DetectorConfig:
    values: dict[str, Any] = {
        "weights": weights,
        "score_threshold": LOW_SCORE,
        "min_face_size": 0,
        "device": "cpu",
        "config_dir": weights.parent / "cfg",
    }
    values.update(overrides)
    return DetectorConfig(**values)


@pytest.fixture(scope="module")
def detector(face_weights: Path) -> YoloFaceDetector:
    with yolo_env_restored():
        return YoloFaceDetector(make_config(face_weights))


def random_frame(h: int = 480, w: int = 640, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def astronaut_frame() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut()[..., ::-1])


def assert_valid(dets: list[FaceDetection], frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    for d in dets:
        assert isinstance(d, FaceDetection)
        assert len(d.box) == 4 and all(isinstance(v, float) for v in d.box)
        x0, y0, x1, y1 = d.box
        assert 0.0 <= x0 <= x1 <= w
        assert 0.0 <= y0 <= y1 <= h
        assert 0.0 <= d.score <= 1.0
        assert len(d.landmarks) == 5
        assert np.isfinite(d.landmarks_array()).all()
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


def test_name_and_model_loaded_once(detector: YoloFaceDetector) -> None:
    assert YoloFaceDetector.name == "yolov8-face"
    assert detector.model.task == "pose"
    assert list(detector.model.model.kpt_shape) == [5, 3]


def test_detect_batch(detector: YoloFaceDetector) -> None:
    frames = [astronaut_frame(), random_frame()]
    model_before = detector.model
    result = detector.detect(frames)
    assert isinstance(result, list) and len(result) == 2
    for dets, frame in zip(result, frames, strict=True):
        assert isinstance(dets, list)
        assert_valid(dets, frame)
    # An untrained net at a ~0 threshold still returns boxes, so the conversion really ran.
    assert sum(len(d) for d in result) > 0
    assert detector.model is model_before


def test_registry_builds_it(face_weights: Path) -> None:
    from facefleet.core.detectors import create_detector

    built = create_detector("yolov8-face", make_config(face_weights))
    assert isinstance(built, YoloFaceDetector)
    assert isinstance(built, Detector)


def test_empty_batch(detector: YoloFaceDetector) -> None:
    assert detector.detect([]) == []


def test_no_detections(face_weights: Path) -> None:
    # Random-init scores never reach 0.99, so ultralytics returns (0, 4) / (0, 5, 2) arrays.
    strict = YoloFaceDetector(make_config(face_weights, score_threshold=0.99))
    assert strict.detect([random_frame(), random_frame(seed=2)]) == [[], []]


def test_bad_frame_rejected(detector: YoloFaceDetector) -> None:
    with pytest.raises(ValueError):
        detector.detect([np.zeros((10, 10), np.uint8)])


def test_large_frame_downscaled_and_mapped_back(
    face_weights: Path, detector: YoloFaceDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_side = YoloFaceDetector(make_config(face_weights, max_input_side=320))
    seen: list[tuple[int, ...]] = []
    real_predict = small_side.model.predict

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.extend(f.shape for f in kwargs["source"])
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(small_side.model, "predict", spy)
    big = random_frame(480, 640, seed=3)
    (dets,) = small_side.detect([big])
    assert seen == [(240, 320, 3)]
    assert dets
    assert_valid(dets, big)

    # Same net on the same downscaled pixels, unscaled: coordinates must differ by exactly x2.
    shrunk, scale = downscale(big, 320)
    assert scale == pytest.approx(0.5)
    (ref,) = detector.detect([shrunk])
    assert len(ref) == len(dets)
    np.testing.assert_allclose(
        [d.box for d in dets], [np.asarray(r.box) / scale for r in ref], rtol=1e-5, atol=1e-3
    )
    np.testing.assert_allclose(
        [d.landmarks for d in dets],
        [np.asarray(r.landmarks) / scale for r in ref],
        rtol=1e-5,
        atol=1e-3,
    )
    assert [d.score for d in dets] == pytest.approx([r.score for r in ref])


def test_missing_weights(tmp_path: Path) -> None:
    missing = tmp_path / "yolov8n-face.pt"
    with pytest.raises(ModelError) as err:
        YoloFaceDetector(make_config(missing))
    message = str(err.value)
    assert str(missing) in message
    assert "never downloads" in message
    assert "\n" not in message
    assert not missing.exists()  # nothing was fetched in its place

    with pytest.raises(ModelError, match="never downloads"):
        YoloFaceDetector(DetectorConfig(weights=None))
    with pytest.raises(ModelError, match="not a file"):
        YoloFaceDetector(make_config(tmp_path))


def test_corrupt_weights(tmp_path: Path) -> None:
    bad = tmp_path / "yolov8n-face.pt"
    garbage = b"this is not a torch checkpoint\x00\xff" * 100
    bad.write_bytes(garbage)
    with pytest.raises(ModelError) as err:
        YoloFaceDetector(make_config(bad))
    assert str(bad) in str(err.value)
    assert "\n" not in str(err.value)
    assert bad.read_bytes() == garbage  # ultralytics' "re-download corrupt file" never kicked in


def test_empty_weights_file(tmp_path: Path) -> None:
    empty = tmp_path / "yolov8n-face.pt"
    empty.touch()
    with pytest.raises(ModelError, match=str(empty)):
        YoloFaceDetector(make_config(empty))


@pytest.mark.parametrize(
    ("base_yaml", "kpt_shape"),
    [("yolov8-pose.yaml", (17, 3)), ("yolov8.yaml", (5, 3))],
    ids=["17-keypoint-pose", "plain-detect"],
)
def test_not_a_face_model(
    face_weights: Path, tmp_path: Path, base_yaml: str, kpt_shape: tuple[int, int]
) -> None:
    # face_weights first: it imports ultralytics offline before this test builds another model.
    other = save_yolov8n_face_weights(
        tmp_path / "other.pt", base_yaml=base_yaml, kpt_shape=kpt_shape
    )
    with pytest.raises(ModelError, match="5 landmark") as err:
        YoloFaceDetector(make_config(other))
    assert str(other) in str(err.value)


def test_env_policy(face_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_dir = tmp_path / "nested" / "cfg"
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    monkeypatch.setenv("YOLO_AUTOINSTALL", "1")
    YoloFaceDetector(make_config(face_weights, config_dir=cfg_dir))
    assert os.environ["YOLO_OFFLINE"] == "1"  # offline is not negotiable
    assert os.environ["YOLO_AUTOINSTALL"] == "1"  # the user's explicit choice is kept
    assert os.environ["YOLO_CONFIG_DIR"] == str(cfg_dir)
    assert cfg_dir.is_dir()

    monkeypatch.delenv("YOLO_AUTOINSTALL")
    YoloFaceDetector(make_config(face_weights))
    assert os.environ["YOLO_AUTOINSTALL"] == "0"


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    from pathlib import Path

    attempts = []

    def deny(name):
        def refuse(*args, **kwargs):
            attempts.append(f"{name}{args[:2]!r}")
            raise OSError("network disabled by test")
        return refuse

    socket.getaddrinfo = deny("getaddrinfo")
    socket.gethostbyname = deny("gethostbyname")
    socket.create_connection = deny("create_connection")
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(f"connect{address!r}")
                raise OSError("network disabled by test")
            return real(self, address)
        return connect

    socket.socket.connect = guarded(real_connect)
    socket.socket.connect_ex = guarded(real_connect_ex)

    import numpy as np
    from facefleet.core.detectors.base import DetectorConfig
    from facefleet.core.detectors.yolo import YoloFaceDetector

    config = DetectorConfig(
        weights=Path(sys.argv[1]), config_dir=Path(sys.argv[2]),
        score_threshold=1e-6, min_face_size=0, device="cpu",
    )
    faces = YoloFaceDetector(config).detect([np.zeros((120, 160, 3), np.uint8)])

    import ultralytics.utils
    import ultralytics.utils.checks
    print(json.dumps({
        "attempts": attempts,
        "online": ultralytics.utils.ONLINE,
        "autoinstall": ultralytics.utils.checks.AUTOINSTALL,
        "frames": len(faces),
    }))
    """
)


def test_fresh_process_stays_offline(face_weights: Path, tmp_path: Path) -> None:
    """In a clean interpreter the detector imports ultralytics first: no DNS, no connect."""
    home = tmp_path / "home"
    home.mkdir()
    cfg_dir = tmp_path / "cfg"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_CONFIG"))}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(face_weights), str(cfg_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"attempts": [], "online": False, "autoinstall": False, "frames": 1}
    assert (cfg_dir / "Ultralytics" / "settings.json").is_file()
    assert not (home / ".config" / "Ultralytics").exists()


def test_loading_yolo_keeps_bad_images_a_clear_input_error(
    face_weights: Path, tmp_path: Path
) -> None:
    """ultralytics patches PIL.Image.open to pip-install plugins; the detector undoes it."""
    from facefleet.core.errors import InputError
    from facefleet.core.images import read_image

    with yolo_env_restored():
        YoloFaceDetector(DetectorConfig(weights=face_weights, config_dir=tmp_path / "cfg"))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "text.jpg")
