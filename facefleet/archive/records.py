"""What the archive answers, as data: appearances found by a search, unknown-people
clusters, corrections, deletions. Pydantic only (the SDK returns these)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Appearance(BaseModel):
    """One track of a processed video in which a searched person appears."""

    job_id: str
    source: str
    track_id: int
    start_s: float
    end_s: float
    similarity: float = Field(description="The track's similarity to the person (cosine)")
    identity: str | None = Field(description="The track's name now (corrections applied)")
    thumbnail: str = Field(description="Object key of the track's best face (JPEG)")
    thumbnail_url: str | None = None


class SearchReport(BaseModel):
    query: str = Field(description="person NAME in gallery G, or the photo's name")
    extractor: str
    threshold: float = Field(description="Cosine similarity an appearance must reach")
    appearances: list[Appearance]
    note: str | None = Field(default=None, description="e.g. which face of a photo was used")


class PersonCluster(BaseModel):
    """Unknown tracks that look like one person."""

    cluster_id: int
    version: int = Field(description="Changes with membership; `people name` can insist on it")
    tracks: int
    jobs: int
    first_seen: datetime
    last_seen: datetime
    pinned: bool = Field(description="Set by split/merge: re-clustering leaves it as it is")
    thumbnail: str
    thumbnail_url: str | None = None


class ClusterTrack(BaseModel):
    """One track of an unknown-people cluster (`people show`): what `people split` takes."""

    job_id: str
    source: str
    track_id: int
    start_s: float
    end_s: float
    thumbnail: str
    thumbnail_url: str | None = None


class ClusterReport(BaseModel):
    """What an incremental clustering or a re-clustering changed."""

    tracks: int = Field(description="Unknown tracks considered")
    clustered: int = Field(description="Of those, in a cluster now")
    clusters: int
    created: int = 0
    joined: int = 0


class CorrectionReport(BaseModel):
    job_id: str
    track_id: int
    before: str | None
    after: str | None
    gallery: str | None = None
    enrolled: int = Field(default=0, description="Faces added to the gallery")
    results: int = Field(default=0, description="Result JSON files rewritten")


class NameReport(BaseModel):
    cluster_id: int
    name: str
    gallery: str
    tracks: int
    enrolled: int
    results: int


class ForgetReport(BaseModel):
    person: str
    tracks: int = Field(description="Tracks whose name (given or corrected) was removed")
    labelled: int = Field(description="Labelled training faces removed")
    results: int = Field(description="Result JSON files rewritten")


class JobEntry(BaseModel):
    job_id: str
    kind: str
    state: str
    created: datetime
    updated: datetime
    sources: list[str]
    tracks: int | None = Field(default=None, description="Indexed tracks (null: not indexed)")


class DeleteReport(BaseModel):
    job_id: str
    objects: int = Field(description="Objects removed from the store")
    tracks: int = Field(description="Tracks removed from the archive")


class LabelledFace(BaseModel):
    """A face a person labelled: training data for the scheduled retraining."""

    person: str
    gallery: str
    region: str = Field(description="Object key of the stored face region (JPEG)")
    landmarks: list[tuple[float, float]]
