"""LFW faces detected once: the five landmarks of each image, kept as one array file so
evaluations and epochs never re-detect. Crops are cut from them in whatever geometry an
extractor asks for (the B0's 112 px ArcFace crop, dlib's 150 px chip, ...).

The file is named by a fingerprint of everything that decides the landmarks (the detector,
its weights and settings, the refine pass, this module's code): a change to any of them
builds a new cache instead of serving points found by other code. A cache keyed only by a
version number once served crops from before the refine pass changed, and a model was
calibrated on them that a fresh machine could not reproduce.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facefleet.core.alignment import CropGeometry, align_face, refine_landmarks, template
from facefleet.core.detectors.base import Detector
from facefleet.core.errors import InputError
from facefleet.core.images import read_image
from facefleet.core.schemas import FaceDetection

CACHE_VERSION = 2


class FaceCache:
    """Landmarks keyed by LFW relative path (`fallback` marks images with no detected face,
    whose points are where a centred face would have them), and the crops cut from them."""

    def __init__(
        self, root: Path, relpaths: list[str], landmarks: np.ndarray, fallback: np.ndarray
    ) -> None:
        self.root = Path(root)
        self.relpaths = list(relpaths)
        self.landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
        self.fallback = np.asarray(fallback, dtype=bool)
        self._index = {p: i for i, p in enumerate(self.relpaths)}
        self._crops: dict[CropGeometry, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.relpaths)

    def __contains__(self, relpath: object) -> bool:
        return relpath in self._index

    def crops(self, relpaths: Sequence[str], geometry: CropGeometry) -> np.ndarray:
        """Aligned BGR crops of the given images in `geometry`, in that order (each image is
        read and cut once per geometry, then kept)."""
        done = self._crops.setdefault(geometry, {})
        for relpath in dict.fromkeys(relpaths):
            if relpath not in done:
                points = self.landmarks[self._index[relpath]].astype(np.float64)
                done[relpath] = align_face(read_image(self.root / relpath), points, geometry)
        if not relpaths:
            return np.zeros((0, geometry.size, geometry.size, 3), dtype=np.uint8)
        return np.stack([done[p] for p in relpaths])

    def points(self, relpaths: Sequence[str]) -> np.ndarray:
        """(N, 5, 2) landmarks of these images, in that order."""
        rows = [self._index[p] for p in relpaths]
        return self.landmarks[rows].reshape(len(rows), 5, 2)

    def fallback_count(self, relpaths: Sequence[str]) -> int:
        """How many of these images had no detected face (centre landmarks used)."""
        return int(self.fallback[[self._index[p] for p in relpaths]].sum())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                version=np.int64(CACHE_VERSION),
                relpaths=np.array(self.relpaths),
                landmarks=self.landmarks,
                fallback=self.fallback,
            )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, root: Path) -> FaceCache:
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["version"]) != CACHE_VERSION:
                    raise InputError(f"{path}: face cache of another version; delete it")
                relpaths = [str(p) for p in data["relpaths"]]
                return cls(root, relpaths, data["landmarks"], data["fallback"])
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: damaged face cache ({exc}); delete it") from None

    def merged(self, other: FaceCache) -> FaceCache:
        return FaceCache(
            self.root,
            self.relpaths + other.relpaths,
            np.concatenate([self.landmarks, other.landmarks]),
            np.concatenate([self.fallback, other.fallback]),
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
    refine: bool = True,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> FaceCache:
    """Detect (and refine) the face of every image; images with no face fall back to the
    centre."""
    landmarks = np.zeros((len(relpaths), 5, 2), dtype=np.float32)
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
                landmarks[start + k] = centre_landmarks(image.shape)
            else:
                landmarks[start + k] = face.landmarks_array()
        if on_batch:
            on_batch(len(chunk))
    return FaceCache(root, list(relpaths), landmarks, fallback)


def load_or_build(
    cache_path: Path,
    root: Path,
    relpaths: Sequence[str],
    detector_factory: Callable[[], Detector],
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FaceCache:
    """The cache at `cache_path`, extended with whatever `relpaths` it still lacks."""
    cache = FaceCache.load(cache_path, root) if cache_path.is_file() else None
    missing = [p for p in dict.fromkeys(relpaths) if cache is None or p not in cache]
    if missing:
        if on_start:
            on_start(len(missing))
        new = build_face_cache(root, missing, detector_factory(), on_batch=on_batch)
        cache = new if cache is None else cache.merged(new)
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


def landmark_fingerprint(refine: bool = True) -> str:
    """A short hash of what decides the landmarks: the build code, the refine pass, the
    detector code, the detector's default settings and its weights file."""
    from retinaface.weights import WEIGHTS

    from facefleet.core import alignment
    from facefleet.core.detectors import DetectorConfig, base, retinaface

    digest = hashlib.sha256()
    for code in (
        alignment.refine_landmarks,
        alignment.similarity_transform,
        base,
        retinaface,
        build_face_cache,
        central_face,
        centre_landmarks,
    ):
        digest.update(_code_digest(code))
    digest.update(WEIGHTS)  # the ONNX model itself, as bytes
    digest.update(f"{CACHE_VERSION}|{refine}|{DetectorConfig()!r}".encode())
    return digest.hexdigest()[:12]


