"""What kind of media a file is, from its name and its first bytes: no decoding, no OpenCV,
no PyAV, so the client SDK can refuse a wrong file before uploading it."""

from __future__ import annotations

from pathlib import Path

import filetype
from pydantic import BaseModel

from facefleet.core.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})


class VideoInfo(BaseModel):
    """A video as probed (container metadata plus the decoded frame count)."""

    source: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    has_audio: bool
    rotation: int
    codec: str


def is_image_path(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_path(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def check_video_container(path: Path) -> None:
    """An InputError unless the file starts like a video container (MP4/MOV, Matroska/WebM,
    AVI, MPEG, ...). Whether it decodes is for the worker to find out."""
    try:
        kind = filetype.guess(str(path))
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", subject=path) from None
    if kind is None or not kind.mime.startswith("video/"):
        found = f"looks like {kind.mime}" if kind is not None else "unknown format"
        raise InputError(f"not a readable video ({found})", subject=path)
