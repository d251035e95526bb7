"""Batched paths give exactly what the one-at-a-time paths give: images read in a thread and
recognized in batches, frames of mixed sizes detected together, the background prefetcher."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.core.images import write_image
from facefleet.core.pipeline import FacePipeline
from facefleet.core.prefetch import Prefetcher


def _boxes(faces) -> np.ndarray:
    return np.array([f.box for f in faces]).reshape(-1, 4)


def test_process_images_matches_one_by_one_and_reports_bad_files(
    tmp_path: Path, astronaut_bgr: np.ndarray, retinaface, extractor
) -> None:
    pipeline = FacePipeline(detector=retinaface, extractor=extractor)
    small = cv2.resize(astronaut_bgr, (256, 256))
    paths = []
    for i, image in enumerate([astronaut_bgr, small, astronaut_bgr[:, ::-1], small]):
        paths.append(tmp_path / f"{i}.png")
        write_image(paths[-1], np.ascontiguousarray(image))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths.insert(2, broken)

    batched = list(pipeline.process_images(paths, batch_size=3))

    assert [item.path for item in batched] == paths
    assert batched[2].error is not None and "broken.jpg" in str(batched[2].error)
    assert batched[2].result is None
    for item in batched[:2] + batched[3:]:
        single, _ = pipeline.process_image(item.path)
        assert item.error is None and item.result is not None
        assert len(item.result.faces) == len(single.faces) >= 1
        assert np.allclose(_boxes(item.result.faces), _boxes(single.faces), atol=1e-3)
        assert item.result.source == str(item.path)


def test_mixed_sizes_are_detected_as_if_alone(astronaut_bgr: np.ndarray, retinaface) -> None:
    pipeline = FacePipeline(detector=retinaface, align_refine=False)
    frames = [astronaut_bgr, cv2.resize(astronaut_bgr, (300, 300)), astronaut_bgr]
    together = pipeline.detect(frames)
    for frame, faces in zip(frames, together, strict=True):
        (alone,) = pipeline.detect([frame])
        assert np.allclose(_boxes(faces), _boxes(alone), atol=1e-3)


def test_prefetcher_yields_in_order_then_raises_the_producers_error() -> None:
    def produce():
        yield from range(5)
        raise ValueError("decoder broke")

    seen = []
    with Prefetcher(produce, depth=2) as items, pytest.raises(ValueError, match="decoder broke"):
        for item in items:
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetcher_close_stops_the_producer_early() -> None:
    produced = []
    stopped = threading.Event()

    def produce():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            stopped.set()

    with Prefetcher(produce, depth=4) as items:
        batches = items.batches(3)
        assert next(batches) == [0, 1, 2]
    assert stopped.wait(5)
    assert len(produced) < 100
