"""The default detector on real photos: recall, false positives, batching, downscaling."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from facefleet.core.detectors import DetectorConfig, create_detector
from facefleet.core.detectors.base import Detector
from facefleet.core.errors import ModelError
from facefleet.core.images import read_image
from facefleet.core.schemas import FaceDetection
from facefleet.core.settings import Settings


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_match(truth: list[tuple[float, ...]], found: list[FaceDetection]) -> tuple[int, int]:
    """(true positives, false positives) with one detection per ground-truth box."""
    used: set[int] = set()
    tp = 0
    for box in truth:
        scored = [(iou(box, d.box), j) for j, d in enumerate(found) if j not in used]
        best, j = max(scored, default=(0.0, -1))
        if best >= 0.5:
            tp += 1
            used.add(j)
    return tp, len(found) - len(used)


def test_astronaut_has_one_face_with_ordered_landmarks(retinaface, astronaut_bgr) -> None:
    faces = retinaface.detect([astronaut_bgr])[0]
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.9
    (lex, ley), (rex, rey), (_nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    x0, y0, x1, y1 = face.box
    assert lex < rex and mlx < mrx  # image-left first
    assert max(ley, rey) < ny < min(mly, mry)  # eyes above nose above mouth
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks)


def test_detector_is_the_protocol_and_registry_refuses_unknown(retinaface) -> None:
    assert isinstance(retinaface, Detector)
    with pytest.raises(ModelError, match="unknown detector"):
        create_detector("mtcnn")


def test_batch_of_mixed_sizes_equals_one_by_one(retinaface, astronaut_bgr) -> None:
    small = astronaut_bgr[:300, 100:400].copy()
    blank = np.full((240, 320, 3), 127, dtype=np.uint8)
    batch = retinaface.detect([astronaut_bgr, small, blank])
    singles = [retinaface.detect([f])[0] for f in (astronaut_bgr, small, blank)]
    assert [len(r) for r in batch] == [len(r) for r in singles] == [1, 1, 0]
    for got, want in zip(batch, singles, strict=True):
        for a, b in zip(got, want, strict=True):
            assert np.allclose(a.box, b.box, atol=1.5)
    assert retinaface.detect([]) == []


def test_large_frames_are_downscaled_and_mapped_back(astronaut_bgr) -> None:
    import cv2

    big = cv2.resize(astronaut_bgr, (2048, 2048))
    full = create_detector("retinaface", DetectorConfig(max_input_side=4096)).detect([big])[0]
    small = create_detector("retinaface", DetectorConfig(max_input_side=512)).detect([big])[0]
    assert full and len(small) == 1
    # Results are sorted by score; the astronaut's face is the best one at both scales.
    assert iou(full[0].box, small[0].box) > 0.8
    assert np.abs(full[0].landmarks_array() - small[0].landmarks_array()).max() < 2048 * 0.02


def test_min_face_size_drops_small_faces(astronaut_bgr) -> None:
    faces = create_detector("retinaface", DetectorConfig(min_face_size=500)).detect([astronaut_bgr])
    assert faces == [[]]


def test_rejects_non_bgr_frames(retinaface) -> None:
    with pytest.raises(ValueError, match="BGR"):
        retinaface.detect([np.zeros((10, 10), dtype=np.uint8)])


@pytest.mark.data
def test_recall_on_annotated_group_photos(data_root: Path) -> None:
    """Done-when of the foundation issue: recall >= 0.95 at IoU 0.5, <= 1 false positive."""
    folder = data_root / "images" / "dlib_faces"
    truth: dict[str, list[tuple[float, ...]]] = {}
    with open(folder / "boxes_derived.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            x, y, w, h = (float(row[k]) for k in "xywh")
            truth.setdefault(row["file"], []).append((x, y, x + w, y + h))
    settings = Settings()
    detector = create_detector(
        "retinaface",
        DetectorConfig(
            score_threshold=settings.det_score_threshold, min_face_size=settings.min_face_size
        ),
    )
    tp = fp = total = 0
    for name, boxes in sorted(truth.items()):
        found = detector.detect([read_image(folder / name)])[0]
        t, f = greedy_match(boxes, found)
        tp, fp, total = tp + t, fp + f, total + len(boxes)
    recall = tp / total
    print(f"\nretinaface on dlib_faces: recall {recall:.3f} ({tp}/{total}), false positives {fp}")
    assert total == 43
    assert recall >= 0.95
    assert fp <= 1
