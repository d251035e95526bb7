"""The face pipeline over frames: detect → align → embed → match.

Built once (models loaded once) and reused for every image or frame batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefleet.core.alignment import align_faces, refine_landmarks
from facefleet.core.detectors import Detector, detector_from_settings
from facefleet.core.device import limit_threads, resolve_device
from facefleet.core.errors import InputError
from facefleet.core.extractors import Extractor, ExtractorConfig, create_extractor
from facefleet.core.gallery import EnrollIssue, Gallery
from facefleet.core.images import read_image
from facefleet.core.names import Metric
from facefleet.core.prefetch import Prefetcher
from facefleet.core.schemas import (
    FaceDetection,
    FaceResult,
    ImageResult,
    Match,
    ModelInfo,
    TrackingGates,
)
from facefleet.core.settings import Settings


@dataclass
class FacePipeline:
    detector: Detector
    extractor: Extractor | None = None
    gallery: Gallery | None = None
    metric: Metric = "cosine"
    threshold: float | None = None
    align_refine: bool = True
    embedding_budget: bool = True  # videos: see core.embedding_budget

    @property
    def effective_threshold(self) -> float | None:
        if self.threshold is not None:
            return self.threshold
        if self.extractor is None:
            return None
        size = len(self.gallery) if self.gallery is not None else None
        return self.extractor.thresholds.for_matching(self.metric, size)

    @property
    def tracking(self) -> TrackingGates:
        """The extractor's own scale for linking faces from frame to frame."""
        return self.extractor.card.tracking if self.extractor is not None else TrackingGates()

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            detector=self.detector.name,
            extractor=self.extractor.model_id if self.extractor else None,
            metric=self.metric,  # type: ignore[arg-type]
            threshold=self.effective_threshold,
            gallery_size=len(self.gallery.people) if self.gallery else 0,
        )

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces of each frame. Frames of one size go through the detector together; a
        batch of mixed sizes is split by size rather than padded to the largest."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            by_shape.setdefault(frame.shape, []).append(i)
        detections: list[list[FaceDetection]] = [[] for _ in frames]
        for indices in by_shape.values():
            found = self.detector.detect([frames[i] for i in indices])
            for i, faces in zip(indices, found, strict=True):
                detections[i] = faces
        if self.align_refine:
            detections = refine_landmarks(frames, detections, self.detector)
        return detections

    def embed_faces(
        self, frames: Sequence[np.ndarray], detections: Sequence[Sequence[FaceDetection]]
    ) -> list[np.ndarray]:
        """Per frame an (n_faces, dim) array; all faces of the batch go through one forward."""
        if self.extractor is None:
            return [np.zeros((len(d), 0), dtype=np.float32) for d in detections]
        crops = [
            align_faces(f, list(d), self.extractor.geometry)
            for f, d in zip(frames, detections, strict=True)
        ]
        counts = [len(c) for c in crops]
        flat = np.concatenate(crops) if sum(counts) else np.zeros((0,), dtype=np.uint8)
        vectors = self.extractor.embed(flat)
        return np.split(vectors, np.cumsum(counts)[:-1]) if counts else []

    def match(self, vectors: np.ndarray) -> list[Match | None]:
        if self.gallery is None or self.extractor is None or len(self.gallery) == 0:
            return [None] * len(vectors)
        return list(
            self.gallery.match(vectors, self.metric, self.effective_threshold)  # type: ignore[arg-type]
        )

    def recognize(self, frames: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """Faces with identities for a batch of BGR frames."""
        detections = self.detect(frames)
        vectors = self.embed_faces(frames, detections)
        results = []
        for dets, vecs in zip(detections, vectors, strict=True):
            matches = self.match(vecs)
            results.append(
                [FaceResult.from_detection(d, m) for d, m in zip(dets, matches, strict=True)]
            )
        return results

    def process_image(
        self, path: Path, source: str | None = None
    ) -> tuple[ImageResult, np.ndarray]:
        """Recognize faces in one image file; returns the result and the decoded image."""
        image = read_image(path)
        return self._image_result(image, self.recognize([image])[0], source or str(path)), image

    def process_images(
        self, paths: Sequence[Path], sources: Sequence[str] | None = None, batch_size: int = 8
    ) -> Iterator[ProcessedImage]:
        """Recognize faces in many image files, in order: files are decoded in a thread
        while the previous batch is in the models, and the faces of a whole batch go through
        the extractor in one forward. An unreadable file is reported, not raised."""
        names = list(sources) if sources is not None else [str(p) for p in paths]

        def load() -> Iterator[ProcessedImage]:
            for path, name in zip(paths, names, strict=True):
                try:
                    yield ProcessedImage(path, name, image=read_image(path))
                except InputError as exc:
                    yield ProcessedImage(path, name, error=exc)

        with Prefetcher(load, depth=2 * batch_size, name="facefleet-images") as reader:
            for batch in reader.batches(batch_size):
                readable = [item for item in batch if item.image is not None]
                faces = self.recognize([item.image for item in readable])  # type: ignore[misc]
                for item, found in zip(readable, faces, strict=True):
                    item.result = self._image_result(item.image, found, item.source)  # type: ignore[arg-type]
                yield from batch

    def _image_result(self, image: np.ndarray, faces: list[FaceResult], source: str) -> ImageResult:
        return ImageResult(
            source=source,
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            model=self.model_info(),
            faces=faces,
        )


@dataclass
class ProcessedImage:
    """One input of `FacePipeline.process_images`: its result, or why it could not be read."""

    path: Path
    source: str
    image: np.ndarray | None = None
    result: ImageResult | None = None
    error: InputError | None = None


# ---- the one factory: pipelines and their models from settings ----------------------------


def prepare_process(settings: Settings) -> str:
    """The concrete device, with this process's thread count applied once."""
    if settings.threads:
        limit_threads(settings.threads)
    return resolve_device(settings.device)


def load_extractor(
    settings: Settings,
    name: str | None = None,
    weights: Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> Extractor | None:
    """The extractor `name` (default: the settings'), with `weights` or the settings' model
    file when it is the settings' extractor, else the backend's own; None for "none".
    Raises ModelError for an unknown name or unusable weights."""
    name = name or settings.extractor
    if name == "none":
        return None
    if weights is None and name == settings.extractor:
        weights = settings.model
    config = ExtractorConfig(
        weights=weights,
        device=device or resolve_device(settings.device),
        batch_size=batch_size or settings.batch_size,
        runtime=settings.extractor_runtime,
        threads=settings.threads,
        onnx_cache=settings.cache_dir / "onnx",
    )
    return create_extractor(name, config)


def assemble_pipeline(
    settings: Settings,
    detector: Detector,
    extractor: Extractor | None,
    gallery: Gallery | None = None,
    metric: Metric | None = None,
    threshold: float | None = None,
    embedding_budget: bool | None = None,
) -> FacePipeline:
    """A pipeline over models already loaded; `metric`/`threshold`/`embedding_budget`
    override the settings (a job's options)."""
    return FacePipeline(
        detector=detector,
        extractor=extractor,
        gallery=gallery,
        metric=metric or settings.metric,
        threshold=threshold if threshold is not None else settings.threshold,
        align_refine=settings.align_refine,
        embedding_budget=(
            settings.embedding_budget if embedding_budget is None else embedding_budget
        ),
    )


def open_gallery(
    settings: Settings, path: Path, detector: Detector, extractor: Extractor
) -> tuple[Gallery, list[EnrollIssue]]:
    """A saved gallery, or one enrolled from a `<dir>/<Person>/*.jpg` folder."""
    if Gallery.is_saved_gallery(path):
        return Gallery.load(path, extractor), []
    return Gallery.enroll_folder(path, detector, extractor, settings.align_refine)


def build_pipeline(
    settings: Settings,
    gallery_path: Path | None = None,
) -> tuple[FacePipeline, list[EnrollIssue]]:
    """Load the models named by `settings` once (in-process runs). With the extractor
    "none" faces are detected, not recognized. Raises FacefleetError subclasses."""
    device = prepare_process(settings)
    detector = detector_from_settings(settings, device)
    extractor = load_extractor(settings, device=device)
    gallery, issues = None, []
    if gallery_path is not None and extractor is not None:
        gallery, issues = open_gallery(settings, gallery_path, detector, extractor)
    return assemble_pipeline(settings, detector, extractor, gallery), issues
