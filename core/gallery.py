"""A gallery of enrolled people and matching of face embeddings against it.

For each sample the gallery keeps the aligned crop beside the embedding, so a gallery made
with one extractor can be re-embedded under another without the original photos.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from facefleet.core.alignment import align_face, refine_landmarks
from facefleet.core.detectors.base import Detector
from facefleet.core.embedding import FaceEmbedder
from facefleet.core.errors import FacefleetError, GalleryError
from facefleet.core.images import read_image
from facefleet.core.media import is_image_path
from facefleet.core.names import Metric, is_person_name
from facefleet.core.schemas import Match, Thresholds

GALLERY_VERSION = 1


class GallerySample(BaseModel):
    person: str
    source: str


class GalleryMeta(BaseModel):
    version: int = GALLERY_VERSION
    model_id: str
    embedding_size: int
    crop_size: int
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


class Gallery:
    """Enrolled people: per sample an aligned crop, its embedding and the person's name."""

    def __init__(
        self,
        model_id: str,
        embeddings: np.ndarray,
        crops: np.ndarray,
        samples: list[GallerySample],
    ) -> None:
        if not (len(embeddings) == len(crops) == len(samples)):
            raise GalleryError("gallery arrays and sample list differ in length")
        self.model_id = model_id
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.crops = np.asarray(crops, dtype=np.uint8)
        self.samples = list(samples)

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def empty(cls, embedder: FaceEmbedder, crop_size: int = 112) -> Gallery:
        return cls(
            embedder.model_id,
            np.zeros((0, embedder.dim), dtype=np.float32),
            np.zeros((0, crop_size, crop_size, 3), dtype=np.uint8),
            [],
        )

    @classmethod
    def enroll_folder(
        cls,
        folder: Path,
        detector: Detector,
        embedder: FaceEmbedder,
        crop_size: int = 112,
        refine: bool = True,
        on_image: Callable[[Path], None] | None = None,
    ) -> tuple[Gallery, list[EnrollIssue]]:
        """Enroll `<folder>/<Person_Name>/*.jpg|png`; returns the gallery and what was skipped."""
        folder = Path(folder)
        if not folder.is_dir():
            raise GalleryError(f"gallery folder {folder} does not exist or is not a folder")
        gallery = cls.empty(embedder, crop_size)
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
                    person_dir.name, images, detector, embedder, refine, on_image=on_image
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
        embedder: FaceEmbedder,
        refine: bool = True,
        on_image: Callable[[Path], None] | None = None,
    ) -> list[EnrollIssue]:
        """Enroll one person from photos: the largest face of each photo is used."""
        check_person_name(name)
        self._check_model(embedder)
        crops, sources, issues = [], [], []
        size = self.crops.shape[1]
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
            crops.append(align_face(image, largest, size))
            sources.append(str(path))
        if not crops:
            issues.append(EnrollIssue(name, name, "no usable face: person not enrolled"))
            return issues
        self.add_crops(name, np.stack(crops), embedder, sources)
        return issues

    def add_crops(
        self, name: str, crops: np.ndarray, embedder: FaceEmbedder, sources: list[str]
    ) -> None:
        """Enroll already aligned crops for one person."""
        check_person_name(name)
        self._check_model(embedder)
        vectors = embedder.embed(crops)
        self.embeddings = np.concatenate([self.embeddings, vectors])
        self.crops = np.concatenate([self.crops, crops.astype(np.uint8)])
        self.samples += [GallerySample(person=name, source=s) for s in sources]

    def add_crops_from(self, other: Gallery) -> None:
        """Take over every sample of another gallery made with the same extractor."""
        if other.model_id != self.model_id:
            raise GalleryError("cannot combine galleries made by different extractors")
        self.embeddings = np.concatenate([self.embeddings, other.embeddings])
        self.crops = np.concatenate([self.crops, other.crops])
        self.samples += other.samples

    def remove_person(self, name: str) -> int:
        """Remove every sample (crop and embedding) of `name`; returns how many were removed."""
        return self.remove_samples(lambda s: s.person == name)

    def remove_samples(self, unwanted: Callable[[GallerySample], bool]) -> int:
        """Remove the samples (crops and embeddings) for which `unwanted` is true."""
        keep = np.array([not unwanted(s) for s in self.samples], dtype=bool)
        self.embeddings = self.embeddings[keep]
        self.crops = self.crops[keep]
        self.samples = [s for s, k in zip(self.samples, keep, strict=True) if k]
        return int((~keep).sum())

    def reembed(self, embedder: FaceEmbedder) -> None:
        """Recompute every embedding from the stored crops with another extractor."""
        self.embeddings = (
            embedder.embed(self.crops)
            if len(self.crops)
            else np.zeros((0, embedder.dim), dtype=np.float32)
        )
        self.model_id = embedder.model_id

    def _check_model(self, embedder: FaceEmbedder) -> None:
        if embedder.model_id != self.model_id:
            raise GalleryError(
                f"gallery embeddings come from model {self.model_id}, not {embedder.model_id}; "
                "re-embed it first"
            )

    # ---- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def people(self) -> list[str]:
        return sorted({s.person for s in self.samples})

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
            accepted = sim >= threshold if metric == "cosine" else dist <= threshold
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
        """Write gallery.json + embeddings.npy + crops.npy into `folder` (replaced whole)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = GalleryMeta(
            model_id=self.model_id,
            embedding_size=int(self.embeddings.shape[1]),
            crop_size=int(self.crops.shape[1]),
            samples=self.samples,
        )
        # Write under temporary names first so a crash never leaves a half-new gallery.
        for name, arr in (("embeddings.npy", self.embeddings), ("crops.npy", self.crops)):
            with open(folder / f"{name}.part", "wb") as fh:
                np.save(fh, arr)
        (folder / "gallery.json.part").write_text(meta.model_dump_json(indent=1))
        for name in ("embeddings.npy", "crops.npy", "gallery.json"):
            (folder / f"{name}.part").replace(folder / name)

    @classmethod
    def load(cls, folder: Path, embedder: FaceEmbedder | None = None) -> Gallery:
        """Read a saved gallery; under another extractor it is re-embedded from its crops."""
        folder = Path(folder)
        meta_path = folder / "gallery.json"
        if not meta_path.is_file():
            raise GalleryError(f"{folder} is not a saved gallery (no gallery.json)")
        try:
            meta = GalleryMeta.model_validate(json.loads(meta_path.read_text()))
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            crops = np.load(folder / "crops.npy", allow_pickle=False)
        except (OSError, ValueError, ValidationError) as exc:
            raise GalleryError(f"{folder}: saved gallery is damaged ({exc})") from None
        gallery = cls(meta.model_id, embeddings, crops, meta.samples)
        if embedder is not None and embedder.model_id != meta.model_id:
            gallery.reembed(embedder)
        return gallery

    @staticmethod
    def is_saved_gallery(folder: Path) -> bool:
        return (Path(folder) / "gallery.json").is_file()
