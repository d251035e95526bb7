"""What the tasks of one process share: settings, the object store and the model registry.

Workers use the environment's settings; the in-process mode of the SDK configures its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from facefleet.core.settings import Settings, get_settings
from facefleet.jobs.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from facefleet.jobs.registry import ModelRegistry
    from facefleet.jobs.source_cache import SourceCache


@dataclass
class Runtime:
    settings: Settings
    store: ObjectStore
    _registry: ModelRegistry | None = field(default=None, repr=False)
    _sources: SourceCache | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def redis(self) -> Any:
        """A client of the broker's Redis (delivery counters, locks)."""
        import redis

        return redis.Redis.from_url(self.settings.broker_url, socket_timeout=5)

    @property
    def registry(self) -> ModelRegistry:
        with self._lock:
            if self._registry is None:
                from facefleet.jobs.registry import ModelRegistry

                self._registry = ModelRegistry(self.settings, self.store)
            return self._registry

    @property
    def sources(self) -> SourceCache:
        """Job inputs on this machine's disk (videos read by frame range)."""
        with self._lock:
            if self._sources is None:
                from facefleet.jobs.source_cache import SourceCache

                self._sources = SourceCache(
                    self.store,
                    self.settings.source_cache_dir,
                    int(self.settings.source_cache_gb * 1024**3),
                )
            return self._sources


_runtime: Runtime | None = None


def configure(settings: Settings, store: ObjectStore | None = None) -> Runtime:
    global _runtime
    if _runtime is not None and _runtime.settings == settings and store is None:
        return _runtime
    _runtime = Runtime(settings, store or open_store(settings))
    return _runtime


def get_runtime() -> Runtime:
    return _runtime if _runtime is not None else configure(get_settings())
