"""Milliseconds per 640×480 frame for each detector backend (and the landmark refine pass).

Run: .venv/bin/python bench/detectors.py [--yolo-weights yolov8n-face.pt] [--repeat 30]
Without real YOLOv8-face weights the same architecture is built from ultralytics' YAML
(random weights: same compute, meaningless boxes). Results are medians; the refine pass is
reported as a ratio to plain detection measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from facefleet.core.alignment import refine_landmarks
from facefleet.core.detectors import DetectorConfig, create_detector


def frame_640x480() -> np.ndarray:
    """The astronaut photo placed in a 640×480 frame (one real face)."""
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[:, 64:576] = cv2.resize(face, (512, 480))
    return frame


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def yaml_built_weights(folder: Path) -> Path:
    from facefleet.core.detectors.yolo import _prepare_ultralytics_env

    _prepare_ultralytics_env(folder / "cfg")  # offline before ultralytics is first imported
    import ultralytics
    import yaml
    from ultralytics import YOLO

    cfg = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8-pose.yaml").read_text()
    )
    cfg.update(nc=1, kpt_shape=[5, 3])
    spec = folder / "yolov8n-face.yaml"
    spec.write_text(yaml.safe_dump(cfg))
    path = folder / "yolov8n-face.pt"
    YOLO(str(spec)).save(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yolo-weights", type=Path)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    frame = frame_640x480()
    results: dict[str, float] = {}

    retina = create_detector("retinaface", DetectorConfig())
    results["retinaface_ms"] = median_ms(lambda: retina.detect([frame]), args.repeat)
    faces = retina.detect([frame])
    results["retinaface_plus_refine_ms"] = median_ms(
        lambda: refine_landmarks([frame], retina.detect([frame]), retina), args.repeat
    )
    results["faces_in_frame"] = len(faces[0])

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.yolo_weights or yaml_built_weights(Path(tmp))
        yolo = create_detector(
            "yolov8-face", DetectorConfig(weights=weights, config_dir=Path(tmp) / "cfg")
        )
        results["yolov8n_face_ms"] = median_ms(lambda: yolo.detect([frame]), args.repeat)
    results["yolo_weights"] = str(args.yolo_weights or "architecture built from YAML")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
