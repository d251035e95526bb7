"""The archive's operations: index a finished video job, search a person or a photo across
every job, cluster the unknown tracks, name a cluster, correct a track, forget a person,
delete a job. Tasks call these (a worker, or the in-process mode); the SDK and the CLI
reach them through the tasks.

The database holds the index and the catalog; the object store holds each track's best
face regions (`archive/<job_id>/<track>-<k>.jpg`, the first one the thumbnail) and the
job's result JSON, which corrections rewrite (the original name kept beside the new one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from facefleet.archive.records import (
    Appearance,
    ClusterReport,
    ClusterTrack,
    DeleteReport,
    ForgetReport,
    JobEntry,
    PersonCluster,
    SearchReport,
)
from facefleet.archive.store import ArchiveConflict, ArchiveStore, StoredTrack, TrackRow
from facefleet.core.errors import GalleryError, InputError
from facefleet.core.schemas import VideoResult
from facefleet.core.track_summary import TrackSummaries
from facefleet.jobs.job_store import JobStore
from facefleet.jobs.records import JobStatus, check_job_id
from facefleet.jobs.storage import ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    from facefleet.core.extractors.base import Extractor
    from facefleet.core.gallery import Gallery

log = logging.getLogger("facefleet.archive")

SEARCH_LIMIT = 1000  # candidate tracks per query vector from the vector index


def summaries_key(job_id: str) -> str:
    return f"jobs/{check_job_id(job_id)}/index/tracks.json"


def region_key(job_id: str, track_id: int, k: int) -> str:
    return f"archive/{check_job_id(job_id)}/{track_id}-{k}.jpg"


def archive_prefix(job_id: str) -> str:
    return f"archive/{check_job_id(job_id)}/"


# ---- indexing -----------------------------------------------------------------------------


def store_regions(
    store: ObjectStore, job_id: str, regions: dict[tuple[int, int], np.ndarray]
) -> None:
    """Each best face's region as JPEG, before the database learns of it."""
    from facefleet.core.images import encode_jpeg

    for (tid, k), region in sorted(regions.items()):
        store.put_bytes(region_key(job_id, tid, k), encode_jpeg(region, 92), "image/jpeg")


def index_job(
    archive: ArchiveStore,
    job_id: str,
    result: VideoResult,
    summaries: TrackSummaries,
    finished: datetime,
) -> int:
    """Record a job's tracks (idempotent: a second call replaces the first). Faces whose
    region was not cut (`region_landmarks` unset) are left out."""
    by_id = {t.track_id: t for t in result.tracks}
    rows = []
    for s in summaries.tracks:
        track = by_id.get(s.track_id)
        faces = [
            (
                f.frame,
                f.quality,
                f.region_landmarks,
                region_key(job_id, s.track_id, k),
                np.asarray(f.embedding, np.float32),
            )
            for k, f in enumerate(s.faces)
            if f.region_landmarks is not None
        ]
        if track is None or not faces:
            continue
        rows.append(
            TrackRow(
                track_id=s.track_id,
                first_frame=track.first_frame,
                last_frame=track.last_frame,
                start_s=track.start_s,
                end_s=track.end_s,
                num_faces=track.num_faces,
                identity=track.identity,
                similarity=track.similarity,
                embedding=np.asarray(s.embedding, np.float32),
                thumbnail=faces[0][3],
                faces=faces,  # type: ignore[arg-type]
            )
        )
    if rows:
        archive.ensure_vector_index(summaries.extractor, len(rows[0].embedding))
    return archive.record_job(
        job_id,
        result.source,
        result.frame_count,
        result.fps,
        summaries.extractor,
        finished,
        rows,
    )


# ---- search -------------------------------------------------------------------------------


def _track_score(track: StoredTrack, samples: np.ndarray) -> float:
    """The naming rule on the stored faces: the quality-weighted mean, over the track's
    best faces, of the similarity to the person's nearest sample."""
    sims = (track.faces @ samples.T).max(axis=1)
    weights = np.maximum(track.qualities, 1e-6)
    return float((weights * sims).sum() / weights.sum())


