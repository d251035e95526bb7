"""Typed data that crosses module boundaries. JSON outputs are these models dumped."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from facefleet.core.names import METRICS, Metric

Point = tuple[float, float]
Box = tuple[float, float, float, float]


class FaceDetection(BaseModel):
    """One detected face in image pixel coordinates.

    Landmarks are, in order: left eye, right eye, nose, left mouth corner, right mouth corner,
    where "left" is the side with the smaller x in the image (the subject's right).
    """

    model_config = ConfigDict(frozen=True)

    box: Box = Field(description="x0, y0, x1, y1 in pixels")
    score: float = Field(ge=0.0, le=1.0)
    landmarks: tuple[Point, Point, Point, Point, Point]

    @field_validator("box")
    @classmethod
    def _box_ordered(cls, box: Box) -> Box:
        x0, y0, x1, y1 = box
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box corners out of order: {box}")
        return box

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def landmarks_array(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float32)


class Match(BaseModel):
    """The gallery's answer for one embedding."""

    identity: str | None = Field(description="Best gallery person, or null when unknown")
    best_candidate: str | None = Field(description="Nearest person even when below threshold")
    similarity: float = Field(description="Cosine similarity to the nearest person")
    distance: float = Field(description="Euclidean distance between normalized embeddings")


class FaceResult(BaseModel):
    """A face in an output: where it is and who it is."""

    box: Box
    score: float
    landmarks: list[Point]
    identity: str | None = None
    similarity: float | None = Field(
        default=None, description="Cosine similarity to the matched (or nearest) person"
    )

    @classmethod
    def from_detection(cls, det: FaceDetection, match: Match | None = None) -> FaceResult:
        return cls(
            box=tuple(round(v, 2) for v in det.box),  # type: ignore[arg-type]
            score=round(det.score, 4),
            landmarks=[(round(x, 2), round(y, 2)) for x, y in det.landmarks],
            identity=match.identity if match else None,
            similarity=round(match.similarity, 4) if match else None,
        )


class Thresholds(BaseModel):
    """Calibrated decision thresholds: cosine similarity >= cosine, distance <= euclidean.

    `cosine`/`euclidean` give the best F1 on balanced verification pairs (DevTest). Matching
    against a gallery is open-set: a stranger is compared with every enrolled face, and the
    more faces, the likelier one of them looks alike. So a gallery's threshold keeps a
    stranger's chance of being named at `identification_far` (1%) for its own size: from
    `impostor_curve`, how often one comparison of two different DevTest people reaches each
    similarity, a gallery of N faces needs the similarity a single comparison reaches with
    probability 1 - (1 - far)^(1/N). `identification_*` is that rule for the open-set
    protocol's gallery (496 people), measured there directly; it is used when the size is
    not known. Never below the best-F1 threshold.
    """

    cosine: float = 0.5
    euclidean: float = 1.0
    identification_cosine: float | None = None
    identification_euclidean: float | None = None
    identification_far: float | None = None
    impostor_curve: list[tuple[float, float]] | None = Field(
        default=None,
        description="(probability, cosine): one comparison of two different people reaches "
        "that similarity with that probability (LFW DevTest, all pairs)",
    )

    def for_matching(self, metric: str, gallery_size: int | None = None) -> float:
        cosine = self.gallery_cosine(gallery_size)
        if cosine is None:
            strict = getattr(self, f"identification_{metric}")
            return float(strict if strict is not None else getattr(self, metric))
        if metric == "cosine":
            return cosine
        return float(np.sqrt(max(0.0, 2.0 - 2.0 * cosine)))

    def gallery_cosine(self, gallery_size: int | None) -> float | None:
        """The cosine threshold for a gallery of this many faces, when the curve is known."""
        if not gallery_size or not self.impostor_curve or self.identification_far is None:
            return None
        tail = 1.0 - (1.0 - self.identification_far) ** (1.0 / gallery_size)
        probabilities, cosines = zip(*sorted(self.impostor_curve), strict=True)
        # The curve falls as the probability rises: interpolate in log-probability.
        cosine = float(np.interp(np.log10(tail), np.log10(probabilities), cosines))
        return max(cosine, self.cosine)


class TrackingGates(BaseModel):
    """How alike two faces of consecutive frames must look, in an extractor's own cosine
    scale, for the tracker to link them: `link` when their boxes overlap (a cut to another
    person in the same place starts a new track), `appearance` when they do not (a face
    that moved fast). The defaults were measured with the B0 on the Hamilton clip (the same
    face in consecutive frames >= 0.74 in 99% of cases; another person at a cut 0.63)."""

    link: float = 0.65
    appearance: float = 0.85


class ModelInfo(BaseModel):
    """Which models and matching rule produced a result."""

    detector: str
    extractor: str | None = Field(description="Extractor model id, or null when none was loaded")
    metric: Metric = "cosine"
    threshold: float | None = None
    gallery_size: int = 0


class ImageResult(BaseModel):
    """`facefleet process` output for one image."""

    source: str
    width: int
    height: int
    model: ModelInfo
    faces: list[FaceResult]


class RawMatch(BaseModel):
    """What the gallery said about this one face on its own (before track voting)."""

    identity: str | None
    similarity: float


class VideoFace(BaseModel):
    """A face in one video frame; `identity` is its track's final name."""

    box: Box
    score: float
    landmarks: list[Point]
    track_id: int
    identity: str | None = None
    similarity: float | None = Field(default=None, description="The track's similarity")
    match: RawMatch | None = Field(default=None, description="This face's own best match")
    interpolated: bool = Field(
        default=False, description="Placed between detections when detecting every K frames"
    )


class FrameResult(BaseModel):
    index: int
    time_s: float
    faces: list[VideoFace]


class Track(BaseModel):
    track_id: int
    identity: str | None
    similarity: float | None
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float
    num_faces: int
    original_identity: str | None = Field(
        default=None,
        description="Set when a correction changed the name: the name given at processing "
        "time (null: unknown then)",
    )
    corrected: bool = Field(default=False, description="The name was corrected by a person")


class VideoResult(BaseModel):
    """`facefleet process` output for one video."""

    source: str
    fps: float
    frame_count: int
    width: int
    height: int
    model: ModelInfo
    frames: list[FrameResult]
    tracks: list[Track]


# ---- evaluations (the figures a model is judged and calibrated by) ----------------------


class CVResult(BaseModel):
    """K-fold verification accuracy for one metric (the LFW protocol when K = 10)."""

    metric: Metric
    # Mean and population std over folds, each fold scored with a threshold picked on the rest.
    accuracy: float
    accuracy_std: float
    f1: float
    f1_std: float
    # The threshold chosen for each held-out fold, in fold-id order.
    thresholds: list[float]
    # Best-F1 threshold on all pairs: the operating point to deploy, not an unbiased estimate.
    best_threshold: float
    best_f1: float
    best_accuracy: float


class PairEvaluation(BaseModel):
    """Both metrics on one pair set."""

    protocol: str
    pairs: int
    cosine: CVResult
    euclidean: CVResult

    def lines(self, prefix: str = "") -> list[str]:
        """One clear line per metric."""
        out = []
        for metric in METRICS:
            r: CVResult = getattr(self, metric)
            rule = ">=" if metric == "cosine" else "<="
            out.append(
                f"{prefix}{self.protocol} {metric:9s} best threshold {rule} {r.best_threshold:.4f}"
                f"  F1 {r.best_f1:.4f}  acc {r.best_accuracy:.4f}"
                f"  | 10-fold CV acc {r.accuracy:.4f} ± {r.accuracy_std:.4f}"
            )
        return out


class OperatingPoint(BaseModel):
    far: float
    threshold: float = Field(description="cosine similarity >= threshold is accepted")
    dir: float = Field(description="genuine probes named right at or above the threshold")


class IdentificationReport(BaseModel):
    """The protocol's figures for one extractor."""

    gallery: int
    genuine_probes: int
    impostor_probes: int
    rank1: float
    points: list[OperatingPoint]

    def at(self, far: float) -> OperatingPoint:
        return next(p for p in self.points if abs(p.far - far) < 1e-12)

    def lines(self) -> list[str]:
        out = [
            f"identification: gallery {self.gallery} people, {self.genuine_probes} genuine "
            f"and {self.impostor_probes} impostor probes; rank-1 {self.rank1:.4f}"
        ]
        out += [
            f"identification DIR at FAR {p.far:g}: {p.dir:.4f} (cosine >= {p.threshold:.4f})"
            for p in self.points
        ]
        return out


class TrainingRecord(BaseModel):
    """How a trained checkpoint came to be: its data, recipe and the evaluation it was kept
    for. Every field is optional: a checkpoint built outside the trainer records less."""

    data: str | None = None
    train_protocol: str | None = Field(
        default=None, description="LFW protocol of the training people (devtrain)"
    )
    train_people: int | None = None
    train_images: int | None = None
    epoch: int | None = None
    epochs_planned: int | None = None
    device: str | None = None
    config: dict[str, Any] = Field(
        default_factory=dict, description="The training recipe as it ran (TrainConfig)"
    )
    devtest: PairEvaluation | None = None
    threshold_rule: str | None = None
    variant: str | None = None
    teacher: str | None = None
    parent_model: str | None = Field(
        default=None, description="The extractor this one was fine-tuned from"
    )
    note: str | None = None
