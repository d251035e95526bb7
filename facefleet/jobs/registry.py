"""Models and galleries of one worker process, loaded once and reused by every task.

The extractor a job uses is pinned by id when the job is planned, so a model promoted in
the middle of a job never mixes two embedding spaces in one result. Galleries are cached
per (name, stored version, model id): a changed gallery or a new model reloads (and
re-embeds from the stored crops) on the next task that needs it.
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
    from facefleet.core.embedding import FaceEmbedder
    from facefleet.core.gallery import Gallery
    from facefleet.core.pipeline import FacePipeline

log = logging.getLogger("facefleet.registry")
KEEP_MODELS = 2  # the current extractor and the one before it, for jobs still running


class ModelRegistry:
    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        from facefleet.core.pipeline import prepare_process

        self.settings = settings
        self.store = store
        self.device = prepare_process(settings)
        self._lock = threading.RLock()
        self._detector: Detector | None = None
        self._embedders: dict[str, FaceEmbedder] = {}
        self._default_id: str | None = None
        self._galleries: dict[str, tuple[str, str, Gallery]] = {}
        self._latest: tuple[float, str | None] = (-1e9, None)

    # ---- models -------------------------------------------------------------------------

    def detector(self) -> Detector:
        with self._lock:
            if self._detector is None:
                from facefleet.core.detectors import detector_from_settings

                self._detector = detector_from_settings(self.settings, self.device)
            return self._detector

    def default_model_id(self) -> str | None:
        """The id of the extractor named by the settings (the shipped one by default)."""
        with self._lock:
            if self._default_id is None:
                path = self.settings.resolved_model_path()
                if path is None:
                    return None
                embedder = self._load(path)
                self._default_id = embedder.model_id
                self._remember(embedder)
            return self._default_id

    def current_model_id(self) -> str | None:
        """The promoted extractor (`models/latest.json`), else the default one. Looked up
        at most every `model_check_s` seconds."""
        checked, model_id = self._latest
        if time.monotonic() - checked >= self.settings.model_check_s:
            pointer = self.store.get_model_or_none(MODEL_POINTER_KEY, ModelPointer)
            model_id = pointer.model_id if pointer else None
            self._latest = (time.monotonic(), model_id)
            if model_id and model_id not in self._embedders:
                log.info("promoted extractor %s found in the store", model_id)
        return model_id or self.default_model_id()

    def embedder(self, model_id: str | None) -> FaceEmbedder | None:
        if model_id is None:
            return None
        with self._lock:
            if model_id in self._embedders:
                return self._embedders[model_id]
            if model_id == self.default_model_id():
                return self._embedders[model_id]
            local = self.settings.cache_dir / "models" / f"{model_id}.pt"
            if not local.is_file():
                tmp = local.with_name(local.name + ".part")
                self.store.get_file(model_key(model_id), tmp)
                tmp.replace(local)
            embedder = self._load(local)
            if embedder.model_id != model_id:
                raise ModelError(f"{model_key(model_id)} holds model {embedder.model_id}")
            self._remember(embedder)
            log.info("extractor %s loaded on %s", model_id, self.device)
            return embedder

    def _load(self, path: Path) -> FaceEmbedder:
        from facefleet.core.pipeline import load_extractor

        return load_extractor(self.settings, path, self.device)

    def _remember(self, embedder: FaceEmbedder) -> None:
        self._embedders[embedder.model_id] = embedder
        while len(self._embedders) > KEEP_MODELS:
            oldest = next(k for k in self._embedders if k != self._default_id)
            del self._embedders[oldest]
            self._galleries = {k: v for k, v in self._galleries.items() if v[1] != oldest}

    # ---- galleries ----------------------------------------------------------------------

    def gallery(self, name: str | None, embedder: FaceEmbedder | None) -> Gallery | None:
        from facefleet.jobs.galleries import gallery_pointer
        from facefleet.jobs.gallery_store import load_gallery

        if name is None or embedder is None:
            return None
        pointer = gallery_pointer(self.store, name)
        if pointer is None:
            from facefleet.core.errors import GalleryError

            raise GalleryError(f"no gallery named {name!r} (enroll people into it first)")
        with self._lock:
            cached = self._galleries.get(name)
            if cached and cached[0] == pointer.version and cached[1] == embedder.model_id:
                return cached[2]
            gallery = load_gallery(self.store, name, embedder, pointer)
            if gallery is not None:
                self._galleries[name] = (pointer.version, embedder.model_id, gallery)
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
        embedder = self.embedder(model_id)
        return assemble_pipeline(
            self.settings,
            self.detector(),
            embedder,
            self.gallery(gallery, embedder),
            options.metric,
            options.threshold,
        )

    def warm_up(self) -> float:
        """Load the detector and the current extractor and run each once, so the first real
        task does not pay for lazy initialisation. Returns the seconds it took."""
        started = time.perf_counter()
        pipeline = self.pipeline(self.current_model_id())
        frame = np.zeros((360, 640, 3), dtype=np.uint8)
        pipeline.detect([frame])
        if pipeline.embedder is not None:
            pipeline.embedder.embed(np.zeros((1, 112, 112, 3), dtype=np.uint8))
        return time.perf_counter() - started
