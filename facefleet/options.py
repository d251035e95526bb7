"""Command-line flags derived from the pydantic models that declare the options.

An option is declared once, as a model field with its type, default, bounds and
description (`Settings`, `TrainOptions`, `JobOptions`, ...); its flag is made here from that
field, and the values a user typed go back into the model, which validates them. So a flag
and the setting, request or config behind it cannot drift apart.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """`X | None` → X; anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argument(name: str, field: FieldInfo, help_suffix: str = "") -> dict[str, Any]:
    kind = _base_type(field.annotation)
    text = field.description or name.replace("_", " ")
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if default is not None and not isinstance(default, BaseModel):
        shown = default.value if hasattr(default, "value") else default
        text += f" (default {shown})"
    spec: dict[str, Any] = {"dest": name, "default": None, "help": text + help_suffix}
    if kind is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif get_origin(kind) is Literal:
        spec["choices"] = list(get_args(kind))
    elif kind in (int, float, str, Path):
        spec["type"] = kind
        spec["metavar"] = {int: "N", float: "X", str: "TEXT", Path: "PATH"}[kind]
    else:
        raise TypeError(f"no command-line form for {name}: {field.annotation}")
    return spec


def add_model_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    names: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, Iterable[str]] | None = None,
    required: Iterable[str] = (),
) -> None:
    """A flag per field of `model` (all of them, or `names`, minus `exclude`). `flags` gives
    a field other spellings (e.g. a short alias); `required` fields must be given."""
    skip, must = set(exclude), set(required)
    chosen = list(names) if names is not None else list(model.model_fields)
    for name in chosen:
        if name in skip:
            continue
        field = model.model_fields[name]
        spellings = [flag_of(name), *((flags or {}).get(name, ()))]
        spec = _argument(name, field, " (required)" if name in must else "")
        parser.add_argument(*spellings, **spec)


def given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` that were given on the command line (unset flags are None, so
    the model's own defaults apply)."""
    values = vars(args)
    return {n: values[n] for n in model.model_fields if values.get(n) is not None}


def missing(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The flags among `names` that were not given."""
    return [flag_of(n) for n in names if getattr(args, n, None) is None]


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one line naming the flags: `--epochs: must be >= 1`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if isinstance(p, str))
        parts.append(f"{flag_of(where) if where else 'option'}: {error.get('msg', 'invalid')}")
    return "invalid option " + "; ".join(parts)
