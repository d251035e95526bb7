"""LFW faces detected and aligned once, kept as one array file so epochs never re-detect.

The file is named by a fingerprint of everything that shapes its crops (the detector, its
weights and settings, the landmark refine pass, the alignment code, the crop size): a change
to any of them builds a new cache instead of serving crops made by other code. A cache
keyed only by a version number once kept serving crops from before the refine pass changed,
and a model was calibrated on them that a fresh machine could not reproduce.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefleet.core.alignment import align_face, refine_landmarks, template
from facefleet.core.detectors.base import Detector
from facefleet.core.errors import InputError
from facefleet.core.images import read_image
from facefleet.core.schemas import FaceDetection

CACHE_VERSION = 1


@dataclass
class FaceCache:
    """Aligned BGR crops keyed by LFW relative path; `fallback` marks images with no face."""

    relpaths: list[str]
    crops: np.ndarray
    fallback: np.ndarray

    def __post_init__(self) -> None:
        self._index = {p: i for i, p in enumerate(self.relpaths)}

    def __len__(self) -> int:
        return len(self.relpaths)

    def __contains__(self, relpath: object) -> bool:
        return relpath in self._index

    def take(self, relpaths: Sequence[str]) -> np.ndarray:
        """Crops for the given paths, in that order."""
        return self.crops[[self._index[p] for p in relpaths]]

    def fallback_count(self, relpaths: Sequence[str]) -> int:
        """How many of these images had no detected face (centre crop used)."""
        return int(self.fallback[[self._index[p] for p in relpaths]].sum())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                version=np.int64(CACHE_VERSION),
                relpaths=np.array(self.relpaths),
                crops=self.crops,
                fallback=self.fallback,
            )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FaceCache:
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["version"]) != CACHE_VERSION:
                    raise InputError(f"{path}: face cache of another version; delete it")
                return cls([str(p) for p in data["relpaths"]], data["crops"], data["fallback"])
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: damaged face cache ({exc}); delete it") from None

    @classmethod
    def merge(cls, a: FaceCache, b: FaceCache) -> FaceCache:
        return cls(
            a.relpaths + b.relpaths,
            np.concatenate([a.crops, b.crops]),
            np.concatenate([a.fallback, b.fallback]),
        )


def central_face(faces: Sequence[FaceDetection], shape: tuple[int, ...]) -> FaceDetection | None:
    """LFW photos are centred on their subject: take the face nearest the centre."""
    if not faces:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2

    def off_centre(f: FaceDetection) -> float:
        x0, y0, x1, y1 = f.box
        return ((x0 + x1) / 2 - cx) ** 2 + ((y0 + y1) / 2 - cy) ** 2

    return min(faces, key=off_centre)


def centre_landmarks(shape: tuple[int, ...], face_fraction: float = 0.45) -> np.ndarray:
    """Where the five landmarks sit when a face fills the centre of the image."""
    side = min(shape[0], shape[1]) * face_fraction
    offset = np.array([(shape[1] - side) / 2, (shape[0] - side) / 2])
    return template(112) * (side / 112.0) + offset


def build_face_cache(
    root: Path,
    relpaths: Sequence[str],
    detector: Detector,
    size: int = 112,
    refine: bool = True,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> FaceCache:
    """Detect, refine and align every image; images with no face fall back to the centre."""
    crops = np.zeros((len(relpaths), size, size, 3), dtype=np.uint8)
    fallback = np.zeros(len(relpaths), dtype=bool)
    for start in range(0, len(relpaths), batch_size):
        chunk = relpaths[start : start + batch_size]
        images = [read_image(root / p) for p in chunk]
        found = detector.detect(images)
        chosen = [central_face(f, im.shape) for f, im in zip(found, images, strict=True)]
        if refine:
            picked = [[c] if c else [] for c in chosen]
            chosen = [r[0] if r else None for r in refine_landmarks(images, picked, detector)]
        for k, (image, face) in enumerate(zip(images, chosen, strict=True)):
            if face is None:
                fallback[start + k] = True
                crops[start + k] = align_face(image, centre_landmarks(image.shape), size)
            else:
                crops[start + k] = align_face(image, face, size)
        if on_batch:
            on_batch(len(chunk))
    return FaceCache(list(relpaths), crops, fallback)


def load_or_build(
    cache_path: Path,
    root: Path,
    relpaths: Sequence[str],
    detector_factory: Callable[[], Detector],
    size: int = 112,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FaceCache:
    """The cache at `cache_path`, extended with whatever `relpaths` it still lacks."""
    cache = FaceCache.load(cache_path) if cache_path.is_file() else None
    missing = [p for p in dict.fromkeys(relpaths) if cache is None or p not in cache]
    if missing:
        if on_start:
            on_start(len(missing))
        new = build_face_cache(root, missing, detector_factory(), size, on_batch=on_batch)
        cache = new if cache is None else FaceCache.merge(cache, new)
        cache.save(cache_path)
    assert cache is not None
    return cache


def _code_digest(code: object) -> bytes:
    """The code of a module or function as its syntax tree without docstrings: a changed
    comment or docstring does not force a rebuild, a changed statement or constant does."""
    tree = ast.parse(inspect.getsource(code))  # type: ignore[arg-type]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree).encode()


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def crop_fingerprint(size: int, refine: bool = True) -> str:
    """A short hash of what decides the crops: this module's build code, the alignment and
    detector code, the detector's default settings and its weights file, size, refine."""
    from retinaface.weights import WEIGHTS

    from facefleet.core import alignment
    from facefleet.core.detectors import DetectorConfig, base, retinaface

    digest = hashlib.sha256()
    for code in (alignment, base, retinaface, build_face_cache, central_face, centre_landmarks):
        digest.update(_code_digest(code))
    digest.update(WEIGHTS)  # the ONNX model itself, as bytes
    digest.update(f"{CACHE_VERSION}|{size}|{refine}|{DetectorConfig()!r}".encode())
    return digest.hexdigest()[:12]


def aligned_lfw_cache(
    lfw: Path,
    relpaths: Sequence[str],
    cache_dir: Path,
    size: int = 112,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> FaceCache:
    """The shared aligned-LFW cache (`<cache_dir>/lfw-aligned-<size>-<fingerprint>.npz`)
    holding `relpaths`, aligning whatever it lacks with a progress bar. Caches made by other
    code are left alone (delete them at will)."""
    from tqdm import tqdm

    from facefleet.core.detectors import DetectorConfig, create_detector

    cache_path = cache_dir / f"lfw-aligned-{size}-{crop_fingerprint(size)}.npz"
    bar: tqdm | None = None

    def start(n: int) -> None:
        nonlocal bar
        log(f"detecting and aligning {n} LFW images once (cache: {cache_path})")
        bar = tqdm(total=n, desc="align", unit="img", disable=not progress, leave=False)

    try:
        return load_or_build(
            cache_path,
            Path(lfw),
            relpaths,
            lambda: create_detector("retinaface", DetectorConfig(device=device)),
            size,
            on_batch=lambda n: bar.update(n) if bar is not None else None,
            on_start=start,
        )
    finally:
        if bar is not None:
            bar.close()
