"""Test videos the benchmarks make from the data set's clips."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_looped(
    sources: Sequence[Path], out: Path, frames: int, size: tuple[int, int], fps: float
) -> Path:
    """The `sources` scaled to `size` (width, height) and played in turn, again and again,
    until `frames` frames are written to `out` (H.264, crf 18)."""
    import cv2

    from facefleet.core.video import H264Writer, read_frames

    width, height = size
    written = 0
    with H264Writer(out, width, height, fps, crf=18) as writer:
        while written < frames:
            for source in sources:
                for frame in read_frames(source):
                    writer.write(cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA))
                    written += 1
                    if written == frames:
                        return out
    return out