def search_vectors(
    archive: ArchiveStore,
    extractor: str,
    samples: np.ndarray,
    threshold: float,
    query: str,
    url: Callable[[str], str | None] | None = None,
    note: str | None = None,
) -> SearchReport:
    """Every indexed track of `extractor` in which the person of `samples` appears."""
    samples = np.asarray(samples, np.float32)
    # Candidates by the tracks' mean embeddings, generously (the mean of a track lies
    # closer to its person than single faces do), then the exact rule on the faces.
    candidates = archive.nearest_tracks(
        extractor, samples, max_distance=min(2.0, 2.5 * (1.0 - threshold)), limit=SEARCH_LIMIT
    )
    found = []
    for track in candidates:
        score = _track_score(track, samples)
        if score < threshold:
            continue
        found.append(
            Appearance(
                job_id=track.job_id,
                source=track.source,
                track_id=track.track_id,
                start_s=round(track.start_s, 3),
                end_s=round(track.end_s, 3),
                similarity=round(score, 4),
                identity=track.identity,
                thumbnail=track.thumbnail,
                thumbnail_url=url(track.thumbnail) if url else None,
            )
        )
    found.sort(key=lambda a: (-a.similarity, a.job_id, a.start_s))
    return SearchReport(
        query=query,
        extractor=extractor,
        threshold=round(threshold, 4),
        appearances=found,
        note=note,
    )


def person_samples(gallery: Gallery, person: str, gallery_name: str) -> np.ndarray:
    rows = [i for i, s in enumerate(gallery.samples) if s.person == person]
    if not rows:
        raise GalleryError(f"{person!r} is not enrolled in gallery {gallery_name!r}")
    return gallery.embeddings[rows]


# ---- clustering ---------------------------------------------------------------------------


def cluster_distance(extractor: Extractor, configured: float | None) -> float:
    """The cosine distance under which two unknown tracks count as one person: by default
    1 - the extractor's open-set identification threshold (1% FAR against a whole DevTest
    gallery, not one comparison: clustering compares every track with every other)."""
    if configured is not None:
        return configured
    t = extractor.thresholds
    strict = t.identification_cosine if t.identification_cosine is not None else t.cosine
    return max(1e-3, 1.0 - float(strict))


def _neighbours(tracks: Sequence[StoredTrack], max_distance: float) -> np.ndarray:
    """Which tracks look like one person: by the naming rule between their best faces,
    both ways (each face's nearest face of the other track, quality-weighted mean; the
    lower of the two directions), at similarity >= 1 - max_distance. The mean embeddings
    only preselect (a mean lies closer to everyone than its faces do)."""
    threshold = 1.0 - max_distance
    means = np.stack([t.embedding for t in tracks])
    maybe = means @ means.T >= threshold - 0.05
    near = np.eye(len(tracks), dtype=bool)
    for i, j in zip(*np.nonzero(np.triu(maybe, 1)), strict=True):
        a, b = tracks[i], tracks[j]
        if min(_track_score(a, b.faces), _track_score(b, a.faces)) >= threshold:
            near[i, j] = near[j, i] = True
    return near


