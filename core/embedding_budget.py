"""The embedding budget of a track: which faces of a video go through the extractor.

A track's name is a weighted mean over its faces (video_pipeline._name_track) and the
tracker links most faces by overlap alone, so embedding every face of every frame buys
little: consecutive faces of one track are near copies. A face is embedded when identity
needs it, and its track's last embedding is carried along otherwise:

- the first faces of a track (`first_faces`), so a short track still has a name;
- a face clearly better than every one embedded so far (larger, more confident, more
  frontal): the name should rest on the best views;
- an uncertain association, where the tracker needs appearance to decide: no confident
  overlap (a new face, a fast move, a cut to another shot), a detection that overlaps
  several tracks or a track that overlaps several detections (a crossing), a track
  re-appearing after a gap, or a scene cut between two analysed frames;
- a slow heartbeat (`heartbeat` analysed frames of the track since its last embedding), so
  a track that drifts to another person is noticed and a name is never one face old.

Association runs in two phases (FaceTracker.prepare / finish): overlap first, which this
module turns into confident links (`overlap_links`); then only the faces that need it are
embedded (`EmbeddingBudget.decide`); then the tracker links the rest by overlap and
similarity, and checks each confident link that was embedded against its track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facefleet.core.schemas import FaceDetection

# Why a detection has no confident overlap link, i.e. why the tracker needs its appearance.
Uncertain = Literal["new", "weak", "crowded", "gap", "cut"]
# Why a face was embedded ("carry": it was not; its track's last embedding stands for it).
Reason = Literal["first", "better", "heartbeat", "new", "weak", "crowded", "gap", "cut", "carry"]


class BudgetConfig(BaseModel):
    """The policy's knobs. Defaults tuned on the dev video cases (bench/budget.py)."""

    model_config = ConfigDict(frozen=True)

    first_faces: int = Field(default=3, ge=1, description="faces embedded at a track's start")
    heartbeat: int = Field(
        default=10, ge=1, description="analysed frames of a track between two embeddings"
    )
    better_by: float = Field(
        default=0.25, ge=0.0, description="quality gain over the best embedded face that counts"
    )
    confident_iou: float = Field(
        default=0.5, gt=0.0, le=1.0, description="overlap that links a face without its looks"
    )
    touch_iou: float = Field(
        default=0.1, ge=0.0, le=1.0, description="overlap below this is no overlap at all"
    )
    crowd_margin: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="a second overlap within this of the best makes a link ambiguous (a "
        "crossing); faces that merely touch (an audience: 0.97 to its own track, 0.38 to "
        "the neighbour's) are not",
    )
    verify_slack: float = Field(
        default=0.1,
        ge=0.0,
        description="an embedded face breaks its confident overlap link only this far below "
        "the tracker's link gate: its track's appearance is up to `heartbeat` frames old and "
        "a face drifts meanwhile (dlib: such links verified at 0.85-0.99, gate 0.926; at the "
        "gate itself they split small faces of the crowd case into tracks that later merged "
        "with other people)",
    )
    cut_distance: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="colour-histogram distance between analysed frames that marks a cut; "
        "measured: cuts 0.38-0.63, motion within a shot at most 0.17 on the dev videos",
    )


@dataclass(frozen=True, slots=True)
class OverlapLink:
    """Phase one for one detection: the track it confidently continues, or why none."""

    track: int | None  # track id; None when the overlap alone does not decide
    uncertain: Uncertain | None = None


@dataclass(frozen=True, slots=True)
class EmbedDecision:
    """Whether one detection is embedded, and why."""

    embed: bool
    reason: Reason
    track: int | None  # the confident overlap link it keeps, if any


