"""A gallery of enrolled people and matching of face embeddings against it.

Each sample keeps what any extractor needs to embed it again: the face region with a
generous margin (a 192 px canvas, de-rotated, the face at 144 px) and the five landmarks
in it. So a gallery made under one extractor is re-embedded under another (dlib's 150 px
chip, the B0's 112 px ArcFace crop, a user's ONNX model) without the original photos.
Embeddings at enrolment come from the photo itself, exactly as faces in images and videos
are embedded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ValidationError

from facefleet.core.alignment import (
    ARCFACE_112,
    CropGeometry,
    align_face,
    refine_landmarks,
    similarity_transform,
)
from facefleet.core.detectors.base import Detector
from facefleet.core.errors import FacefleetError, GalleryError
from facefleet.core.extractors.base import Extractor
from facefleet.core.images import read_image
from facefleet.core.media import is_image_path
from facefleet.core.names import Metric, is_person_name
from facefleet.core.schemas import FaceDetection, Match, Point, Thresholds

GALLERY_VERSION = 2
# The stored face region: wide enough for every extractor's crop (dlib's chip reaches
# further out than the ArcFace crop), fine enough not to be upsampled for any of them.
REGION = CropGeometry(
    name="gallery-region",
    size=192,
    template=tuple((x + 24.0, y + 24.0) for x, y in ARCFACE_112.scaled(144).template),  # type: ignore[arg-type]
)
# What version 1 galleries stored: 112 px ArcFace crops, their landmarks on the template.
_V1_CROP = ARCFACE_112


class GallerySample(BaseModel):
    person: str
    source: str
    landmarks: tuple[Point, Point, Point, Point, Point] = REGION.template


class GalleryMeta(BaseModel):
    version: int = GALLERY_VERSION
    model_id: str
    embedding_size: int
    region_size: int = REGION.size
    samples: list[GallerySample]


@dataclass(frozen=True)
class EnrollIssue:
    """An image or person that could not be enrolled, and why."""

    person: str
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def check_person_name(name: str) -> str:
    """Person names become folder and object names: refuse anything path-like."""
    if not is_person_name(name):
        raise GalleryError(f"invalid person name {name!r}")
    return name


def face_region(image: np.ndarray, face: FaceDetection) -> tuple[np.ndarray, np.ndarray]:
    """The stored region of one face and its landmarks in region pixels."""
    points = face.landmarks_array().astype(np.float64)
    matrix = similarity_transform(points, REGION.points())
    region = align_face(image, points, REGION)
    inside = points @ matrix[:, :2].T + matrix[:, 2]
    return region, inside


class Gallery:
    """Enrolled people: per sample its face region and landmarks, its embedding under the
    gallery's extractor, and the person's name."""

    def __init__(
        self,
        model_id: str,
        embeddings: np.ndarray,
        regions: np.ndarray,
        samples: list[GallerySample],
    ) -> None:
        if not (len(embeddings) == len(regions) == len(samples)):
            raise GalleryError("gallery arrays and sample list differ in length")
        self.model_id = model_id
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.regions = np.asarray(regions, dtype=np.uint8)
        self.samples = list(samples)

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def empty(cls, extractor: Extractor) -> Gallery:
        return cls(
            extractor.model_id,
            np.zeros((0, extractor.dim), dtype=np.float32),
            np.zeros((0, REGION.size, REGION.size, 3), dtype=np.uint8),
            [],
        )

    @classmethod
    def enroll_folder(
        cls,
        folder: Path,
        detector: Detector,
        extractor: Extractor,
        refine: bool = True,
        on_image: Callable[[Path], None] | None = None,
    ) -> tuple[Gallery, list[EnrollIssue]]:
        """Enroll `<folder>/<Person_Name>/*.jpg|png`; returns the gallery and what was skipped."""
        folder = Path(folder)
        if not folder.is_dir():
            raise GalleryError(f"gallery folder {folder} does not exist or is not a folder")
        gallery = cls.empty(extractor)
        issues: list[EnrollIssue] = []
        people = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not people:
            raise GalleryError(
                f"gallery folder {folder} has no person folders (expected {folder}/<Name>/*.jpg)"
            )
        for person_dir in people:
            images = sorted(p for p in person_dir.rglob("*") if p.is_file() and is_image_path(p))
            if not images:
                issues.append(EnrollIssue(person_dir.name, str(person_dir), "no image files"))
                continue
            issues.extend(
                gallery.add_person(
                    person_dir.name, images, detector, extractor, refine, on_image=on_image
                )
            )
        if len(gallery) == 0:
            raise GalleryError(f"gallery folder {folder}: no face could be enrolled")
        return gallery, issues

    def add_person(
        self,
        name: str,
        images: Iterable[Path],
        detector: Detector,
        extractor: Extractor,
        refine: bool = True,
        on_image: Callable[[Path], None] | None = None,
    ) -> list[EnrollIssue]:
        """Enroll one person from photos: the largest face of each photo is used."""
        check_person_name(name)
        self._check_model(extractor)
        crops, regions, samples, issues = [], [], [], []
        for path in images:
            if on_image:
                on_image(path)
            try:
                image = read_image(path)
            except FacefleetError as exc:
                issues.append(EnrollIssue(name, str(path), exc.reason))
                continue
            faces = detector.detect([image])[0]
            if not faces:
                issues.append(EnrollIssue(name, str(path), "no face detected"))
                continue
            largest = max(faces, key=lambda f: f.area)
            if refine:
                largest = refine_landmarks([image], [[largest]], detector)[0][0]
            crops.append(align_face(image, largest, extractor.geometry))
            region, landmarks = face_region(image, largest)
            regions.append(region)
            samples.append(
                GallerySample(
                    person=name,
                    source=str(path),
                    landmarks=tuple(map(tuple, landmarks.tolist())),  # type: ignore[arg-type]
                )
            )
        if not crops:
            issues.append(EnrollIssue(name, name, "no usable face: person not enrolled"))
            return issues
        self._append(extractor.embed(np.stack(crops)), np.stack(regions), samples)
        return issues

    def add_regions(
        self,
        name: str,
        regions: np.ndarray,
        extractor: Extractor,
        sources: list[str],
        landmarks: Sequence[Sequence[Point]] | None = None,
    ) -> None:
        """Enroll faces that are already stored as regions: their landmarks in region
        pixels (default: on REGION's template)."""
        check_person_name(name)
        self._check_model(extractor)
        samples = [
            GallerySample(person=name, source=s)
            if landmarks is None
            else GallerySample(person=name, source=s, landmarks=tuple(landmarks[i]))  # type: ignore[arg-type]
            for i, s in enumerate(sources)
        ]
        self._append(
            extractor.embed(self._crops(regions, samples, extractor.geometry)), regions, samples
        )

    def _append(
        self, vectors: np.ndarray, regions: np.ndarray, samples: list[GallerySample]
    ) -> None:
        self.embeddings = np.concatenate([self.embeddings, vectors])
        self.regions = np.concatenate([self.regions, regions.astype(np.uint8)])
        self.samples += samples

    def add_samples_from(self, other: Gallery) -> None:
        """Take over every sample of another gallery made with the same extractor."""
        if other.model_id != self.model_id:
            raise GalleryError("cannot combine galleries made by different extractors")
        self._append(other.embeddings, other.regions, other.samples)

    def remove_person(self, name: str) -> int:
        """Remove every sample (region and embedding) of `name`; returns how many went."""
        return self.remove_samples(lambda s: s.person == name)

    def remove_samples(self, unwanted: Callable[[GallerySample], bool]) -> int:
        """Remove the samples (regions and embeddings) for which `unwanted` is true."""
        keep = np.array([not unwanted(s) for s in self.samples], dtype=bool)
        self.embeddings = self.embeddings[keep]
        self.regions = self.regions[keep]
        self.samples = [s for s, k in zip(self.samples, keep, strict=True) if k]
        return int((~keep).sum())

    def reembed(self, extractor: Extractor, where: str = "gallery") -> None:
        """Recompute every embedding from the stored regions with another extractor."""
        self.embeddings = (
            extractor.embed(self._crops(self.regions, self.samples, extractor.geometry, where))
            if len(self.regions)
            else np.zeros((0, extractor.dim), dtype=np.float32)
        )
        self.model_id = extractor.model_id

    @staticmethod
    def _crops(
        regions: np.ndarray,
        samples: list[GallerySample],
        geometry: CropGeometry,
        where: str = "gallery",
    ) -> np.ndarray:
        crops = []
        for region, sample in zip(regions, samples, strict=True):
            points = np.asarray(sample.landmarks, dtype=np.float64)
            if not _covers(region.shape[0], points, geometry):
                raise GalleryError(
                    f"{where}: the stored face of {sample.person} ({sample.source}) does not "
                    f"cover the {geometry.name} crop this extractor needs (a gallery saved by "
                    "an older facefleet keeps tight 112 px crops only); enroll the people again "
                    "from their photos"
                )
            crops.append(align_face(region, points, geometry))
        return np.stack(crops)

    def _check_model(self, extractor: Extractor) -> None:
        if extractor.model_id != self.model_id:
            raise GalleryError(
                f"gallery embeddings come from model {self.model_id}, not "
                f"{extractor.model_id}; re-embed it first"
            )

    # ---- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def people(self) -> list[str]:
        return sorted({s.person for s in self.samples})

    def person_similarities(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The enrolled people, and per row of `embeddings` and person the cosine similarity
        to that person's nearest sample, (N, people)."""
        people = self.people
        sims = np.asarray(embeddings, dtype=np.float32) @ self.embeddings.T
        column = {name: i for i, name in enumerate(people)}
        owner = np.array([column[s.person] for s in self.samples])
        out = np.full((len(sims), len(people)), -1.0, dtype=np.float32)
        for j in range(len(people)):
            out[:, j] = sims[:, owner == j].max(axis=1)
        return people, np.clip(out, -1.0, 1.0)

    def match(
        self,
        embeddings: np.ndarray,
        metric: Metric = "cosine",
        threshold: float | None = None,
        thresholds: Thresholds | None = None,
    ) -> list[Match]:
        """Top-1 person for each embedding, or identity None when beyond the threshold.

        A person's score is that of their nearest sample. With unit vectors the euclidean
        distance is sqrt(2 - 2·cos), so both metrics rank alike; they differ in the threshold.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if threshold is None:
            threshold = (thresholds or Thresholds()).for_matching(metric)
        if len(embeddings) == 0:
            return []
        if len(self) == 0:
            return [Match(identity=None, best_candidate=None, similarity=-1.0, distance=2.0)] * len(
                embeddings
            )
        if embeddings.shape[1] != self.embeddings.shape[1]:
            raise GalleryError(
                f"embedding size {embeddings.shape[1]} does not match the gallery's "
                f"{self.embeddings.shape[1]}"
            )
        sims = embeddings @ self.embeddings.T
        best = sims.argmax(axis=1)
        out = []
        for row, j in zip(sims, best, strict=True):
            sim = float(np.clip(row[j], -1.0, 1.0))
            dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * sim)))
            accepted = accepts(sim, metric, threshold)
            person = self.samples[int(j)].person
            out.append(
                Match(
                    identity=person if accepted else None,
                    best_candidate=person,
                    similarity=sim,
                    distance=dist,
                )
            )
        return out

    # ---- persistence ----------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write gallery.json + embeddings.npy + regions.npy into `folder` (replaced whole)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = GalleryMeta(
            model_id=self.model_id,
            embedding_size=int(self.embeddings.shape[1]),
            region_size=int(self.regions.shape[1]),
            samples=self.samples,
        )
        # Write under temporary names first so a crash never leaves a half-new gallery.
        for name, arr in (("embeddings.npy", self.embeddings), ("regions.npy", self.regions)):
            with open(folder / f"{name}.part", "wb") as fh:
                np.save(fh, arr)
        (folder / "gallery.json.part").write_text(meta.model_dump_json(indent=1))
        for name in FILES:
            (folder / f"{name}.part").replace(folder / name)

    @classmethod
    def load(
        cls, folder: Path, extractor: Extractor | None = None, where: str | None = None
    ) -> Gallery:
        """Read a saved gallery; under another extractor it is re-embedded from its regions.
        Galleries of version 1 (112 px ArcFace crops) are read as such."""
        folder = Path(folder)
        where = where or str(folder)
        meta_path = folder / "gallery.json"
        if not meta_path.is_file():
            raise GalleryError(f"{folder} is not a saved gallery (no gallery.json)")
        try:
            raw = json.loads(meta_path.read_text())
            if raw.get("version") == 1:
                return cls._load_v1(folder, raw, extractor, where)
            meta = GalleryMeta.model_validate(raw)
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            regions = np.load(folder / "regions.npy", allow_pickle=False)
        except (OSError, ValueError, ValidationError) as exc:
            raise GalleryError(f"{folder}: saved gallery is damaged ({exc})") from None
        gallery = cls(meta.model_id, embeddings, regions, meta.samples)
        if extractor is not None and extractor.model_id != meta.model_id:
            gallery.reembed(extractor, where)
        return gallery

    @classmethod
    def _load_v1(cls, folder: Path, raw: dict, extractor: Extractor | None, where: str) -> Gallery:
        crops = np.load(folder / "crops.npy", allow_pickle=False)
        scale = crops.shape[1] / _V1_CROP.size
        landmarks = tuple((x * scale, y * scale) for x, y in _V1_CROP.template)
        samples = [
            GallerySample(person=s["person"], source=s["source"], landmarks=landmarks)  # type: ignore[arg-type]
            for s in raw["samples"]
        ]
        embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
        gallery = cls(raw["model_id"], embeddings, crops, samples)
        if extractor is not None and extractor.model_id != gallery.model_id:
            gallery.reembed(extractor, where)
        return gallery

    @staticmethod
    def is_saved_gallery(folder: Path) -> bool:
        return (Path(folder) / "gallery.json").is_file()


FILES = ("gallery.json", "embeddings.npy", "regions.npy")


def accepts(similarity: float, metric: Metric, threshold: float, margin: float = 0.0) -> bool:
    """The matching rule: cosine similarity >= threshold, or the distance between the unit
    vectors (sqrt(2 - 2 cos)) <= threshold; `margin` makes either stricter."""
    if metric == "cosine":
        return similarity >= threshold + margin
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity))) <= threshold - margin


def _covers(side: int, landmarks: np.ndarray, geometry: CropGeometry, slack: float = 0.02) -> bool:
    """Whether the crop `geometry` makes from these landmarks lies inside a region of
    `side` pixels (up to `slack` of the crop: its far corners may be black anyway)."""
    matrix = similarity_transform(landmarks, geometry.points())
    size = geometry.size
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inside = corners @ cv2.invertAffineTransform(matrix)[:, :2].T
    inside += cv2.invertAffineTransform(matrix)[:, 2]
    margin = slack * side
    return bool((inside >= -margin).all() and (inside <= side + margin).all())