def cluster_new(
    archive: ArchiveStore, extractor: str, max_distance: float, min_tracks: int
) -> ClusterReport:
    """Incremental: each unclustered unknown track joins the cluster of its nearest
    clustered neighbour, or forms a cluster with its unclustered neighbours when they are
    at least `min_tracks` with it (Immich's rule, on tracks)."""
    tracks = archive.unknown_tracks(extractor)
    if not tracks:
        return ClusterReport(tracks=0, clustered=0, clusters=len(archive.clusters()))
    vectors = np.stack([t.embedding for t in tracks])
    near = _neighbours(tracks, max_distance)
    sims = vectors @ vectors.T
    # A cluster: an existing id (>= 0), or ~n for the n-th group formed in this pass.
    cluster_of: dict[int, int | None] = {i: t.cluster_id for i, t in enumerate(tracks)}
    joins: dict[int, int | None] = {}
    groups: list[list[int]] = []
    for i, track in enumerate(tracks):
        if cluster_of[i] is not None:
            continue
        neighbours = [int(j) for j in np.flatnonzero(near[i]) if j != i]
        clustered = [j for j in neighbours if cluster_of[j] is not None]
        if clustered:
            best = max(clustered, key=lambda j: sims[i, j])
            target = cluster_of[best]
            assert target is not None
            cluster_of[i] = target
            if target >= 0:
                joins[track.id] = target
            else:
                groups[~target].append(i)
            continue
        free = [j for j in neighbours if cluster_of[j] is None]
        if len(free) + 1 >= min_tracks:
            group = [i, *free]
            for j in group:
                cluster_of[j] = ~len(groups)
            groups.append(group)
    created = archive.assign(extractor, joins, [[tracks[j].id for j in g] for g in groups])
    return ClusterReport(
        tracks=len(tracks),
        clustered=sum(1 for c in cluster_of.values() if c is not None),
        clusters=len(archive.clusters()),
        created=len(created),
        joined=len(joins),
    )


def recluster(
    archive: ArchiveStore, extractor: str, max_distance: float, min_tracks: int
) -> ClusterReport:
    """Nightly: the unknown tracks outside pinned clusters clustered afresh (DBSCAN with
    the same rule), keeping a cluster's id where most of its tracks stay together."""
    pinned = {c for c, _, p in archive.clusters() if p}
    tracks = [t for t in archive.unknown_tracks(extractor) if t.cluster_id not in pinned]
    if not tracks:
        return ClusterReport(tracks=0, clustered=0, clusters=len(archive.clusters()))
    near = _neighbours(tracks, max_distance)
    core = near.sum(axis=1) >= min_tracks
    label = [-1] * len(tracks)
    n = 0
    for i in range(len(tracks)):
        if label[i] != -1 or not core[i]:
            continue
        stack, label[i] = [i], n
        while stack:
            j = stack.pop()
            if not core[j]:
                continue
            for m in np.flatnonzero(near[j]):
                if label[m] == -1:
                    label[m] = n
                    stack.append(int(m))
        n += 1
    # Keep ids: each new group takes the old cluster most of its tracks came from.
    assignment: dict[int, int | None] = {}
    new_groups: list[list[int]] = []
    taken: set[int] = set()
    for g in range(n):
        members = [i for i in range(len(tracks)) if label[i] == g]
        old = [tracks[i].cluster_id for i in members if tracks[i].cluster_id is not None]
        keep = max(set(old), key=old.count) if old else None
        if keep is not None and keep not in taken:
            taken.add(keep)
            for i in members:
                if tracks[i].cluster_id != keep:
                    assignment[tracks[i].id] = keep
        else:
            new_groups.append([tracks[i].id for i in members])
    for i, t in enumerate(tracks):
        if label[i] == -1 and t.cluster_id is not None:
            assignment[t.id] = None
    archive.assign(extractor, assignment, new_groups)
    return ClusterReport(
        tracks=len(tracks),
        clustered=sum(1 for x in label if x != -1),
        clusters=len(archive.clusters()),
        created=len(new_groups),
    )


def list_clusters(
    archive: ArchiveStore, url: Callable[[str], str | None] | None = None
) -> list[PersonCluster]:
    out = []
    for cluster_id, version, pinned in archive.clusters():
        tracks = archive.cluster_tracks(cluster_id)
        if not tracks:
            continue
        best = max(tracks, key=lambda t: float(t.qualities.max()))
        out.append(
            PersonCluster(
                cluster_id=cluster_id,
                version=version,
                tracks=len(tracks),
                jobs=len({t.job_id for t in tracks}),
                first_seen=min(t.finished for t in tracks),
                last_seen=max(t.finished for t in tracks),
                pinned=pinned,
                thumbnail=best.thumbnail,
                thumbnail_url=url(best.thumbnail) if url else None,
            )
        )
    out.sort(key=lambda c: (-c.tracks, c.cluster_id))
    return out


