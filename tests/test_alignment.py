"""Alignment: eyes level and on the template after rotation; border faces are padded."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.core.alignment import align_face, refine_landmarks, similarity_transform, template
from facefleet.core.images import read_image


def eye_angle_deg(points: np.ndarray) -> float:
    (lx, ly), (rx, ry) = points[0], points[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_transform() -> None:
    src = template(112)
    angle = math.radians(25)
    rot = 1.7 * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = src @ rot.T + np.array([40.0, -12.0])
    matrix = similarity_transform(moved, src)
    assert np.allclose(apply(matrix, moved), src, atol=1e-6)


def check_rotations(image: np.ndarray, detector, angles: list[float]) -> list[float]:
    """Rotate a real face by known angles, detect + refine + align; per angle the eye tilt.

    The reference is the upright photo's own alignment: its eye points, moved by the exact
    rotation, are mapped through the alignment computed on the rotated photo. A perfect
    pipeline gives the same orientation at every angle (tilt 0 relative to upright).
    """
    upright = refine_landmarks([image], [detector.detect([image])[0]], detector)[0]
    assert upright, "no face in the upright photo"
    truth = max(upright, key=lambda f: f.area).landmarks_array().astype(np.float64)
    upright_tilt = eye_angle_deg(apply(similarity_transform(truth, template(112)), truth))
    centre = tuple(float(v) for v in truth.mean(axis=0))
    errors = []
    for angle in angles:
        rot = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rotated = cv2.warpAffine(image, rot, (image.shape[1], image.shape[0]))
        true_points = apply(rot, truth)
        faces = detector.detect([rotated])[0]
        assert faces, f"no face after rotating by {angle}°"
        faces = refine_landmarks([rotated], [faces], detector)[0]
        face = min(faces, key=lambda f: np.abs(f.landmarks_array() - true_points).sum())
        matrix = similarity_transform(face.landmarks_array(), template(112))
        aligned_truth = apply(matrix, true_points)
        errors.append(abs(eye_angle_deg(aligned_truth) - upright_tilt))
        # The eyes land on the template positions, within a few pixels of 112.
        assert np.abs(aligned_truth[:2] - template(112)[:2]).max() < 6
    return errors


ANGLES = [-30.0, -15.0, -5.0, 10.0, 20.0, 35.0]


def test_eyes_level_after_alignment_astronaut(astronaut_bgr, retinaface) -> None:
    errors = check_rotations(astronaut_bgr, retinaface, ANGLES)
    assert max(errors) < 2.0, errors


@pytest.mark.data
def test_eyes_level_after_alignment_lfw(data_root: Path, retinaface) -> None:
    """The first photo of each of the six most photographed LFW people."""
    lfw = data_root / "lfw"
    people = [
        "George_W_Bush",
        "Colin_Powell",
        "Tony_Blair",
        "Donald_Rumsfeld",
        "Gerhard_Schroeder",
        "Ariel_Sharon",
    ]
    worst = []
    for person in people:
        errors = check_rotations(
            read_image(lfw / person / f"{person}_0001.jpg"), retinaface, ANGLES
        )
        worst.append(max(errors))
    print(f"\nworst eye tilt after alignment per LFW photo (deg): {np.round(worst, 2)}")
    assert max(worst) < 2.0


def test_refinement_beats_first_pass_landmarks(astronaut_bgr, retinaface) -> None:
    """Without the refine pass, tilted faces align measurably worse."""
    face = retinaface.detect([astronaut_bgr])[0][0]
    centre = tuple(float(v) for v in face.landmarks_array().mean(axis=0))
    rot = cv2.getRotationMatrix2D(centre, 30.0, 1.0)
    rotated = cv2.warpAffine(astronaut_bgr, rot, (astronaut_bgr.shape[1], astronaut_bgr.shape[0]))
    first = retinaface.detect([rotated])[0]
    refined = refine_landmarks([rotated], [first], retinaface)[0]
    truth = apply(rot, face.landmarks_array().astype(np.float64))
    err_first = np.abs(first[0].landmarks_array() - truth).mean()
    err_refined = np.abs(refined[0].landmarks_array() - truth).mean()
    assert err_refined < err_first


def test_aligned_crop_shape_and_size_parameter(astronaut_bgr, retinaface) -> None:
    face = retinaface.detect([astronaut_bgr])[0][0]
    assert align_face(astronaut_bgr, face).shape == (112, 112, 3)
    assert align_face(astronaut_bgr, face, 160).shape == (160, 160, 3)


def test_face_at_the_border_is_padded_not_dropped(astronaut_bgr, retinaface) -> None:
    face = retinaface.detect([astronaut_bgr])[0][0]
    # Cut the photo through the middle of the face: half of it is outside the image.
    cut_x = int((face.box[0] + face.box[2]) / 2)
    partial = np.ascontiguousarray(astronaut_bgr[:, cut_x:])
    points = face.landmarks_array() - np.array([cut_x, 0], dtype=np.float32)
    crop = align_face(partial, points)
    assert crop.shape == (112, 112, 3)
    left, right = crop[:, :40], crop[:, 72:]
    assert (left.sum(axis=2) == 0).mean() > 0.5  # padded with black where the image ends
    assert right.std() > 10  # the visible half of the face is there


def test_a_face_far_larger_than_the_crop_is_averaged_not_sampled() -> None:
    """A 5x larger face is shrunk by halving first: a pattern finer than the crop's pixels
    averages to grey instead of aliasing into noise."""
    fine = np.indices((1200, 1200)).sum(axis=0) % 2 * 255  # a 1-pixel checkerboard
    image = np.repeat(fine[..., None], 3, axis=2).astype(np.uint8)
    points = template(112) * 5.0 + 300  # the template scaled by 5: crop scale 0.2
    crop = align_face(image, points)
    assert abs(float(crop.mean()) - 127.5) < 8
    assert crop.std() < 12  # plain bilinear sampling of this pattern gives std ~ 127
