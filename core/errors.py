"""Errors that carry a message meant for the user, not a traceback."""

from pathlib import Path


class FacefleetError(Exception):
    """Base class: the message is complete and safe to show to a user as one line."""


class InputError(FacefleetError):
    """An input file or folder cannot be used (missing, unreadable, wrong kind)."""


class ModelError(FacefleetError):
    """A model or weights file is missing, corrupt or does not match what is expected."""


class GalleryError(FacefleetError):
    """A gallery folder or saved gallery cannot be used."""


def require_input_file(path: Path) -> Path:
    """The path as a Path, or an InputError when it is missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    return path