def cluster_members(
    archive: ArchiveStore, cluster_id: int, url: Callable[[str], str | None] | None = None
) -> list[ClusterTrack]:
    tracks = archive.cluster_tracks(cluster_id)
    if not tracks:
        raise ArchiveConflict(f"there is no unknown-people cluster {cluster_id}")
    return [
        ClusterTrack(
            job_id=t.job_id,
            source=t.source,
            track_id=t.track_id,
            start_s=round(t.start_s, 3),
            end_s=round(t.end_s, 3),
            thumbnail=t.thumbnail,
            thumbnail_url=url(t.thumbnail) if url else None,
        )
        for t in tracks
    ]


def split_cluster(
    archive: ArchiveStore, extractor: str, cluster_id: int, tracks: Sequence[tuple[str, int]]
) -> int:
    """Move the given (job, track) out of a cluster into a new, pinned one."""
    members = {(t.job_id, t.track_id): t for t in archive.cluster_tracks(cluster_id)}
    if not members:
        raise ArchiveConflict(f"there is no unknown-people cluster {cluster_id}")
    missing = [f"{j}/{k}" for j, k in tracks if (j, k) not in members]
    if missing:
        raise InputError(f"not in cluster {cluster_id}: {', '.join(missing)}")
    if len(tracks) == len(members):
        raise InputError("a split must leave at least one track in the cluster")
    (created,) = archive.assign(extractor, {}, [[members[t].id for t in tracks]], pinned=True)
    archive.set_pinned([cluster_id])
    return created


def merge_clusters(archive: ArchiveStore, into: int, others: Sequence[int]) -> int:
    moved: dict[int, int | None] = {}
    for other in others:
        tracks = archive.cluster_tracks(other)
        if not tracks:
            raise ArchiveConflict(f"there is no unknown-people cluster {other}")
        moved.update({t.id: into for t in tracks})
    if archive.cluster_version(into) is None:
        raise ArchiveConflict(f"there is no unknown-people cluster {into}")
    archive.assign("", moved, [])
    archive.set_pinned([into])
    return len(moved)


# ---- corrections and deletion -------------------------------------------------------------


def _regions(store: ObjectStore, faces: Sequence[tuple[str, list[float]]]) -> np.ndarray:
    from facefleet.core.images import decode_image

    return np.stack([decode_image(store.get_bytes(key)) for key, _ in faces])


def enroll_track_faces(
    store: ObjectStore,
    gallery: Gallery,
    person: str,
    faces: Sequence[tuple[str, list[float]]],
    extractor: Extractor,
) -> int:
    """Add a track's stored face regions to `gallery` as samples of `person`."""
    if not faces:
        return 0
    points = [[(lm[i], lm[i + 1]) for i in range(0, 10, 2)] for _, lm in faces]
    gallery.add_regions(
        person, _regions(store, faces), extractor, [key for key, _ in faces], points
    )
    return len(faces)


def _video_results(store: ObjectStore, job_id: str) -> Iterator[tuple[str, VideoResult]]:
    """(key, result) of each video result JSON among a job's outputs."""
    for key in JobStore(store, job_id).status().outputs:
        if not key.endswith(".json"):
            continue
        try:
            yield key, store.get_model(key, VideoResult)
        except ObjectNotFound:
            continue


def rename_in_result(store: ObjectStore, job_id: str, names: dict[int, str | None]) -> int:
    """Rewrite a job's result JSON with the corrected names of `names` (track -> name),
    the name given at processing time kept as `original_identity`. Returns files rewritten."""
    written = 0
    for key, result in _video_results(store, job_id):
        changed = False
        for track in result.tracks:
            if track.track_id not in names:
                continue
            if not track.corrected:
                track.original_identity = track.identity
            track.identity = names[track.track_id]
            track.corrected = True
            changed = True
        if not changed:
            continue
        for frame in result.frames:
            for face in frame.faces:
                if face.track_id in names:
                    face.identity = names[face.track_id]
        store.put_model(key, result)
        written += 1
    return written


