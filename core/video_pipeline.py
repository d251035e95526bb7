"""A video as frame ranges: analyze(range) -> ChunkResult, merge(chunks) -> VideoResult,
render(range, result) -> encoded part, finalize(parts) -> output.mp4.

In-process mode runs them in a loop; the batch system runs the same functions as tasks.
"""

from __future__ import annotations

import base64
import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from facefleet.core.drawing import draw_faces
from facefleet.core.embedding_budget import (
    CutDetector,
    EmbeddingBudget,
    face_quality,
    overlap_links,
)
from facefleet.core.errors import InputError
from facefleet.core.frame_index import FrameIndex
from facefleet.core.gallery import Gallery, accepts
from facefleet.core.pipeline import FacePipeline
from facefleet.core.schemas import (
    FaceDetection,
    FaceResult,
    FrameResult,
    RawMatch,
    Track,
    TrackingGates,
    VideoFace,
    VideoResult,
)
from facefleet.core.tracking import FaceTracker, associate, iou_matrix
from facefleet.core.video import (
    H264Writer,
    VideoInfo,
    background_reader,
    mux,
    probe_indexed,
    read_frames,
)

MIN_TRACK_FACES = 3  # tracks seen fewer times are named only when clearly above threshold
SHORT_TRACK_MARGIN = 0.05


class ChunkFace(BaseModel):
    frame: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: list[tuple[float, float]]
    track: int  # local to the chunk
    embedding: str | None = None  # base64 float32, so a chunk result is plain JSON
    interpolated: bool = False

    def vector(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.frombuffer(base64.b64decode(self.embedding), dtype=np.float32)


class ChunkResult(BaseModel):
    """What one frame range yields: faces with embeddings and chunk-local track ids."""

    start: int
    end: int  # exclusive; the true end when the video is shorter than asked
    times: list[float]  # time_s of each frame in [start, end)
    faces: list[ChunkFace]
    embedded: int = Field(
        default=0, description="faces that went through the extractor (the embedding budget)"
    )


def _encode(vec: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vec, dtype=np.float32).tobytes()).decode()


