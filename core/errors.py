"""Errors that carry a message meant for the user, not a traceback."""


class FacefleetError(Exception):
    """Base class: the message is complete and safe to show to a user as one line."""


class InputError(FacefleetError):
    """An input file or folder cannot be used (missing, unreadable, wrong kind)."""


class ModelError(FacefleetError):
    """A model or weights file is missing, corrupt or does not match what is expected."""


class GalleryError(FacefleetError):
    """A gallery folder or saved gallery cannot be used."""