def forget_in_results(store: ObjectStore, job_ids: Sequence[str], person: str) -> int:
    """Remove `person` from the results of `job_ids`: names, originals, raw matches."""
    written = 0
    for job_id in job_ids:
        if not store.exists(JobStore(store, job_id).keys.status):
            continue
        for key, result in _video_results(store, job_id):
            for track in result.tracks:
                if track.identity == person:
                    track.identity, track.similarity, track.corrected = None, None, True
                if track.original_identity == person:
                    track.original_identity = None
            for frame in result.frames:
                for face in frame.faces:
                    if face.identity == person:
                        face.identity, face.similarity = None, None
                    if face.match is not None and face.match.identity == person:
                        face.match = None
            store.put_model(key, result)
            written += 1
        status = JobStore(store, job_id).status()
        if any(person in names for names in status.summary.values()):
            JobStore(store, job_id).set_status(
                status.state,
                summary={k: [n for n in v if n != person] for k, v in status.summary.items()},
            )
    return written


def forget_person(archive: ArchiveStore, store: ObjectStore, person: str) -> ForgetReport:
    jobs, tracks, labelled = archive.forget(person)
    results = forget_in_results(store, jobs, person)
    return ForgetReport(person=person, tracks=tracks, labelled=len(labelled), results=results)


def list_jobs(store: ObjectStore, archive: ArchiveStore | None) -> list[JobEntry]:
    """Every job in the store, newest first, with its indexed track count."""
    counts = archive.indexed_jobs() if archive is not None else {}
    out = []
    for key in store.list("jobs/"):
        if not key.endswith("/status.json"):
            continue
        job_id = key.split("/")[1]
        try:
            status = store.get_model(key, JobStatus)
            spec = JobStore(store, job_id).spec()
        except (ObjectNotFound, ValueError):
            continue
        out.append(
            JobEntry(
                job_id=job_id,
                kind=status.kind,
                state=status.state,
                created=status.created,
                updated=status.updated,
                sources=[i.source for i in spec.inputs],
                tracks=counts.get(job_id),
            )
        )
    out.sort(key=lambda j: j.created, reverse=True)
    return out


def delete_job(store: ObjectStore, archive: ArchiveStore | None, job_id: str) -> DeleteReport:
    """Outputs, inputs, records, tracks, thumbnails and crops of one job."""
    check_job_id(job_id)
    if not store.exists(f"jobs/{job_id}/status.json") and not store.list(archive_prefix(job_id)):
        raise InputError(f"there is no job {job_id}")
    tracks = archive.delete_job(job_id) if archive is not None else 0
    objects = store.delete_prefix(archive_prefix(job_id))
    objects += store.delete_prefix(f"jobs/{job_id}/")
    return DeleteReport(job_id=job_id, objects=objects, tracks=tracks)


def expired_jobs(store: ObjectStore, days: float, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    out = []
    for key in store.list("jobs/"):
        if not key.endswith("/status.json"):
            continue
        try:
            status = store.get_model(key, JobStatus)
        except (ObjectNotFound, ValueError):
            continue
        if status.finished and (now - status.updated).total_seconds() > days * 86400:
            out.append(status.job_id)
    return out


def reembed_stale(archive: ArchiveStore, store: ObjectStore, extractor: Extractor) -> int:
    """Re-embed the tracks an older extractor indexed, from their stored face regions."""
    from facefleet.core.alignment import align_face

    done = 0
    for track, faces in archive.stale_tracks(extractor.model_id):
        regions = _regions(store, [(key, lm) for _, key, lm in faces])
        crops = np.stack(
            [
                align_face(region, np.asarray(lm, np.float64).reshape(5, 2), extractor.geometry)
                for region, (_, _, lm) in zip(regions, faces, strict=True)
            ]
        )
        vectors = extractor.embed(crops)
        mean = vectors.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        archive.reembed_track(
            track,
            extractor.model_id,
            mean,
            {k: v for (k, _, _), v in zip(faces, vectors, strict=True)},
        )
        done += 1
    if done:
        archive.ensure_vector_index(extractor.model_id, extractor.dim)
    return done
