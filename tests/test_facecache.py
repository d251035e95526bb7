"""The LFW landmark cache is keyed by what decides its points, so a cache made by other
code is never served (a stale cache once made a model's calibration unreproducible), and
crops come from it in any extractor's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefleet.core.alignment import ARCFACE_112, align_face
from facefleet.core.extractors.dlib_resnet import DLIB_150
from facefleet.core.images import read_image
from facefleet.training.facecache import FaceCache, landmark_fingerprint, lfw_face_cache

IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abba_Eban/Abba_Eban_0001.jpg"]


def test_fingerprint_follows_what_decides_the_landmarks() -> None:
    assert landmark_fingerprint() == landmark_fingerprint()
    assert landmark_fingerprint(refine=True) != landmark_fingerprint(refine=False)


@pytest.mark.data
def test_a_cache_made_by_other_code_is_not_served(data_root: Path, tmp_path: Path) -> None:
    lfw = data_root / "lfw"
    # What other code would have left behind: the same images, other points.
    stale = FaceCache(lfw, IMAGES, np.zeros((2, 5, 2)), np.zeros(2, bool))
    stale.save(tmp_path / "lfw-landmarks-000000000000.npz")
    cache = lfw_face_cache(lfw, IMAGES, tmp_path, progress=False, log=str)
    assert cache.landmarks.std() > 5  # real faces' points, not the stale zeros
    assert (tmp_path / f"lfw-landmarks-{landmark_fingerprint()}.npz").is_file()
    again = lfw_face_cache(lfw, IMAGES, tmp_path, progress=False, log=str)
    assert np.array_equal(again.landmarks, cache.landmarks)
    # Crops in each extractor's own geometry, cut from the same points.
    for geometry in (ARCFACE_112, DLIB_150):
        crops = again.crops(IMAGES, geometry)
        assert crops.shape == (2, geometry.size, geometry.size, 3)
        expected = align_face(read_image(lfw / IMAGES[1]), cache.landmarks[1], geometry)
        assert np.array_equal(crops[1], expected)
