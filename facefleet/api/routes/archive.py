"""The archive: search a person or a photo across every processed video, the clusters of
unknown faces and naming them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from facefleet.api.auth import Reader, Submitter
from facefleet.api.deps import client_of
from facefleet.api.records import NameRequest, SearchRequest
from facefleet.api.uploads import take_upload, used_up
from facefleet.archive.records import ClusterTrack, NameReport, PersonCluster, SearchReport

router = APIRouter(prefix="/v1", tags=["archive"])


@router.post("/search", response_model=SearchReport)
def search(body: SearchRequest, request: Request, caller: Reader) -> SearchReport:
    """Every archived track of an enrolled `person`, or of the face in an uploaded photo."""
    if (body.person is None) == (body.upload is None):
        raise HTTPException(400, "search for either a person or an uploaded photo")
    client = client_of(request)
    if body.person is not None:
        return client.search(person=body.person, gallery=body.gallery)
    assert body.upload is not None
    key, filename = take_upload(body.upload, caller.key, client.store)
    report = client.search_stored(key, filename)
    used_up([body.upload], client.store)
    return report


@router.get("/people", response_model=list[PersonCluster])
def clusters(request: Request, caller: Reader) -> list[PersonCluster]:
    """The clusters of unknown faces, the largest first."""
    return client_of(request).people.list()


@router.get("/people/{cluster_id}", response_model=list[ClusterTrack])
def cluster_tracks(cluster_id: int, request: Request, caller: Reader) -> list[ClusterTrack]:
    return client_of(request).people.show(cluster_id)


@router.post("/people/{cluster_id}/name", response_model=NameReport)
def name_cluster(
    cluster_id: int,
    body: NameRequest,
    request: Request,
    caller: Submitter,
) -> NameReport:
    """Name a cluster: its faces enrolled, its past tracks renamed (refused with 409 when
    `version` is given and the cluster changed since)."""
    return client_of(request).people.name(cluster_id, body.name, body.gallery, body.version)
