"""Errors that carry a message meant for the user, not a traceback."""

from __future__ import annotations

from pathlib import Path


class FacefleetError(Exception):
    """Base class: the message is complete and safe to show to a user as one line.

    `reason` says what is wrong; `subject`, when given, names what it is wrong with (a file,
    an input); the message is "subject: reason". Code that reports the same problem about
    another name (the user's file name instead of a worker's temporary copy) uses `about`,
    never a split of the message."""

    def __init__(self, reason: str, *, subject: str | Path | None = None) -> None:
        self.reason = reason
        self.subject = None if subject is None else str(subject)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}" if self.subject else self.reason

    def about(self, subject: str | Path) -> FacefleetError:
        """The same error, about another subject."""
        return type(self)(self.reason, subject=subject)


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
        raise InputError("no such file", subject=path)
    if path.stat().st_size == 0:
        raise InputError("empty file", subject=path)
    return path
