"""What a stack's folder records: stack.json (names, pids, ports and logs of what it
started; no secrets) and stack.env (its FACEFLEET_* settings, secrets included, mode 0600)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facefleet.localstack.errors import StackError
from facefleet.localstack.processes import Service

STACK_JSON = "stack.json"
STACK_ENV = "stack.env"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by this user only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through os.open
    with os.fdopen(fd, "w") as out:
        out.write(text)


def load(workdir: Path) -> dict[str, Any]:
    """The record in DIR/stack.json; StackError when there is none."""
    path = Path(workdir) / STACK_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StackError(f"no stack in {workdir} ({STACK_JSON} not found)") from None
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from None


def services(record: Mapping[str, Any]) -> list[Service]:
    """The processes a stack.json record names, in the order they were started."""
    return [Service.from_json(s) for s in record.get("services", [])]


def save(workdir: Path, started: Sequence[Service], extra: Mapping[str, Any]) -> None:
    """Replace DIR/stack.json (atomically) with `started` and the fields in `extra`."""
    record = {
        "version": 1,
        "dir": str(workdir),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
        "services": [s.to_json() for s in started],
    }
    tmp = workdir / (STACK_JSON + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(workdir / STACK_JSON)


def env_file_text(values: Mapping[str, str]) -> str:
    """stack.env: a shell that sources it reaches the stack (and nothing else)."""
    lines = [
        "# facefleet local stack: `source` this file to reach it. Contains secrets (mode 0600).",
        "unset FACEFLEET_RESULT_BACKEND FACEFLEET_S3_REGION FACEFLEET_ARCHIVE_URL",
        *(f"export {key}={shlex.quote(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def write_env(workdir: Path, values: Mapping[str, str]) -> None:
    write_private(Path(workdir) / STACK_ENV, env_file_text(values))


def stack_env(workdir: Path) -> dict[str, str]:
    """The FACEFLEET_* settings of the stack in `workdir` (what stack.env exports), e.g. for
    a test that points a client or a worker at it."""
    path = Path(workdir) / STACK_ENV
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc.strerror}") from None
    values = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, quoted = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(quoted)[0] if quoted else ""
    return values
