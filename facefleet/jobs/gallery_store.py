"""Galleries kept in the object store: `galleries/<name>/v/<version>/` holds one immutable
saved gallery (gallery.json, embeddings.npy, regions.npy; crops.npy before format version 2)
and `galleries/<name>/current.json` points at the live version, so a reader never sees a
half-written gallery and every change has a new version that workers can notice.

Reading and listing pointers (the SDK's part) is in `galleries`; this module loads and saves
the arrays, which needs the pipeline's Gallery.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from facefleet.core.errors import GalleryError
from facefleet.core.gallery import FILES as GALLERY_FILES
from facefleet.jobs.galleries import gallery_pointer
from facefleet.jobs.records import GalleryPointer, gallery_pointer_key, gallery_version_prefix
from facefleet.jobs.storage import ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    from facefleet.core.extractors.base import Extractor
    from facefleet.core.gallery import Gallery


def load_gallery(
    store: ObjectStore,
    name: str,
    extractor: Extractor | None,
    pointer: GalleryPointer | None = None,
) -> Gallery | None:
    """The live version of gallery `name`, re-embedded for `extractor` if it was made by
    another one; None when no such gallery exists."""
    from facefleet.core.gallery import Gallery

    pointer = pointer or gallery_pointer(store, name)
    if pointer is None:
        return None
    prefix = gallery_version_prefix(name, pointer.version)
    with tempfile.TemporaryDirectory(prefix="facefleet-gallery-") as tmp:
        try:
            # Whatever the version holds: the file set changed with the gallery format.
            for key in store.list(prefix):
                store.get_file(key, Path(tmp) / key.rsplit("/", 1)[-1])
        except ObjectNotFound:
            raise GalleryError(
                f"gallery {name!r} version {pointer.version} is incomplete"
            ) from None
        return Gallery.load(Path(tmp), extractor, where=f"gallery {name!r}")


def save_gallery(store: ObjectStore, name: str, gallery: Gallery) -> GalleryPointer:
    """Write a new version, switch the pointer to it, then drop the old version."""
    old = gallery_pointer(store, name)
    version = uuid.uuid4().hex[:12]
    prefix = gallery_version_prefix(name, version)
    with tempfile.TemporaryDirectory(prefix="facefleet-gallery-") as tmp:
        gallery.save(Path(tmp))
        for file in GALLERY_FILES:
            store.put_file(prefix + file, Path(tmp) / file)
    pointer = GalleryPointer(
        version=version, people=gallery.people, faces=len(gallery), model_id=gallery.model_id
    )
    store.put_model(gallery_pointer_key(name), pointer)
    if old is not None and old.version != version:
        store.delete_prefix(gallery_version_prefix(name, old.version))
    return pointer
