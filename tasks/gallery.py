"""Gallery changes on workers: enrolling needs the detector and extractor (gpu queue);
removing only rewrites arrays (cpu queue). Each change writes a new gallery version under
a lock, so two concurrent enrolls cannot lose each other's people; workers notice the new
version on their next task."""

from __future__ import annotations

import tempfile
from pathlib import Path

from facefleet.core.errors import GalleryError
from facefleet.jobs.records import EnrollReport, RemoveReport
from facefleet.jobs.storage import StorageUnavailable
from facefleet.tasks.app import app
from facefleet.tasks.locks import cluster_lock
from facefleet.tasks.runtime import get_runtime


@app.task(
    name="facefleet.gallery_enroll",
    autoretry_for=(StorageUnavailable,),
    retry_backoff=2,
    max_retries=5,
)
def gallery_enroll(gallery: str, person: str, keys: list[str], sources: list[str]) -> dict:
    """Enroll `person` from the uploaded images at `keys` (deleted afterwards)."""
    from facefleet.core.gallery import Gallery, check_person_name
    from facefleet.jobs.gallery_store import load_gallery, save_gallery

    rt = get_runtime()
    check_person_name(person)
    registry = rt.registry
    extractor = registry.extractor(registry.current_model_id())
    if extractor is None:
        raise GalleryError("enrolling needs an extractor, and none is configured")
    with tempfile.TemporaryDirectory(prefix="facefleet-enroll-") as tmp:
        paths, names = [], {}
        for i, key in enumerate(keys):
            local = rt.store.get_file(key, Path(tmp) / f"{i:04d}{Path(key).suffix}")
            paths.append(local)
            names[str(local)] = sources[i] if i < len(sources) else Path(key).name
        with cluster_lock(f"gallery:{gallery}", ttl_s=600):
            current = load_gallery(rt.store, gallery, extractor) or Gallery.empty(extractor)
            before = len(current)
            issues = current.add_person(
                person, paths, registry.detector(), extractor, rt.settings.align_refine
            )
            added = len(current) - before
            if added:
                # Samples remember the original file name, not the worker's temp path.
                for sample in current.samples[before:]:
                    sample.source = names.get(sample.source, sample.source)
                save_gallery(rt.store, gallery, current)
    for key in keys:
        rt.store.delete(key)
    return EnrollReport(
        gallery=gallery,
        person=person,
        added=added,
        issues=[f"{names.get(i.source, i.source)}: {i.reason}" for i in issues],
        people=current.people,
        faces=len(current),
    ).model_dump()


@app.task(
    name="facefleet.gallery_remove",
    autoretry_for=(StorageUnavailable,),
    retry_backoff=2,
    max_retries=5,
)
def gallery_remove(gallery: str, person: str) -> dict:
    """Remove every crop and embedding of `person` (a new gallery version without them)."""
    from facefleet.jobs.gallery_store import load_gallery, save_gallery

    rt = get_runtime()
    with cluster_lock(f"gallery:{gallery}", ttl_s=600):
        current = load_gallery(rt.store, gallery, None)
        if current is None:
            raise GalleryError(f"no gallery named {gallery!r}")
        removed = current.remove_person(person)
        if removed:
            save_gallery(rt.store, gallery, current)
    return RemoveReport(
        gallery=gallery, person=person, removed=removed, people=current.people, faces=len(current)
    ).model_dump()
