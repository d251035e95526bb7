"""Which archive a process uses: the configured database (`FACEFLEET_ARCHIVE_URL`); in the
in-process mode without one, an embedded PostgreSQL under `FACEFLEET_ARCHIVE_DIR` (beside
the local store), started on first use and stopped when the process exits; on a cluster
without one, none; with `FACEFLEET_ARCHIVE=false`, none."""

from __future__ import annotations

import atexit
import logging
import threading

from facefleet.archive.store import ArchiveStore
from facefleet.core.settings import Settings

log = logging.getLogger("facefleet.archive")

_lock = threading.Lock()
_opened: dict[str, ArchiveStore] = {}


def open_archive(settings: Settings) -> ArchiveStore | None:
    """The archive of these settings, its schema migrated; None when there is none."""
    if not settings.archive:
        return None
    if settings.archive_url:
        key = settings.archive_url
    elif not settings.broker_url:
        key = f"embedded:{settings.archive_path}"
    else:
        return None
    with _lock:
        if key in _opened:
            return _opened[key]
        if settings.archive_url:
            archive = ArchiveStore(settings.archive_url)
        else:
            archive = ArchiveStore(_start_embedded(settings).dsn)
        archive.migrate()
        _opened[key] = archive
        return archive


def _start_embedded(settings: Settings):  # type: ignore[no-untyped-def]
    from facefleet.archive.embedded_server import (
        start_embedded_postgres,
        stop_embedded_postgres,
    )

    folder = settings.archive_path
    folder.mkdir(parents=True, exist_ok=True)
    server = start_embedded_postgres(folder / "pg", log_file=folder / "postgres.log")
    log.info("archive: embedded PostgreSQL on 127.0.0.1:%d", server.port)
    if not server.adopted:
        # Another process's server (adopted) keeps running for it.
        atexit.register(stop_embedded_postgres, server)
    return server
