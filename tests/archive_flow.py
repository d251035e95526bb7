"""The archive's acceptance flow, shared by the in-process test and the cluster's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facefleet.client import Client
from facefleet.core.errors import FacefleetError, InputError

HAMILTON = "videos/hamilton_whitehouse/short_hamilton_clip.mp4"
OBAMA_CURRY = "videos/obama_curry_whitehouse/obama_curry.mp4"
OBAMA_PHOTO = "videos/hamilton_whitehouse/gallery/Barack_Obama/obama.jpg"
OBAMA_PHOTO_2 = "videos/obama_curry_whitehouse/gallery/Barack_Obama/Obama.jpg"


def _results(client: Client, tmp: Path, job_id: str) -> dict:
    (path,) = [p for p in client.job(job_id).download(tmp / job_id) if p.suffix == ".json"]
    return json.loads(path.read_text())


def _names_anywhere(client: Client, tmp: Path, job_ids: list[str]) -> set[str]:
    names: set[str] = set()
    for job_id in job_ids:
        result = _results(client, tmp, job_id)
        for track in result["tracks"]:
            names |= {track["identity"], track.get("original_identity")}
        for frame in result["frames"]:
            for face in frame["faces"]:
                names.add(face["identity"])
                if face.get("match"):
                    names.add(face["match"]["identity"])
    return names - {None}


def archive_flow(client: Client, tmp_path: Path, data_root: Path) -> None:
    """The archive issue's acceptance flow, on whatever `client` reaches (a cluster, or
    the in-process mode)."""
    jobs = [client.submit_video(data_root / name) for name in (HAMILTON, OBAMA_CURRY)]
    for job in jobs:
        status = job.wait(timeout=600)
        assert status.state == "done", status.message
        assert status.indexed is True
    ham, oc = (job.id for job in jobs)
    listed = {j.job_id: j for j in client.jobs()}
    assert {ham, oc} <= set(listed) and listed[ham].tracks and listed[oc].tracks

    # Enrolled after the fact: found in both videos from the index, no video decoded.
    client.gallery.enroll("Barack_Obama", [data_root / OBAMA_PHOTO])
    found = client.search(person="Barack_Obama")
    by_job: dict[str, list] = {}
    for a in found.appearances:
        by_job.setdefault(a.job_id, []).append(a)
        assert a.similarity >= found.threshold
        assert client.store.exists(a.thumbnail)
    assert set(by_job) == {ham, oc}, found
    # Hamilton: the audience shot, frames 211-274 of 29.97 fps (CASE.md).
    assert all(a.start_s >= 6.5 for a in by_job[ham]), by_job[ham]
    assert all(a.end_s <= 9.3 for a in by_job[ham])
    # obama_curry.mp4: Obama stands beside Curry through the 91 frames (3.0 s).
    assert all(a.end_s <= 3.1 for a in by_job[oc])
    # Another photo of him finds his track beside Curry (the small, laughing face of the
    # Hamilton audience shot stays below dlib's threshold from that portrait).
    by_photo = client.search(photo=data_root / OBAMA_PHOTO_2)
    assert {(a.job_id, a.track_id) for a in by_photo.appearances} >= {
        (a.job_id, a.track_id) for a in by_job[oc]
    }

    # Unknowns clustered (afresh: the incremental pass after each job may still be queued
    # on a cluster); naming one relabels its past tracks.
    client.people.cluster(full=True)
    clusters = client.people.list()
    assert clusters, "no unknown-people cluster formed"
    biggest = clusters[0]
    members = client.people.show(biggest.cluster_id)
    assert len(members) == biggest.tracks >= 2
    # Split one track off, then merge it back: both pinned, nothing lost.
    alone = client.people.split(biggest.cluster_id, [(members[0].job_id, members[0].track_id)])
    assert len(client.people.show(alone)) == 1
    assert len(client.people.show(biggest.cluster_id)) == biggest.tracks - 1
    assert client.people.merge(biggest.cluster_id, [alone]) == 1
    (biggest,) = [c for c in client.people.list() if c.cluster_id == biggest.cluster_id]
    assert biggest.pinned and biggest.tracks == len(members)
    named = client.people.name(biggest.cluster_id, "Person_A", version=biggest.version)
    assert named.tracks == biggest.tracks and named.enrolled >= 1
    assert "Person_A" in client.gallery.list()
    assert all(c.cluster_id != biggest.cluster_id for c in client.people.list())
    renamed = [
        t
        for job_id in (ham, oc)
        for t in _results(client, tmp_path / "named", job_id)["tracks"]
        if t["identity"] == "Person_A"
    ]
    assert len(renamed) == named.tracks and all(t["corrected"] for t in renamed)
    # A stale version is refused.
    later = client.people.list()
    if later:
        with pytest.raises(FacefleetError, match="changed since it was listed"):
            client.people.name(later[0].cluster_id, "Person_B", version=later[0].version + 5)

    # One track corrected: the result JSON, the index and the gallery follow.
    target = by_job[ham][0]
    fix = client.correct_track(ham, target.track_id, is_name="Barack_Obama")
    assert fix.after == "Barack_Obama" and fix.enrolled >= 1 and fix.results == 1
    result = _results(client, tmp_path / "fixed", ham)
    (track,) = [t for t in result["tracks"] if t["track_id"] == target.track_id]
    assert track["identity"] == "Barack_Obama" and track["corrected"]
    faces = [f for fr in result["frames"] for f in fr["faces"] if f["track_id"] == target.track_id]
    assert faces and all(f["identity"] == "Barack_Obama" for f in faces)
    with pytest.raises(InputError, match="no indexed track"):
        client.correct_track(ham, 9999, is_name="Barack_Obama")

    # Forgotten: gone from the gallery, every result and the index.
    forgotten = client.forget("Barack_Obama")
    assert forgotten.tracks >= 1 and forgotten.labelled >= 1
    assert "Barack_Obama" not in client.gallery.list()
    assert "Barack_Obama" not in _names_anywhere(client, tmp_path / "forgot", [ham, oc])
    with pytest.raises(FacefleetError, match="not enrolled"):
        client.search(person="Barack_Obama")

    # Deleting a job removes its outputs, tracks, thumbnails and crops.
    deleted = client.delete_job(oc)
    assert deleted.tracks >= 1
    assert not client.store.list(f"jobs/{oc}/") and not client.store.list(f"archive/{oc}/")
    listed = {j.job_id for j in client.jobs()}
    assert ham in listed and oc not in listed
