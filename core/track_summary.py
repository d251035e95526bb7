"""What the archive keeps of each track of a video: its mean embedding, its best faces
(embedding, landmarks, quality) and, cut from the source afterwards, each best face's
stored region (the gallery's 192 px face-with-margin, from which any extractor re-embeds
it, a person is enrolled, and a thumbnail is shown).

A track, not a face, is the unit: it is named from many faces, so its mean embedding is
steadier than any one of them, and one row per track keeps the index small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from facefleet.core.embedding_budget import face_quality
from facefleet.core.frame_index import FrameIndex
from facefleet.core.gallery import face_region
from facefleet.core.schemas import FaceDetection, Point, TrackingGates
from facefleet.core.video import read_frames
from facefleet.core.video_pipeline import ChunkFace, ChunkResult, stitched_faces

# Needed frames closer than this are decoded in one pass rather than seeking again.
SEEK_GAP_FRAMES = 90


class TrackFace(BaseModel):
    """One of a track's best faces."""

    frame: int
    box: tuple[float, float, float, float]
    landmarks: list[Point]
    score: float
    quality: float = Field(description="side x detection score x frontalness")
    embedding: list[float]
    region_landmarks: list[float] | None = Field(
        default=None, description="The 5 landmarks in the stored region (x0, y0, ... x4, y4)"
    )


class TrackSummary(BaseModel):
    track_id: int
    embedding: list[float] = Field(description="Unit mean of the track's measured faces")
    faces: list[TrackFace] = Field(description="Best first")


class TrackSummaries(BaseModel):
    """A video's tracks as the archive indexes them; written by the merge step."""

    extractor: str
    tracks: list[TrackSummary]


def _detection(face: ChunkFace | TrackFace) -> FaceDetection:
    return FaceDetection(
        box=face.box,
        score=min(max(face.score, 0.0), 1.0),
        landmarks=tuple(tuple(p) for p in face.landmarks),  # type: ignore[arg-type]
    )


def summarize_tracks(
    chunks: Sequence[ChunkResult], gates: TrackingGates, extractor: str, keep: int = 5
) -> TrackSummaries:
    """Per video-wide track (the merge step's ids), its mean embedding and its `keep` best
    measured faces; tracks with no measured face (no extractor) are left out."""
    faces_by_track, _ = stitched_faces(chunks, gates)
    tracks = []
    for tid, faces in sorted(faces_by_track.items()):
        measured = [(f, f.vector()) for f in faces if not f.interpolated]
        measured = [(f, v) for f, v in measured if v is not None]
        if not measured:
            continue
        mean = np.mean([v for _, v in measured], axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        ranked = sorted(
            ((face_quality(_detection(f)), f, v) for f, v in measured),
            key=lambda item: -item[0],
        )
        best = []
        for quality, f, v in ranked:
            # Distinct frames: the same frame twice would cut the same region twice.
            if any(b.frame == f.frame for b in best):
                continue
            best.append(
                TrackFace(
                    frame=f.frame,
                    box=tuple(round(x, 2) for x in f.box),  # type: ignore[arg-type]
                    landmarks=[(round(x, 2), round(y, 2)) for x, y in f.landmarks],
                    score=round(f.score, 4),
                    quality=round(quality, 3),
                    embedding=[round(float(x), 6) for x in v],
                )
            )
            if len(best) == keep:
                break
        tracks.append(
            TrackSummary(track_id=tid, embedding=[round(float(x), 6) for x in mean], faces=best)
        )
    return TrackSummaries(extractor=extractor, tracks=tracks)


def _frames_at(
    video: Path, wanted: Sequence[int], offset: int, index: FrameIndex | None
) -> Iterator[tuple[int, np.ndarray]]:
    """The frames numbered `wanted` (BGR), decoding runs of nearby frames in one pass."""
    todo = sorted(set(wanted))
    runs: list[list[int]] = []
    for number in todo:
        if runs and number - runs[-1][-1] <= SEEK_GAP_FRAMES:
            runs[-1].append(number)
        else:
            runs.append([number])
    for run in runs:
        need = set(run)
        for frame in read_frames(video, run[0], run[-1] + 1, offset, index):
            if frame.index in need:
                yield frame.index, frame.image


def cut_regions(
    video: Path,
    summaries: TrackSummaries,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> dict[tuple[int, int], np.ndarray]:
    """Per (track id, face number) the stored region of that best face (see
    `core.gallery.face_region`); each face's `region_landmarks` are filled in."""
    by_frame: dict[int, list[tuple[int, int, TrackFace]]] = {}
    for track in summaries.tracks:
        for k, face in enumerate(track.faces):
            by_frame.setdefault(face.frame, []).append((track.track_id, k, face))
    out: dict[tuple[int, int], np.ndarray] = {}
    for number, image in _frames_at(video, list(by_frame), offset, index):
        for tid, k, face in by_frame[number]:
            region, points = face_region(image, _detection(face))
            out[(tid, k)] = region
            face.region_landmarks = [round(float(v), 2) for v in np.asarray(points).reshape(-1)]
    return out
