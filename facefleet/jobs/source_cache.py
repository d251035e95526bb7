"""Job inputs on a worker's disk: each downloaded once per machine and shared by its pool
processes, so the analyse and render tasks of one video read its frame ranges straight from
the source instead of from copies in the object store.

An input key never changes content (`jobs/<id>/input/<name>` is written once at submit),
so a file here is either complete (renamed into place after its download) or absent.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from facefleet.jobs.storage import ObjectStore

# A file read this recently may still be opened by another pool process: never evicted.
IN_USE_S = 600.0


class SourceCache:
    def __init__(self, store: ObjectStore, directory: Path, max_bytes: int) -> None:
        self.store = store
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        """A local file with the content of `key`, downloaded if this machine lacks it."""
        local = self.store.local_path(key)
        if local is not None:
            return local
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        target = self.directory / digest / Path(key).name
        if target.is_file():
            os.utime(target)  # least recently used goes first
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            self.store.get_file(key, partial)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        self._evict(keep=target)
        return target

    def _evict(self, keep: Path) -> None:
        files = [p for p in self.directory.glob("*/*") if p.is_file() and p != keep]
        total = sum(p.stat().st_size for p in files) + keep.stat().st_size
        now = time.time()
        for path in sorted(files, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            stat = path.stat()
            if now - stat.st_mtime < IN_USE_S or path.name.endswith(".part"):
                continue
            path.unlink(missing_ok=True)
            total -= stat.st_size
