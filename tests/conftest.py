"""Shared fixtures. Real-data tests find the data through FACEFLEET_TEST_DATA (one setting)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.data import shared_data_root
from tests.postgres import postgres_server  # noqa: F401  (the fixture, for every test)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """../shared/data (or FACEFLEET_TEST_DATA); tests that need it skip when it is absent."""
    root = shared_data_root()
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
    from facefleet.core.detectors import DetectorConfig, create_detector

    return create_detector("retinaface", DetectorConfig())


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real extractor checkpoint with random weights (no trained model needed)."""
    import torch

    from facefleet.core.extractors.b0 import (
        ExtractorMeta,
        TrainingRecord,
        build_extractor,
        save_checkpoint,
    )

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "random-b0.pt"
    save_checkpoint(
        build_extractor(), ExtractorMeta(training=TrainingRecord(note="random init")), path
    )
    return path


@pytest.fixture(scope="session")
def extractor(random_checkpoint: Path):
    from facefleet.core.extractors.b0 import B0Extractor

    return B0Extractor.from_checkpoint(random_checkpoint, "cpu")


def make_video(
    path: Path,
    frames: int = 30,
    size: tuple[int, int] = (160, 120),
    fps: int = 25,
    audio: bool = True,
    rotation: int | None = None,
    draw: Callable[[int], np.ndarray] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """A small H.264 clip; frame k is `draw(k)` (default: grey level 8·k); optional tone."""
    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for k in range(frames):
            image = draw(k) if draw else np.full((height, width, 3), (8 * k) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            samples = int(16000 * frames / fps)
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, 0, Fraction(1, 16000)
            for packet in sound.encode(frame):
                out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path
