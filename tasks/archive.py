"""The archive as tasks: indexing a finished video job (called by its last step), and what
the SDK asks of the archive (search, unknown people, corrections, forgetting, jobs).

A job whose archive is unreachable at the end is still marked done, with `indexed: false`
and its track summaries and face regions kept in the store: its results do not wait on the
database, and the maintenance task on beat indexes it once the database answers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from facefleet.archive.connect import open_archive
from facefleet.archive.store import ArchiveStore, ArchiveUnavailable
from facefleet.core.errors import FacefleetError, GalleryError, InputError
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import JobInput, JobPlan, check_job_id
from facefleet.jobs.storage import StorageUnavailable
from facefleet.tasks.app import app
from facefleet.tasks.locks import cluster_lock
from facefleet.tasks.runtime import Runtime, get_runtime

if TYPE_CHECKING:
    from facefleet.core.schemas import VideoResult
    from facefleet.core.track_summary import TrackSummaries

log = logging.getLogger("facefleet.tasks.archive")

RETRY = {"autoretry_for": (StorageUnavailable,), "retry_backoff": 2, "max_retries": 5}


def _archive(rt: Runtime) -> ArchiveStore:
    archive = open_archive(rt.settings)
    if archive is None:
        raise FacefleetError(
            "this cluster has no archive: set FACEFLEET_ARCHIVE_URL on its workers"
        )
    return archive


def _url(rt: Runtime):  # type: ignore[no-untyped-def]
    def url(key: str) -> str | None:
        try:
            return rt.store.url(key, rt.settings.presign_expiry_s)
        except Exception:
            return None

    return url


def archive_video(
    rt: Runtime, job: JobStore, plan: JobPlan, source: JobInput, result: VideoResult
) -> bool | None:
    """Cut and store each track's best faces, then record the tracks; None when there is
    no archive or nothing to index, False when the database did not answer."""
    from facefleet.archive.service import store_regions, summaries_key
    from facefleet.core.frame_index import FrameIndex
    from facefleet.core.track_summary import TrackSummaries, cut_regions

    key = summaries_key(job.keys.job_id)
    summaries = rt.store.get_model_or_none(key, TrackSummaries)
    if summaries is None:
        return None
    if not any(f.region_landmarks is not None for t in summaries.tracks for f in t.faces):
        index = (
            rt.store.get_model(job.keys.frame_index, FrameIndex)
            if plan.reading == "source"
            else None
        )
        regions = cut_regions(rt.sources.path(source.key), summaries, 0, index)
        store_regions(rt.store, job.keys.job_id, regions)
        rt.store.put_model(key, summaries, compress=True)
    indexed = index_pending(rt, job.keys.job_id, result, summaries)
    if indexed:
        # The unknowns join or form clusters where the extractor is loaded anyway.
        people_cluster.si(False).apply_async()
    return indexed


def index_pending(
    rt: Runtime, job_id: str, result: VideoResult, summaries: TrackSummaries
) -> bool | None:
    from facefleet.archive.service import index_job

    try:
        archive = open_archive(rt.settings)
        if archive is None:
            return None
        index_job(archive, job_id, result, summaries, datetime.now(UTC))
    except ArchiveUnavailable as exc:
        log.warning("job %s: not indexed yet: %s", job_id, exc)
        return False
    return True


@app.task(name="facefleet.archive_search", **RETRY)
def archive_search(
    person: str | None, gallery: str | None, photo_key: str | None, photo_name: str | None
) -> dict:
    """Appearances of an enrolled person, or of the face in an uploaded photo."""
    from facefleet.archive.service import person_samples, search_vectors
    from facefleet.core.images import decode_image

    rt = get_runtime()
    archive = _archive(rt)
    registry = rt.registry
    extractor = registry.extractor(registry.current_model_id())
    if extractor is None:
        raise FacefleetError("searching needs an extractor, and none is configured")
    note = None
    if person is not None:
        from facefleet.jobs.gallery_store import load_gallery

        name = gallery or "default"
        loaded = load_gallery(rt.store, name, extractor)
        if loaded is None:
            raise GalleryError(f"no gallery named {name!r}")
        samples = person_samples(loaded, person, name)
        query = f"{person} in gallery {name}"
    else:
        assert photo_key is not None
        try:
            image = decode_image(rt.store.get_bytes(photo_key))
        finally:
            rt.store.delete(photo_key)
        faces = registry.detector().detect([image])[0]
        if not faces:
            raise InputError(f"{photo_name}: no face found in the photo")
        face = max(faces, key=lambda f: f.width * f.height)
        if len(faces) > 1:
            note = f"{len(faces)} faces in the photo: the largest was used"
        from facefleet.core.alignment import align_face

        crop = align_face(image, face.landmarks_array(), extractor.geometry)
        samples = extractor.embed(crop[None])
        query = f"photo {photo_name}"
    threshold = extractor.thresholds.for_matching("cosine", len(samples))
    stale = archive.stale_tracks(extractor.model_id)
    if stale:
        note = (note + "; " if note else "") + (
            f"{len(stale)} tracks indexed by another extractor are re-embedded by the "
            "maintenance task and not searched yet"
        )
    report = search_vectors(archive, extractor.model_id, samples, threshold, query, _url(rt), note)
    return report.model_dump(mode="json")


@app.task(name="facefleet.people_list", **RETRY)
def people_list() -> list[dict]:
    from facefleet.archive.service import list_clusters

    rt = get_runtime()
    return [c.model_dump(mode="json") for c in list_clusters(_archive(rt), _url(rt))]


@app.task(name="facefleet.people_show", **RETRY)
def people_show(cluster_id: int) -> list[dict]:
    from facefleet.archive.service import cluster_members

    rt = get_runtime()
    return [t.model_dump(mode="json") for t in cluster_members(_archive(rt), cluster_id, _url(rt))]


@app.task(name="facefleet.people_cluster", **RETRY)
def people_cluster(full: bool = True) -> dict:
    """Cluster the unknown tracks now: incrementally, or afresh (`full`)."""
    from facefleet.archive.service import cluster_distance, cluster_new, recluster

    rt = get_runtime()
    archive = _archive(rt)
    extractor = rt.registry.extractor(rt.registry.current_model_id())
    if extractor is None:
        raise FacefleetError("clustering needs an extractor, and none is configured")
    distance = cluster_distance(extractor, rt.settings.cluster_max_distance)
    step = recluster if full else cluster_new
    with cluster_lock("archive:clusters", ttl_s=600):
        report = step(archive, extractor.model_id, distance, rt.settings.cluster_min_tracks)
    return report.model_dump(mode="json")


def _enroll(rt: Runtime, gallery: str, person: str, faces: list[tuple[str, list[float]]]) -> int:
    from facefleet.archive.service import enroll_track_faces
    from facefleet.core.gallery import Gallery
    from facefleet.jobs.gallery_store import load_gallery, save_gallery

    registry = rt.registry
    extractor = registry.extractor(registry.current_model_id())
    if extractor is None:
        raise GalleryError("enrolling needs an extractor, and none is configured")
    with cluster_lock(f"gallery:{gallery}", ttl_s=600):
        current = load_gallery(rt.store, gallery, extractor) or Gallery.empty(extractor)
        added = enroll_track_faces(rt.store, current, person, faces, extractor)
        if added:
            save_gallery(rt.store, gallery, current)
    return added


@app.task(name="facefleet.people_name", **RETRY)
def people_name(cluster_id: int, name: str, gallery: str, version: int | None) -> dict:
    """Name an unknown-people cluster: its best faces enrolled, its past tracks renamed."""
    from facefleet.archive.records import NameReport
    from facefleet.archive.service import rename_in_result
    from facefleet.core.gallery import check_person_name

    rt = get_runtime()
    check_person_name(name)
    archive = _archive(rt)
    with cluster_lock("archive:clusters", ttl_s=600):
        tracks = archive.cluster_tracks(cluster_id)
        ids = archive.name_cluster(cluster_id, version, name)
    best = sorted(tracks, key=lambda t: -float(t.qualities.max()))[:5]
    faces = [archive.track_regions(t.id)[0] for t in best]
    enrolled = _enroll(rt, gallery, name, faces)
    results = 0
    by_job: dict[str, dict[int, str | None]] = {}
    for t in tracks:
        by_job.setdefault(t.job_id, {})[t.track_id] = name
        archive.add_labelled(name, gallery, archive.track_regions(t.id), t.job_id, t.track_id)
    for job_id, names in by_job.items():
        results += rename_in_result(rt.store, job_id, names)
    return NameReport(
        cluster_id=cluster_id,
        name=name,
        gallery=gallery,
        tracks=len(ids),
        enrolled=enrolled,
        results=results,
    ).model_dump()


@app.task(name="facefleet.people_split", **RETRY)
def people_split(cluster_id: int, tracks: list[list]) -> dict:
    from facefleet.archive.service import split_cluster

    rt = get_runtime()
    archive = _archive(rt)
    extractor = rt.registry.current_model_id() or ""
    with cluster_lock("archive:clusters", ttl_s=600):
        created = split_cluster(
            archive, extractor, cluster_id, [(str(j), int(k)) for j, k in tracks]
        )
    return {"cluster_id": cluster_id, "new_cluster_id": created}


@app.task(name="facefleet.people_merge", **RETRY)
def people_merge(into: int, others: list[int]) -> dict:
    from facefleet.archive.service import merge_clusters

    rt = get_runtime()
    with cluster_lock("archive:clusters", ttl_s=600):
        moved = merge_clusters(_archive(rt), into, others)
    return {"cluster_id": into, "moved": moved}


@app.task(name="facefleet.track_correct", **RETRY)
def track_correct(
    job_id: str, track_id: int, is_name: str | None, not_name: str | None, gallery: str
) -> dict:
    """`--is NAME`: the track is NAME (result JSON, index, gallery, labelled faces);
    `--not NAME`: it is not (named unknown unless it was named otherwise)."""
    from facefleet.archive.records import CorrectionReport
    from facefleet.archive.service import rename_in_result
    from facefleet.core.gallery import check_person_name

    rt = get_runtime()
    check_job_id(job_id)
    archive = _archive(rt)
    track = archive.track(job_id, track_id)
    if track is None:
        raise InputError(f"job {job_id} has no indexed track {track_id}")
    before = track.identity
    enrolled = 0
    if is_name is not None:
        check_person_name(is_name)
        after: str | None = is_name
        if before != is_name or not archive.is_labelled(job_id, track_id, is_name):
            archive.correct(track.id, is_name)
            faces = archive.track_regions(track.id)
            archive.remove_labelled(job_id, track_id)
            archive.add_labelled(is_name, gallery, faces, job_id, track_id)
            enrolled = _enroll(rt, gallery, is_name, faces)
    else:
        assert not_name is not None
        after = None if before == not_name else before
        archive.correct(track.id, after, not_name=not_name)
        if before == not_name:
            archive.remove_labelled(job_id, track_id)
    results = rename_in_result(rt.store, job_id, {track_id: after})
    return CorrectionReport(
        job_id=job_id,
        track_id=track_id,
        before=before,
        after=after,
        gallery=gallery if is_name else None,
        enrolled=enrolled,
        results=results,
    ).model_dump()


@app.task(name="facefleet.person_forget", **RETRY)
def person_forget(person: str) -> dict:
    """The person's name out of every past result and the index, their labelled faces
    gone (the gallery removal is `gallery_remove`, asked for beside this)."""
    from facefleet.archive.service import forget_person

    rt = get_runtime()
    return forget_person(_archive(rt), rt.store, person).model_dump()


@app.task(name="facefleet.jobs_list", **RETRY)
def jobs_list() -> list[dict]:
    from facefleet.archive.service import list_jobs

    rt = get_runtime()
    try:
        archive = open_archive(rt.settings)
    except ArchiveUnavailable:
        archive = None
    return [j.model_dump(mode="json") for j in list_jobs(rt.store, archive)]


@app.task(name="facefleet.job_delete", **RETRY)
def job_delete(job_id: str) -> dict:
    from facefleet.archive.service import delete_job

    rt = get_runtime()
    status = JobStore(rt.store, check_job_id(job_id))
    if rt.store.exists(status.keys.status) and not status.finished():
        raise InputError(f"job {job_id} is still running: cancel it first")
    return delete_job(rt.store, open_archive(rt.settings), job_id).model_dump()


@app.task(name="facefleet.archive_maintenance", **RETRY)
def archive_maintenance() -> dict:
    """Beat: index jobs left unindexed, delete jobs past retention, re-embed tracks of an
    older extractor, re-cluster the unknown tracks."""
    from facefleet.archive.service import (
        cluster_distance,
        delete_job,
        expired_jobs,
        recluster,
        reembed_stale,
        summaries_key,
    )
    from facefleet.core.schemas import VideoResult
    from facefleet.core.track_summary import TrackSummaries

    rt = get_runtime()
    archive = _archive(rt)
    report: dict[str, int] = {"indexed": 0, "deleted": 0, "reembedded": 0}
    if rt.settings.retention_days is not None:
        for job_id in expired_jobs(rt.store, rt.settings.retention_days):
            delete_job(rt.store, archive, job_id)
            report["deleted"] += 1
    indexed = archive.indexed_jobs()
    for key in rt.store.list("jobs/"):
        if not key.endswith("/status.json"):
            continue
        job = JobStore(rt.store, key.split("/")[1])
        status = job.status()
        if status.state != "done" or status.indexed is not False or job.keys.job_id in indexed:
            continue
        summaries = rt.store.get_model_or_none(summaries_key(job.keys.job_id), TrackSummaries)
        results = [k for k in status.outputs if k.endswith(".json")]
        if summaries is None or not results:
            continue
        result = rt.store.get_model(results[0], VideoResult)
        if index_pending(rt, job.keys.job_id, result, summaries):
            job.set_status("done", indexed=True)
            report["indexed"] += 1
    extractor = rt.registry.extractor(rt.registry.current_model_id())
    if extractor is not None:
        report["reembedded"] = reembed_stale(archive, rt.store, extractor)
        distance = cluster_distance(extractor, rt.settings.cluster_max_distance)
        with cluster_lock("archive:clusters", ttl_s=600):
            clusters = recluster(
                archive, extractor.model_id, distance, rt.settings.cluster_min_tracks
            )
        report["clusters"] = clusters.clusters
    return report
