"""Face alignment: a similarity transform from five landmarks onto an extractor's template.

Each extractor declares its crop geometry (`CropGeometry`: crop size and where the five
landmarks belong in it): the ArcFace template at 112 px for the B0 and ArcFace-convention
ONNX models, a template fitted to dlib's chip for dlib's network, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from facefleet.core.detectors.base import Detector
from facefleet.core.schemas import FaceDetection, Point

# The standard five-point template of ArcFace models, for a 112×112 crop: left eye, right eye,
# nose, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template(size: int = 112) -> np.ndarray:
    """The ArcFace five-point template scaled to a `size`×`size` crop."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


class CropGeometry(BaseModel):
    """The square input crop of an extractor: its side and where the five landmarks (left
    eye, right eye, nose, left and right mouth corner) belong in it."""

    model_config = ConfigDict(frozen=True)

    name: str
    size: int
    template: tuple[Point, Point, Point, Point, Point]

    def points(self) -> np.ndarray:
        return np.asarray(self.template, dtype=np.float64)

    def scaled(self, size: int) -> CropGeometry:
        """The same geometry at another crop size."""
        factor = size / self.size
        points = tuple((x * factor, y * factor) for x, y in self.template)
        return CropGeometry(name=self.name, size=size, template=points)  # type: ignore[arg-type]


ARCFACE_112 = CropGeometry(
    name="arcface",
    size=112,
    template=tuple(map(tuple, ARCFACE_TEMPLATE_112.tolist())),  # type: ignore[arg-type]
)


def as_geometry(geometry: CropGeometry | int) -> CropGeometry:
    """A crop size alone means the ArcFace template at that size."""
    return geometry if isinstance(geometry, CropGeometry) else ARCFACE_112.scaled(geometry)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src onto dst (Umeyama).

    Returns the 2×3 matrix for cv2.warpAffine. Closed form, so it is deterministic (unlike
    cv2.estimateAffinePartial2D, whose robust estimators sample at random).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # a reflection is never a valid face pose
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray | FaceDetection,
    geometry: CropGeometry | int = ARCFACE_112,
) -> np.ndarray:
    """Cut, rotate and resize one face into `geometry`'s crop so its landmarks sit on the
    template.

    Parts of the crop that fall outside the image are padded with black, so faces at the
    border are kept, not cropped out. A face more than twice the crop's size is first
    shrunk by halving (a Gaussian pyramid, as dlib does), so each crop pixel averages the
    pixels it covers instead of sampling a few of them.
    """
    geometry = as_geometry(geometry)
    points = landmarks.landmarks_array() if isinstance(landmarks, FaceDetection) else landmarks
    points = np.asarray(points, dtype=np.float64).reshape(5, 2)
    matrix = similarity_transform(points, geometry.points())
    source, matrix = _shrunk(image, matrix, geometry.size)
    return cv2.warpAffine(
        source,
        matrix,
        (geometry.size, geometry.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _shrunk(image: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of `image` the crop covers, halved until the crop is at most 2× smaller,
    with the matrix that maps it onto the crop."""
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.5:
        return image, matrix
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    covered = _apply(cv2.invertAffineTransform(matrix), corners)
    x0, y0 = np.floor(covered.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(covered.max(axis=0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, matrix  # the face lies outside the image
    patch = image[y0:y1, x0:x1]
    matrix = matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    while scale < 0.5 and min(patch.shape[:2]) >= 4:
        patch = cv2.pyrDown(patch)
        matrix[:, :2] *= 2.0
        scale *= 2.0
    return patch, matrix


def align_faces(
    image: np.ndarray, faces: list[FaceDetection], geometry: CropGeometry | int = ARCFACE_112
) -> np.ndarray:
    """All faces of one image as an (N, size, size, 3) uint8 array."""
    geometry = as_geometry(geometry)
    if not faces:
        return np.zeros((0, geometry.size, geometry.size, 3), dtype=np.uint8)
    return np.stack([align_face(image, face, geometry) for face in faces])


# Landmark order after a horizontal flip: the eyes and the mouth corners swap sides.
_FLIP_ORDER = [1, 0, 2, 4, 3]
# The face is redrawn at 96 px on a 128 px canvas. On 30 LFW photos turned by -30..35°
# (180 cases) this leaves the eyes 0.51° off level on average against 0.41° with a 160 px
# face on 256 px, for a quarter of the detector's work: the second pass had been the
# largest cost of video analysis.
_REFINE_FACE = 96
_REFINE_CANVAS = 128


def refine_landmarks(
    frames: Sequence[np.ndarray],
    detections: Sequence[Sequence[FaceDetection]],
    detector: Detector,
) -> list[list[FaceDetection]]:
    """Second landmark pass on de-rotated faces, averaged with its mirror image.

    Detector landmarks are biased on tilted faces (they are trained on mostly upright ones):
    on real photos rotated by up to 35°, aligning from first-pass landmarks left the face up
    to 8.6° off the upright alignment, this pass brings it to about 1°. Each face is warped
    upright onto a canvas, detected again together with its mirror image (which cancels the
    left/right bias), and the averaged points are mapped back to the frame. All canvases of
    the batch go through the detector in one call.
    """
    canvases: list[np.ndarray] = []
    owners: list[tuple[int, int, np.ndarray]] = []
    dst = template(_REFINE_FACE) + (_REFINE_CANVAS - _REFINE_FACE) / 2
    for i, (frame, faces) in enumerate(zip(frames, detections, strict=True)):
        for j, face in enumerate(faces):
            matrix = similarity_transform(face.landmarks_array(), dst)
            upright = cv2.warpAffine(
                frame, matrix, (_REFINE_CANVAS, _REFINE_CANVAS), flags=cv2.INTER_LINEAR
            )
            canvases += [upright, np.ascontiguousarray(upright[:, ::-1])]
            owners.append((i, j, matrix))
    out = [list(faces) for faces in detections]
    if not canvases:
        return out
    found = detector.detect(canvases)
    mirror_x = np.array([-1.0, 1.0]), np.array([_REFINE_CANVAS, 0.0])
    for k, (i, j, matrix) in enumerate(owners):
        direct, mirrored = found[2 * k], found[2 * k + 1]
        if not direct or not mirrored:
            continue  # keep the first-pass landmarks rather than guess
        a = _closest(direct, dst)
        b = _closest(mirrored, dst[_FLIP_ORDER] * mirror_x[0] + mirror_x[1])
        b = b[_FLIP_ORDER] * mirror_x[0] + mirror_x[1]
        points = _apply(cv2.invertAffineTransform(matrix), (a + b) / 2)
        out[i][j] = out[i][j].model_copy(
            update={"landmarks": tuple((float(x), float(y)) for x, y in points)}
        )
    return out


def _closest(faces: Sequence[FaceDetection], expected: np.ndarray) -> np.ndarray:
    points = [f.landmarks_array().astype(np.float64) for f in faces]
    return min(points, key=lambda p: float(np.abs(p - expected).sum()))


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]
