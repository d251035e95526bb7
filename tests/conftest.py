"""Shared fixtures. Real-data tests find the data through FACEFLEET_TEST_DATA (one setting)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.settings import Settings


def _data_root() -> Path:
    return Settings().test_data


@pytest.fixture(scope="session")
def data_root() -> Path:
    """../shared/data (or FACEFLEET_TEST_DATA); tests that need it skip when it is absent."""
    root = _data_root()
    if not (root / "MANIFEST.md").is_file():
        pytest.skip(
            f"real test data not found at {root} "
            "(set FACEFLEET_TEST_DATA to the shared data folder)"
        )
    return root


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """A real photograph that ships with scikit-image (Eileen Collins), as BGR."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def retinaface():
    from core.detectors import DetectorConfig, create_detector

    return create_detector("retinaface", DetectorConfig())


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real extractor checkpoint with random weights (no trained model needed)."""
    import torch

    from core.embedding import ExtractorMeta, build_extractor, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "random-b0.pt"
    save_checkpoint(build_extractor(), ExtractorMeta(training={"note": "random init"}), path)
    return path


@pytest.fixture(scope="session")
def embedder(random_checkpoint: Path):
    from core.embedding import FaceEmbedder

    return FaceEmbedder.from_checkpoint(random_checkpoint, "cpu")
