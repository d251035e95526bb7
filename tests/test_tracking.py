"""Tracking: association by overlap and appearance, stable ids, no swaps."""

from __future__ import annotations

import numpy as np

from facefleet.core.tracking import FaceTracker, associate, iou_matrix


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_two_faces_keep_their_ids_while_moving() -> None:
    tracker = FaceTracker(max_gap=5)
    seen = []
    for t in range(20):
        boxes = np.array([[10 + 2 * t, 10, 50 + 2 * t, 50], [200 - 2 * t, 10, 240 - 2 * t, 50]])
        seen.append(tracker.update(t, boxes, None))
    assert all(ids == [0, 1] for ids in seen)


def test_appearance_keeps_ids_when_boxes_swap_places() -> None:
    """Two people cross: overlap is ambiguous, the embeddings decide."""
    a, b = np.eye(4)[0], np.eye(4)[1]
    tracker = FaceTracker(similarity_gate=0.8)
    tracker.update(0, np.array([[0, 0, 40, 40], [30, 0, 70, 40]]), np.stack([a, b]))
    ids = tracker.update(1, np.array([[30, 0, 70, 40], [0, 0, 40, 40]]), np.stack([a, b]))
    assert ids == [0, 1]


def test_gap_longer_than_max_gap_starts_a_new_track() -> None:
    tracker = FaceTracker(max_gap=3)
    box = np.array([[0, 0, 40, 40]])
    assert tracker.update(0, box, None) == [0]
    assert tracker.update(3, box, None) == [0]
    assert tracker.update(10, box, None) == [1]


def test_far_apart_and_unlike_faces_are_not_linked() -> None:
    pairs = associate(np.array([[0.0]]), np.array([[0.1]]), min_iou=0.2, similarity_gate=0.5)
    assert pairs == []
    pairs = associate(np.array([[0.0]]), np.array([[0.9]]), min_iou=0.2, similarity_gate=0.5)
    assert pairs == [(0, 0)]  # a fast move: no overlap, but clearly the same face


def test_a_cut_to_another_person_in_the_same_place_starts_a_new_track() -> None:
    """Overlap alone is not enough when the faces look unlike (a shot cut)."""
    a, b = np.eye(4)[0], 0.6 * np.eye(4)[0] + 0.8 * np.eye(4)[1]  # cosine 0.6
    tracker = FaceTracker()
    tracker.update(0, np.array([[0, 0, 40, 40]]), a[None])
    assert tracker.update(1, np.array([[2, 0, 42, 40]]), b[None]) == [1]
    assert tracker.update(2, np.array([[2, 0, 42, 40]]), b[None]) == [1]