def overlap_links(
    ious: np.ndarray,
    track_ids: Sequence[int],
    gaps: Sequence[int],
    step: int,
    config: BudgetConfig,
    cut: bool = False,
) -> list[OverlapLink]:
    """Confident links from a (tracks, detections) IoU matrix. A link is confident when the
    pair overlaps by `confident_iou` and neither overlaps anything else nearly as much
    (within `crowd_margin`: a crossing needs appearance). Only tracks seen on the previous
    analysed frame (`gaps[r]` <= `step`) link or crowd: a track lost for a while keeps its
    last box, which would crowd the track that took over its place; a detection that only
    such a track overlaps is a re-appearance ("gap"), which may be somebody else."""
    n_dets = ious.shape[1]
    if cut and len(track_ids):
        return [OverlapLink(None, "cut") for _ in range(n_dets)]
    live = np.asarray(gaps, dtype=np.int64).reshape(-1) <= step
    current = ious[live]
    ids = [t for t, alive in zip(track_ids, live, strict=True) if alive]
    stale = ious[~live]
    links = []
    for c in range(n_dets):
        column = current[:, c]
        r = int(column.argmax()) if len(column) else -1
        best = float(column[r]) if r >= 0 else 0.0
        if best < config.touch_iou:
            back = stale.shape[0] and float(stale[:, c].max()) >= config.touch_iou
            links.append(OverlapLink(None, "gap" if back else "new"))
        elif best < config.confident_iou:
            links.append(OverlapLink(None, "weak"))
        elif max(_second(column), _second(current[r])) > best - config.crowd_margin:
            links.append(OverlapLink(None, "crowded"))
        else:
            links.append(OverlapLink(int(ids[r])))
    return links


def _second(values: np.ndarray) -> float:
    """The second largest value (0 when there is none)."""
    return float(np.partition(values, -2)[-2]) if len(values) > 1 else 0.0


def frontalness(landmarks: Sequence[tuple[float, float]]) -> float:
    """1 for a frontal face, towards 0 in profile: how evenly the nose sits between the
    eyes and between the mouth corners (five landmarks, FaceDetection's order)."""
    (lx, _), (rx, _), (nx, _), (mlx, _), (mrx, _) = landmarks[:5]

    def balance(left: float, right: float) -> float:
        a, b = nx - left, right - nx
        if a <= 0 or b <= 0:  # the nose outside the pair: a profile
            return 0.0
        return min(a, b) / max(a, b)

    return 0.5 * (balance(lx, rx) + balance(mlx, mrx))


def face_quality(det: FaceDetection) -> float:
    """How much a face is worth embedding: its side, detection score and frontalness. The
    side, not the area, so a face that slowly grows is re-embedded on a log scale."""
    side = float(np.sqrt(max(det.width, 0.0) * max(det.height, 0.0)))
    return side * det.score * max(frontalness(det.landmarks), 0.05)


@dataclass
class TrackBudget:
    """What the policy remembers of one track."""

    embedded: int = 0  # faces measured
    best: float = 0.0  # the best quality among them
    since: int = 0  # analysed faces since the last measured one


@dataclass
class EmbeddingBudget:
    """Per chunk: decides which detections to embed and remembers each track's state.
    `step`: the analysis stride (every K-th frame), so a one-step gap is no gap."""

    config: BudgetConfig = field(default_factory=BudgetConfig)
    step: int = 1
    tracks: dict[int, TrackBudget] = field(default_factory=dict)

    def decide(
        self, links: Sequence[OverlapLink], qualities: Sequence[float]
    ) -> list[EmbedDecision]:
        return [self._decide(link, q) for link, q in zip(links, qualities, strict=True)]

    def _decide(self, link: OverlapLink, quality: float) -> EmbedDecision:
        if link.track is None:
            return EmbedDecision(True, link.uncertain or "new", None)
        state = self.tracks.get(link.track, TrackBudget())
        cfg = self.config
        if state.embedded < cfg.first_faces:
            return EmbedDecision(True, "first", link.track)
        if quality > state.best * (1.0 + cfg.better_by):
            return EmbedDecision(True, "better", link.track)
        if state.since + 1 >= cfg.heartbeat:
            return EmbedDecision(True, "heartbeat", link.track)
        return EmbedDecision(False, "carry", link.track)

    def record(
        self, ids: Sequence[int], decisions: Sequence[EmbedDecision], qualities: Sequence[float]
    ) -> None:
        """After association: the track each detection ended in, embedded or not."""
        for tid, decision, quality in zip(ids, decisions, qualities, strict=True):
            state = self.tracks.setdefault(tid, TrackBudget())
            if decision.embed:
                state.embedded += 1
                state.best = max(state.best, quality)
                state.since = 0
            else:
                state.since += 1


@dataclass
class CutDetector:
    """A shot cut between two analysed frames: their hue/saturation histograms differ by more
    than `threshold` (half the L1 distance, 0..1). Histograms ignore where things are, so
    motion within a shot barely moves them."""

    threshold: float = BudgetConfig().cut_distance
    previous: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
        hist /= max(float(hist.sum()), 1.0)
        previous, self.previous = self.previous, hist
        return previous is not None and 0.5 * float(np.abs(hist - previous).sum()) > self.threshold
