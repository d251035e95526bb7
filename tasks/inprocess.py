"""The in-process mode: with no broker configured, the SDK runs each task here, eagerly,
against a local store. Same tasks, same keys, same results as on the workers."""

from __future__ import annotations

from typing import Any

import facefleet.core.pipeline  # noqa: F401  (fails early, and clearly, without the worker extra)
from facefleet.core.settings import Settings
from facefleet.jobs.storage import ObjectStore
from facefleet.tasks import runtime
from facefleet.tasks.app import app


def run_task(
    settings: Settings, store: ObjectStore, name: str, args: list[Any], task_id: str | None
) -> Any:
    """Run task `name` now, in this process; returns its EagerResult."""
    runtime.configure(settings, store)
    app.loader.import_default_modules()
    app.conf.task_always_eager = True
    return app.tasks[name].apply(args=args, task_id=task_id)