def lfw_face_cache(
    lfw: Path,
    relpaths: Sequence[str],
    cache_dir: Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> FaceCache:
    """The shared LFW landmark cache (`<cache_dir>/lfw-landmarks-<fingerprint>.npz`) holding
    `relpaths`, detecting whatever it lacks with a progress bar. Caches made by other code
    are left alone (delete them at will)."""
    cache_path = cache_dir / f"lfw-landmarks-{landmark_fingerprint()}.npz"
    return _cached_faces(cache_path, Path(lfw), relpaths, "LFW images", device, log, progress)


def folder_face_cache(
    root: Path,
    relpaths: Sequence[str],
    cache_dir: Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[FaceCache, dict[str, str]]:
    """Landmarks of a folder of one's own photos, found exactly as LFW's are (the same
    detector, central face and refine pass, in a cache of the same fingerprint, named by
    the folder): the cache and the images that could not be read (relpath -> why), which it
    leaves out. Unlike LFW's, such a cache is keyed by file name only: a photo replaced
    under the same name keeps its old points until the cache file is deleted."""
    root = Path(root)
    folder_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    cache_path = cache_dir / f"data-{folder_id}-landmarks-{landmark_fingerprint()}.npz"
    known = FaceCache.load(cache_path, root) if cache_path.is_file() else None
    unreadable: dict[str, str] = {}
    readable = []
    for relpath in dict.fromkeys(relpaths):
        if known is None or relpath not in known:
            try:
                read_image(root / relpath)
            except InputError as exc:
                unreadable[relpath] = exc.reason
                continue
        readable.append(relpath)
    if not readable:
        return FaceCache(root, [], np.zeros((0, 5, 2)), np.zeros(0, bool)), unreadable
    cache = _cached_faces(cache_path, root, readable, f"images of {root}", device, log, progress)
    return cache, unreadable


def _cached_faces(
    cache_path: Path,
    root: Path,
    relpaths: Sequence[str],
    what: str,
    device: str,
    log: Callable[[str], None],
    progress: bool,
) -> FaceCache:
    from tqdm import tqdm

    from facefleet.core.detectors import DetectorConfig, create_detector

    bar: tqdm | None = None

    def start(n: int) -> None:
        nonlocal bar
        log(f"detecting the faces of {n} {what} once (cache: {cache_path})")
        bar = tqdm(total=n, desc="detect", unit="img", disable=not progress, leave=False)

    try:
        return load_or_build(
            cache_path,
            root,
            relpaths,
            lambda: create_detector("retinaface", DetectorConfig(device=device)),
            on_batch=lambda n: bar.update(n) if bar is not None else None,
            on_start=start,
        )
    finally:
        if bar is not None:
            bar.close()
