"""Produce items in a background thread so the models always have the next batch waiting
(decoding video frames, reading image files)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """Iterates `produce()` in a thread, at most `depth` items ahead of the consumer.

    An exception in the producer is re-raised in the consumer's thread after the items
    produced before it; `close()` stops the producer early (always call it, or use `with`).
    """

    _END = object()

    def __init__(self, produce: Callable[[], Iterable[T]], depth: int = 64, name: str = "") -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(produce,), name=name or "facefleet-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, produce: Callable[[], Iterable[T]]) -> None:
        try:
            for item in produce():
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # re-raised in the consumer's thread
            self._error = exc
        finally:
            self._queue.put(self._END)

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is self._END:
                break
            yield item  # type: ignore[misc]
        if self._error is not None:
            raise self._error

    def batches(self, size: int) -> Iterator[list[T]]:
        batch: list[T] = []
        for item in self:
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.1)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