def analyze(
    video: Path,
    start: int,
    end: int | None,
    pipeline: FacePipeline,
    every: int = 1,
    batch_size: int = 16,
    max_gap: int = 15,
    on_frames: Callable[[int], None] | None = None,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> ChunkResult:
    """Detect, align, embed and track the faces of frames [start, end).

    With `every` = K only frames whose index is a multiple of K are analysed; faces on the
    frames between are interpolated along their track. `offset`: the index of the file's
    first frame, when `video` is a chunk cut from a longer video; `index`: the source's
    frame index, so decoding starts at the keyframe before `start`.

    With the pipeline's embedding budget on, a track's faces are embedded only when
    identity needs it (core.embedding_budget); the others keep `embedding` None.
    """
    gates = pipeline.tracking
    tracker = FaceTracker(
        max_gap=max_gap * every, similarity_gate=gates.appearance, min_similarity=gates.link
    )
    budget = None
    if pipeline.embedding_budget and pipeline.extractor is not None:
        policy = EmbeddingBudget(step=every)
        budget = FrameBudget(policy, CutDetector(policy.config.cut_distance))
    times: list[float] = []
    faces: list[ChunkFace] = []
    reader = background_reader(video, start, end, offset=offset, index=index)
    try:
        for batch in reader.batches(batch_size):
            times.extend(f.time_s for f in batch)
            keyframes = [f for f in batch if f.index % every == 0]
            if keyframes:
                detections = pipeline.detect([f.image for f in keyframes])
                if budget is None:
                    frames = [(f.index, f.image) for f in keyframes]
                    faces.extend(_track_all(frames, detections, pipeline, tracker))
                else:
                    for f, dets in zip(keyframes, detections, strict=True):
                        faces.extend(
                            _track_budgeted(f.index, f.image, dets, pipeline, tracker, budget)
                        )
            if on_frames:
                on_frames(len(batch))
    finally:
        reader.close()
    if not times:
        raise InputError(f"no frames in range {start}..{end}", subject=video)
    real_end = start + len(times)
    embedded = sum(f.embedding is not None for f in faces)
    if every > 1:
        faces = _fill_between_keyframes(faces, every, real_end)
    faces.sort(key=lambda f: (f.frame, f.track))
    return ChunkResult(start=start, end=real_end, times=times, faces=faces, embedded=embedded)


@dataclass
class FrameBudget:
    """A chunk's embedding policy and the cut detector that feeds it."""

    policy: EmbeddingBudget
    cuts: CutDetector


def _track_all(
    frames: Sequence[tuple[int, np.ndarray]],
    detections: Sequence[Sequence[FaceDetection]],
    pipeline: FacePipeline,
    tracker: FaceTracker,
) -> list[ChunkFace]:
    """Budget off: every face of the batch embedded in one forward, then tracked."""
    vectors = pipeline.embed_faces([image for _, image in frames], detections)
    out = []
    for (index, _), dets, vecs in zip(frames, detections, vectors, strict=True):
        boxes = np.array([d.box for d in dets]).reshape(-1, 4)
        ids = tracker.update(index, boxes, vecs if vecs.shape[1] else None)
        for det, vec, tid in zip(dets, vecs, ids, strict=True):
            out.append(_chunk_face(index, det, tid, vec if vec.size else None))
    return out


def _track_budgeted(
    index: int,
    image: np.ndarray,
    dets: Sequence[FaceDetection],
    pipeline: FacePipeline,
    tracker: FaceTracker,
    budget: FrameBudget,
) -> list[ChunkFace]:
    """Budget on, one frame: link by overlap, embed only the faces the policy asks for
    (one forward per frame, since what the next frame needs depends on this one's tracks),
    then finish the association with their similarity."""
    boxes = np.array([d.box for d in dets]).reshape(-1, 4)
    cut = budget.cuts.is_cut(image)
    pending = tracker.prepare(index, boxes)
    policy = budget.policy
    links = overlap_links(
        pending.ious, pending.track_ids, pending.gaps, policy.step, policy.config, cut
    )
    qualities = [face_quality(d) for d in dets]
    decisions = policy.decide(links, qualities)
    need = [i for i, d in enumerate(decisions) if d.embed]
    vectors: list[np.ndarray | None] = [None] * len(dets)
    if need:
        measured = pipeline.embed_faces([image], [[dets[i] for i in need]])[0]
        for i, vec in zip(need, measured, strict=True):
            vectors[i] = vec
    fixed = {i: d.track for i, d in enumerate(decisions) if d.track is not None}
    ids = tracker.finish(
        pending, fixed, vectors, tracker.min_similarity - policy.config.verify_slack
    )
    policy.record(ids, decisions, qualities)
    return [
        _chunk_face(index, det, tid, vec) for det, tid, vec in zip(dets, ids, vectors, strict=True)
    ]


def _chunk_face(frame: int, det: FaceDetection, track: int, vec: np.ndarray | None) -> ChunkFace:
    # Rounded as the results are (a hundredth of a pixel): a chunk result is stored between
    # the steps of a job, and full float precision doubled its size for nothing.
    return ChunkFace(
        frame=frame,
        box=tuple(round(v, 2) for v in det.box),  # type: ignore[arg-type]
        score=round(det.score, 4),
        landmarks=[(round(x, 2), round(y, 2)) for x, y in det.landmarks],
        track=track,
        embedding=None if vec is None else _encode(vec),
    )


def _fill_between_keyframes(faces: list[ChunkFace], every: int, end: int) -> list[ChunkFace]:
    """Interpolate each track's box and landmarks on the frames that were not analysed."""
    by_track: dict[int, list[ChunkFace]] = defaultdict(list)
    for face in faces:
        by_track[face.track].append(face)
    out = list(faces)
    for seen in by_track.values():
        seen.sort(key=lambda f: f.frame)
        for a, b in pairwise(seen):
            gap = b.frame - a.frame
            if gap <= 1 or gap > every:
                continue
            for k in range(1, gap):
                t = k / gap
                out.append(_between(a, b, t, a.frame + k))
        last = seen[-1]
        for frame in range(last.frame + 1, min(last.frame + every, end)):
            out.append(_between(last, last, 0.0, frame))
    return out


def _between(a: ChunkFace, b: ChunkFace, t: float, frame: int) -> ChunkFace:
    box = tuple((1 - t) * x + t * y for x, y in zip(a.box, b.box, strict=True))
    marks = [
        ((1 - t) * p[0] + t * q[0], (1 - t) * p[1] + t * q[1])
        for p, q in zip(a.landmarks, b.landmarks, strict=True)
    ]
    return ChunkFace(
        frame=frame,
        box=box,
        score=min(a.score, b.score),
        landmarks=marks,  # type: ignore[arg-type]
        track=a.track,
        interpolated=True,
    )


def _stitch(
    chunks: Sequence[ChunkResult], max_gap: int, gates: TrackingGates
) -> dict[tuple[int, int], int]:
    """Global track id for every (chunk number, local track), joining tracks that cross a
    range boundary: the last faces before it and the first after it must overlap or look
    alike."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(x: tuple[int, int]) -> tuple[int, int]:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    first_frame: dict[tuple[int, int], int] = {}
    for k, chunk in enumerate(chunks):
        for face in chunk.faces:
            find((k, face.track))
            key = (k, face.track)
            first_frame[key] = min(face.frame, first_frame.get(key, face.frame))
    for k in range(len(chunks) - 1):
        left, right = chunks[k], chunks[k + 1]
        if left.end != right.start:
            continue
        tails = _track_ends(left, last=True, within=max_gap)
        heads = _track_ends(right, last=False, within=max_gap)
        if not tails or not heads:
            continue
        lt, rt = list(tails), list(heads)
        ious = iou_matrix(np.array([tails[t][0] for t in lt]), np.array([heads[t][0] for t in rt]))
        sims = None
        if all(tails[t][1] is not None for t in lt) and all(heads[t][1] is not None for t in rt):
            sims = np.stack([tails[t][1] for t in lt]) @ np.stack([heads[t][1] for t in rt]).T
        for r, c in associate(ious, sims, 0.2, gates.appearance, gates.link):
            parent[find((k + 1, rt[c]))] = find((k, lt[r]))
    roots: dict[tuple[int, int], int] = {}
    order = sorted(parent, key=lambda key: (key[0], first_frame[key]))
    mapping = {}
    for key in order:
        root = find(key)
        if root not in roots:
            roots[root] = len(roots)
        mapping[key] = roots[root]
    return mapping


def _track_ends(
    chunk: ChunkResult, last: bool, within: int
) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """Per track near the boundary: its box there and its mean embedding."""
    faces = [f for f in chunk.faces if not f.interpolated]
    ends: dict[int, ChunkFace] = {}
    vecs: dict[int, list[np.ndarray]] = defaultdict(list)
    for f in faces:
        current = ends.get(f.track)
        if current is None or (f.frame > current.frame if last else f.frame < current.frame):
            ends[f.track] = f
        v = f.vector()
        if v is not None:
            vecs[f.track].append(v)
    out = {}
    for track, face in ends.items():
        near = (chunk.end - 1 - face.frame) if last else (face.frame - chunk.start)
        if near > within:
            continue
        mean = None
        if vecs[track]:
            m = np.mean(vecs[track], axis=0)
            mean = m / max(float(np.linalg.norm(m)), 1e-12)
        out[track] = (np.array(face.box), mean)
    return out


def stitched_faces(
    chunks: Sequence[ChunkResult], gates: TrackingGates, max_gap: int = 15
) -> tuple[dict[int, list[ChunkFace]], dict[int, float]]:
    """The faces of each video-wide track (tracks joined across range boundaries), and the
    time of every frame."""
    chunks = sorted(chunks, key=lambda c: c.start)
    ids = _stitch(chunks, max_gap, gates)
    faces_by_track: dict[int, list[ChunkFace]] = defaultdict(list)
    times: dict[int, float] = {}
    for k, chunk in enumerate(chunks):
        for i, t in enumerate(chunk.times):
            times[chunk.start + i] = t
        for face in chunk.faces:
            faces_by_track[ids[(k, face.track)]].append(face)
    return faces_by_track, times


def merge(
    chunks: Sequence[ChunkResult],
    info: VideoInfo,
    pipeline: FacePipeline,
    max_gap: int = 15,
) -> VideoResult:
    """Stitch tracks across ranges and name each track from all of its faces, with the
    pipeline's gallery, metric, threshold and its extractor's tracking gates."""
    model, gallery = pipeline.model_info(), pipeline.gallery
    metric, threshold = pipeline.metric, pipeline.effective_threshold
    faces_by_track, times = stitched_faces(chunks, pipeline.tracking, max_gap)
    naming = {
        tid: _name_track(fs, gallery, metric, threshold) for tid, fs in faces_by_track.items()
    }
    per_frame: dict[int, list[VideoFace]] = defaultdict(list)
    tracks: list[Track] = []
    for tid, faces in sorted(faces_by_track.items()):
        identity, similarity = naming[tid]
        raw = _raw_matches(faces, gallery, metric, threshold)
        for face, match in zip(faces, raw, strict=True):
            per_frame[face.frame].append(
                VideoFace(
                    box=tuple(round(v, 2) for v in face.box),  # type: ignore[arg-type]
                    score=round(face.score, 4),
                    landmarks=[(round(x, 2), round(y, 2)) for x, y in face.landmarks],
                    track_id=tid,
                    identity=identity,
                    similarity=None if similarity is None else round(similarity, 4),
                    match=match,
                    interpolated=face.interpolated,
                )
            )
        first, last = min(f.frame for f in faces), max(f.frame for f in faces)
        frame_time = 1.0 / info.fps if info.fps else 0.0
        tracks.append(
            Track(
                track_id=tid,
                identity=identity,
                similarity=None if similarity is None else round(similarity, 4),
                first_frame=first,
                last_frame=last,
                start_s=round(times.get(first, first * frame_time), 3),
                end_s=round(times.get(last, last * frame_time) + frame_time, 3),
                num_faces=len(faces),
            )
        )
    frames = [
        FrameResult(
            index=i,
            time_s=round(times[i], 4),
            faces=sorted(per_frame.get(i, []), key=lambda f: f.track_id),
        )
        for i in sorted(times)
    ]
    return VideoResult(
        source=info.source,
        fps=info.fps,
        frame_count=len(frames),
        width=info.width,
        height=info.height,
        model=model,
        frames=frames,
        tracks=tracks,
    )


def _name_track(
    faces: list[ChunkFace], gallery: Gallery | None, metric: str, threshold: float | None
) -> tuple[str | None, float | None]:
    """One identity per track, so a name does not flicker from frame to frame: per enrolled
    person the size- and score-weighted mean of the faces' similarities to them, the best
    person if that mean passes the threshold.

    The mean of the similarities, not the similarity of the mean embedding: averaging the
    embeddings cancels what tells faces apart faster than what they share, and in an
    extractor whose every face lies in a narrow cone (dlib's: two strangers score 0.83 on
    average) it pushed a blurry stranger's track above a threshold calibrated on single
    faces."""
    measured = [(f, f.vector()) for f in faces if not f.interpolated]
    measured = [(f, v) for f, v in measured if v is not None]
    if gallery is None or len(gallery) == 0 or not measured:
        return None, None
    weights = np.array(
        [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) * f.score for f, _ in measured]
    )
    people, sims = gallery.person_similarities(np.stack([v for _, v in measured]))
    scores = (weights[:, None] * sims).sum(axis=0) / max(float(weights.sum()), 1e-12)
    best = int(scores.argmax())
    similarity = float(scores[best])
    if threshold is None:
        return None, similarity
    margin = SHORT_TRACK_MARGIN if len(measured) < MIN_TRACK_FACES else 0.0
    named = accepts(similarity, metric, threshold, margin)  # type: ignore[arg-type]
    return (people[best] if named else None), similarity


def _raw_matches(
    faces: list[ChunkFace], gallery: Gallery | None, metric: str, threshold: float | None
) -> list[RawMatch | None]:
    """What the gallery says about each detected face alone; a face the embedding budget
    did not embed takes its track's carried embedding, so every detected face has one."""
    vectors = _carried_vectors(faces)
    out: list[RawMatch | None] = [None] * len(faces)
    have = [i for i, v in enumerate(vectors) if v is not None]
    if gallery is None or len(gallery) == 0 or not have:
        return out
    matches = gallery.match(np.stack([vectors[i] for i in have]), metric, threshold)  # type: ignore[arg-type,misc]
    for i, m in zip(have, matches, strict=True):
        out[i] = RawMatch(identity=m.identity, similarity=round(m.similarity, 4))
    return out


def _carried_vectors(faces: list[ChunkFace]) -> list[np.ndarray | None]:
    """Per face of one track its embedding; a detected face without one takes the latest
    measured before it (the first measured, before any), as the tracker carried it.
    Interpolated faces were never detected and keep none."""
    vectors = [f.vector() for f in faces]
    order = sorted(range(len(faces)), key=lambda i: faces[i].frame)
    measured = [i for i in order if vectors[i] is not None]
    if not measured:
        return vectors
    latest = vectors[measured[0]]
    out: list[np.ndarray | None] = [None] * len(faces)
    for i in order:
        if vectors[i] is not None:
            latest = vectors[i]
        out[i] = None if faces[i].interpolated else latest
    return out


def render(
    video: Path,
    result: VideoResult,
    start: int,
    end: int,
    part: Path,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> Path:
    """Draw the final names on frames [start, end) and encode them as one H.264 part."""
    faces = {f.index: f.faces for f in result.frames}
    with H264Writer(part, result.width, result.height, result.fps) as writer:
        for frame in read_frames(video, start, end, offset, index):
            drawn = [
                FaceResult(
                    box=f.box,
                    score=f.score,
                    landmarks=f.landmarks,
                    identity=f.identity,
                    similarity=f.similarity,
                )
                for f in faces.get(frame.index, [])
            ]
            writer.write(draw_faces(frame.image, drawn) if drawn else frame.image)
    return part


def finalize(parts: Sequence[Path], out: Path, audio_from: Path | None) -> Path:
    """Join the rendered parts and copy the source audio into the deliverable MP4."""
    mux(parts, out, audio_from)
    return out


def frame_ranges(
    frame_count: int, chunk_frames: int | None, keyframes: Sequence[int] = ()
) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges of about `chunk_frames` frames. Given the frame
    numbers of the keyframes, a range ends at the keyframe closest to its nominal end when
    one lies between half and four times the chunk size from its start: a worker seeking to
    a range that starts on a keyframe decodes nothing before it."""
    if not chunk_frames or chunk_frames >= frame_count:
        return [(0, frame_count)]
    keys = sorted(k for k in keyframes if 0 < k < frame_count)
    ranges, start = [], 0
    while start + chunk_frames < frame_count:
        target = start + chunk_frames
        lo, hi = start + max(chunk_frames // 2, 1), start + 4 * chunk_frames
        near = keys[bisect.bisect_left(keys, lo) : bisect.bisect_right(keys, hi)]
        end = min(near, key=lambda k: abs(k - target)) if near else target
        ranges.append((start, end))
        start = end
    ranges.append((start, frame_count))
    return ranges


def run_video(
    video: Path,
    pipeline: FacePipeline,
    out_video: Path,
    every: int = 1,
    chunk_frames: int | None = None,
    batch_size: int = 16,
    on_frames: Callable[[str, int], None] | None = None,
    info: VideoInfo | None = None,
    index: FrameIndex | None = None,
) -> VideoResult:
    """The whole video in-process: the same analyze/merge/render/finalize as the cluster,
    each range read from the source through its frame index (`probe_indexed`).

    `on_frames(stage, n)` reports progress for the "analyze" and "render" stages.
    """
    import tempfile

    if info is None or index is None:
        info, index = probe_indexed(video)
    keys = index.keyframe_numbers() if index.seekable else []
    ranges = frame_ranges(info.frame_count, chunk_frames, keys)
    chunks = [
        analyze(
            video,
            s,
            e,
            pipeline,
            every,
            batch_size,
            on_frames=(lambda n: on_frames("analyze", n)) if on_frames else None,
            index=index,
        )
        for s, e in ranges
    ]
    result = merge(chunks, info, pipeline)
    out_video.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_video.parent, prefix=".facefleet-") as tmp:
        parts = []
        for k, (s, e) in enumerate(ranges):
            part = render(video, result, s, e, Path(tmp) / f"part-{k:05d}.mp4", index=index)
            if on_frames:
                on_frames("render", e - s)
            parts.append(part)
        finalize(parts, out_video, video if info.has_audio else None)
    return result
