"""Gallery pointers in the object store: which galleries exist, their live version, people
and face count. Read by the client SDK, so nothing here needs numpy or the pipeline."""

from __future__ import annotations

from facefleet.jobs.records import GalleryPointer, gallery_pointer_key
from facefleet.jobs.storage import ObjectStore


def gallery_pointer(store: ObjectStore, name: str) -> GalleryPointer | None:
    return store.get_model_or_none(gallery_pointer_key(name), GalleryPointer)


def list_galleries(store: ObjectStore) -> dict[str, GalleryPointer]:
    out = {}
    for key in store.list("galleries/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "current.json":
            pointer = gallery_pointer(store, parts[1])
            if pointer is not None:
                out[parts[1]] = pointer
    return out
