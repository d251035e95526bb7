"""The aligned-LFW cache is keyed by what shapes its crops, so a cache made by other code is
never served (a stale cache once made a model's calibration unreproducible)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefleet.training.facecache import FaceCache, aligned_lfw_cache, crop_fingerprint

IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abba_Eban/Abba_Eban_0001.jpg"]


def test_fingerprint_follows_what_shapes_the_crops() -> None:
    assert crop_fingerprint(112) == crop_fingerprint(112)
    assert crop_fingerprint(112) != crop_fingerprint(128)
    assert crop_fingerprint(112) != crop_fingerprint(112, refine=False)


@pytest.mark.data
def test_a_cache_made_by_other_code_is_not_served(data_root: Path, tmp_path: Path) -> None:
    # What an older facefleet left behind: same images, other crops, the old unkeyed name.
    stale = FaceCache(IMAGES, np.zeros((2, 112, 112, 3), np.uint8), np.zeros(2, bool))
    stale.save(tmp_path / "lfw-aligned-112.npz")
    cache = aligned_lfw_cache(data_root / "lfw", IMAGES, tmp_path, progress=False, log=str)
    assert cache.take(IMAGES).max() > 0  # real faces, not the stale zeros
    built = tmp_path / f"lfw-aligned-112-{crop_fingerprint(112)}.npz"
    assert built.is_file()
    again = aligned_lfw_cache(data_root / "lfw", IMAGES, tmp_path, progress=False, log=str)
    assert np.array_equal(again.take(IMAGES), cache.take(IMAGES))
