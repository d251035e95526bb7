"""Following faces from frame to frame: IoU plus embedding similarity, optimal assignment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lap
import numpy as np

from facefleet.core.schemas import TrackingGates


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x0, y0, x1, y1 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a, b = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


# The B0's gates (see TrackingGates); an extractor declares its own.
MIN_LINK_SIMILARITY = TrackingGates().link
APPEARANCE_GATE = TrackingGates().appearance


def associate(
    iou: np.ndarray,
    similarity: np.ndarray | None,
    min_iou: float,
    similarity_gate: float = APPEARANCE_GATE,
    min_similarity: float = MIN_LINK_SIMILARITY,
    iou_weight: float = 0.5,
) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs (row, col). A pair must overlap (IoU >= min_iou) and not look
    unlike (similarity >= min_similarity, so a cut to another person in the same place
    starts a new track), or, for a face that moved fast, look alike without overlap
    (similarity >= similarity_gate)."""
    if iou.size == 0:
        return []
    if similarity is None:
        affinity = iou
        allowed = iou >= min_iou
    else:
        affinity = iou_weight * iou + (1.0 - iou_weight) * np.clip(similarity, 0.0, 1.0)
        allowed = ((iou >= min_iou) & (similarity >= min_similarity)) | (
            similarity >= similarity_gate
        )
    cost = np.where(allowed, 1.0 - affinity, 1e6)
    _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - 1e-9)
    return [(r, int(c)) for r, c in enumerate(rows) if c >= 0 and allowed[r, int(c)]]


@dataclass
class TrackState:
    track_id: int
    box: np.ndarray
    embedding: np.ndarray | None
    last_frame: int


class FaceTracker:
    """Frame-to-frame association; ids are local to one tracker (one frame range)."""

    def __init__(
        self,
        max_gap: int = 15,
        min_iou: float = 0.2,
        similarity_gate: float = APPEARANCE_GATE,
        first_id: int = 0,
        min_similarity: float = MIN_LINK_SIMILARITY,
    ) -> None:
        self.max_gap = max_gap
        self.min_iou = min_iou
        self.similarity_gate = similarity_gate
        self.min_similarity = min_similarity
        self.next_id = first_id
        self.active: list[TrackState] = []

    def update(
        self, frame_index: int, boxes: np.ndarray, embeddings: np.ndarray | None
    ) -> list[int]:
        """Track id for each detection of this frame, in the detections' order, with every
        detection's embedding at hand (or none of them)."""
        pending = self.prepare(frame_index, boxes)
        have = embeddings is not None and embeddings.shape[1] > 0
        vectors = list(embeddings) if have else [None] * len(pending.boxes)  # type: ignore[arg-type]
        return self.finish(pending, {}, vectors)

    def prepare(self, frame_index: int, boxes: np.ndarray) -> PendingFrame:
        """Phase one of a frame: drop tracks gone too long, overlap of the rest with the
        detections. What needs an embedding is decided from it before `finish`."""
        self.active = [t for t in self.active if frame_index - t.last_frame <= self.max_gap]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ious = iou_matrix(np.array([t.box for t in self.active]).reshape(-1, 4), boxes)
        return PendingFrame(frame_index, boxes, ious, list(self.active))

    def finish(
        self,
        pending: PendingFrame,
        fixed: dict[int, int],
        embeddings: Sequence[np.ndarray | None],
        keep_above: float | None = None,
    ) -> list[int]:
        """Phase two: track id for each detection. `fixed` maps a detection to the track id
        its overlap alone links it to; such a link stands unless the detection was embedded
        and its similarity to the track is below `keep_above` (default the link gate): a
        person replaced in place. The other detections are linked by overlap and, when
        every one of them and of the tracks left has an embedding, similarity; a detection
        left over starts a track."""
        frame_index, boxes, tracks = pending.frame_index, pending.boxes, pending.tracks
        gate = self.min_similarity if keep_above is None else keep_above
        by_id = {t.track_id: r for r, t in enumerate(tracks)}
        ids = [-1] * len(boxes)
        for c, tid in fixed.items():
            track, vec = tracks[by_id[tid]], embeddings[c]
            measured = vec is not None and track.embedding is not None
            if measured and float(track.embedding @ vec) < gate:  # type: ignore[operator]
                continue  # looks unlike: the open association below decides
            self._extend(track, boxes[c], vec, frame_index)
            ids[c] = tid
        rows = [r for r, t in enumerate(tracks) if t.track_id not in ids]
        cols = [c for c in range(len(boxes)) if ids[c] == -1]
        ious = pending.ious[np.ix_(rows, cols)]
        similarity = None
        col_vecs = [embeddings[c] for c in cols]
        row_vecs = [tracks[r].embedding for r in rows]
        if cols and rows and all(v is not None for v in col_vecs + row_vecs):
            similarity = np.stack(row_vecs) @ np.stack(col_vecs).T  # type: ignore[arg-type]
        pairs = associate(ious, similarity, self.min_iou, self.similarity_gate, self.min_similarity)
        for r, c in pairs:
            track = tracks[rows[r]]
            self._extend(track, boxes[cols[c]], embeddings[cols[c]], frame_index)
            ids[cols[c]] = track.track_id
        for c in cols:
            if ids[c] == -1:
                self.active.append(TrackState(self.next_id, boxes[c], embeddings[c], frame_index))
                ids[c] = self.next_id
                self.next_id += 1
        return ids

    @staticmethod
    def _extend(track: TrackState, box: np.ndarray, vec: np.ndarray | None, frame: int) -> None:
        """The track takes this face: its box, and a step of its appearance towards it."""
        track.box, track.last_frame = box, frame
        if vec is not None:
            mixed = vec if track.embedding is None else 0.7 * track.embedding + 0.3 * vec
            track.embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-12)


@dataclass
class PendingFrame:
    """A frame between the tracker's two phases: its boxes and their overlap with the
    tracks that were active (rows of `ious`, in `tracks`' order)."""

    frame_index: int
    boxes: np.ndarray
    ious: np.ndarray
    tracks: list[TrackState]

    @property
    def gaps(self) -> list[int]:
        """Frames since each track was last seen."""
        return [self.frame_index - t.last_frame for t in self.tracks]

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self.tracks]
