"""Models and galleries of one worker process, loaded once and reused by every task.

The extractor a job uses is pinned by id when the job is planned (the job may name a
backend), so a model promoted in the middle of a job never mixes two embedding spaces in one
result. Galleries are cached per (name, stored version, model id): a changed gallery or
another extractor reloads (and re-embeds from the stored face regions) on the next task
that needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facefleet.core.errors import ModelError
from facefleet.core.settings import Settings
from facefleet.jobs.records import MODEL_POINTER_KEY, JobOptions, ModelPointer, model_key
from facefleet.jobs.storage import ObjectStore

if TYPE_CHECKING:
    from facefleet.core.detectors import Detector
    from facefleet.core.extractors.base import Extractor
    from facefleet.core.gallery import Gallery
    from facefleet.core.pipeline import FacePipeline

log = logging.getLogger("facefleet.registry")
KEEP_MODELS = 2  # promoted B0s beside the backends' own: the current one and the one before
# Model ids name their backend: "b0-<hash>", "dlib-resnet-<hash>", "onnx-<hash>".
_ID_PREFIXES = {"b0-": "facefleet-b0", "dlib-resnet-": "dlib-resnet", "onnx-": "onnx"}


def backend_of(model_id: str) -> str | None:
    return next((b for prefix, b in _ID_PREFIXES.items() if model_id.startswith(prefix)), None)


class ModelRegistry:
    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        from facefleet.core.pipeline import prepare_process

        self.settings = settings
        self.store = store
        self.device = prepare_process(settings)
        self._lock = threading.RLock()
        self._detector: Detector | None = None
        self._extractors: dict[str, Extractor] = {}
        self._defaults: dict[str, str] = {}  # backend name -> id of its local weights
        self._galleries: dict[str, tuple[str, str, Gallery]] = {}
        self._latest: tuple[float, ModelPointer | None] = (-1e9, None)

    # ---- models -------------------------------------------------------------------------

    def detector(self) -> Detector:
        with self._lock:
            if self._detector is None:
                from facefleet.core.detectors import detector_from_settings

                self._detector = detector_from_settings(self.settings, self.device)
            return self._detector

    def default_model_id(self, name: str | None = None) -> str | None:
        """The id of extractor backend `name` (default: the settings') with the weights
        this worker has; None for "none"."""
        name = name or self.settings.extractor
        if name == "none":
            return None
        with self._lock:
            if name not in self._defaults:
                extractor = self._load(name)
                self._defaults[name] = extractor.model_id
                self._remember(extractor)
            return self._defaults[name]

    def promoted(self) -> ModelPointer | None:
        """`models/latest.json`, the B0 that training promoted; looked up at most every
        `model_check_s` seconds."""
        checked, pointer = self._latest
        if time.monotonic() - checked >= self.settings.model_check_s:
            pointer = self.store.get_model_or_none(MODEL_POINTER_KEY, ModelPointer)
            self._latest = (time.monotonic(), pointer)
            if pointer and pointer.model_id not in self._extractors:
                log.info("promoted extractor %s found in the store", pointer.model_id)
        return pointer

    def current_model_id(self, name: str | None = None) -> str | None:
        """The extractor a new job pins. Named "facefleet-b0": the promoted B0, else the
        shipped one. Named otherwise: that backend. Unnamed: the settings' extractor, or
        the promoted B0 when it beats that one on the identification protocol."""
        pointer = self.promoted()
        if name == "facefleet-b0":
            return pointer.model_id if pointer else self.default_model_id(name)
        default = self.default_model_id(name)
        if name is not None or pointer is None or default is None:
            return default
        ours = self.extractor(default)
        figure = ours.card.identification_dir() if ours is not None else None
        if pointer.identification_dir is not None and (
            figure is None or pointer.identification_dir > figure
        ):
            return pointer.model_id
        return default

    def extractor(self, model_id: str | None) -> Extractor | None:
        """The extractor with this id: loaded already, one of this worker's backends, or a
        B0 checkpoint promoted to the store."""
        if model_id is None:
            return None
        with self._lock:
            if model_id in self._extractors:
                return self._extractors[model_id]
            backend = backend_of(model_id)
            if backend is not None and self.default_model_id(backend) == model_id:
                return self._extractors[model_id]
            if backend != "facefleet-b0":
                raise ModelError(
                    f"extractor {model_id} is not available on this worker (its weights "
                    "differ, or its backend is not configured here)"
                )
            local = self.settings.cache_dir / "models" / f"{model_id}.pt"
            if not local.is_file():
                local.parent.mkdir(parents=True, exist_ok=True)
                tmp = local.with_name(local.name + ".part")
                self.store.get_file(model_key(model_id), tmp)
                tmp.replace(local)
            extractor = self._load("facefleet-b0", local)
            if extractor.model_id != model_id:
                raise ModelError(f"{model_key(model_id)} holds model {extractor.model_id}")
            self._remember(extractor)
            log.info("extractor %s loaded on %s", model_id, self.device)
            return extractor

    def _load(self, name: str, weights: Path | None = None) -> Extractor:
        from facefleet.core.pipeline import load_extractor

        extractor = load_extractor(self.settings, name, weights, self.device)
        if extractor is None:
            raise ModelError(f"extractor {name!r} loads no model")
        return extractor

    def _remember(self, extractor: Extractor) -> None:
        self._extractors[extractor.model_id] = extractor
        keep = set(self._defaults.values())
        while len(self._extractors) > KEEP_MODELS + len(keep):
            oldest = next(k for k in self._extractors if k not in keep)
            del self._extractors[oldest]
            self._galleries = {k: v for k, v in self._galleries.items() if v[1] != oldest}

    # ---- galleries ----------------------------------------------------------------------

    def gallery(self, name: str | None, extractor: Extractor | None) -> Gallery | None:
        from facefleet.jobs.galleries import gallery_pointer
        from facefleet.jobs.gallery_store import load_gallery

        if name is None or extractor is None:
            return None
        pointer = gallery_pointer(self.store, name)
        if pointer is None:
            from facefleet.core.errors import GalleryError

            raise GalleryError(f"no gallery named {name!r} (enroll people into it first)")
        with self._lock:
            cached = self._galleries.get(name)
            if cached and cached[0] == pointer.version and cached[1] == extractor.model_id:
                return cached[2]
            gallery = load_gallery(self.store, name, extractor, pointer)
            if gallery is not None:
                self._galleries[name] = (pointer.version, extractor.model_id, gallery)
                log.info(
                    "gallery %s version %s: %d people, %d faces",
                    name,
                    pointer.version,
                    len(gallery.people),
                    len(gallery),
                )
            return gallery

    # ---- pipelines ----------------------------------------------------------------------

    def pipeline(
        self, model_id: str | None, gallery: str | None = None, options: JobOptions | None = None
    ) -> FacePipeline:
        from facefleet.core.pipeline import assemble_pipeline

        options = options or JobOptions()
        extractor = self.extractor(model_id)
        return assemble_pipeline(
            self.settings,
            self.detector(),
            extractor,
            self.gallery(gallery, extractor),
            options.metric,
            options.threshold,
            options.embedding_budget,
        )

    def warm_up(self) -> float:
        """Load the detector and the current extractor and run each once, so the first real
        task does not pay for lazy initialisation. Returns the seconds it took."""
        started = time.perf_counter()
        pipeline = self.pipeline(self.current_model_id())
        frame = np.zeros((360, 640, 3), dtype=np.uint8)
        pipeline.detect([frame])
        if pipeline.extractor is not None:
            size = pipeline.extractor.geometry.size
            pipeline.extractor.embed(np.zeros((1, size, size, 3), dtype=np.uint8))
        return time.perf_counter() - started
