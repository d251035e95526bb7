"""Batched, per-sample augmentation on the training device (no per-image Python work)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from facefleet.core.alignment import ARCFACE_TEMPLATE_112, CropGeometry, similarity_transform

Norm = tuple[float, float, float]


def _normalize(x: torch.Tensor, mean: Norm, std: Norm) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def to_model_input(
    crops_bgr: torch.Tensor, mean: Norm = (0.5, 0.5, 0.5), std: Norm = (0.5, 0.5, 0.5)
) -> torch.Tensor:
    """uint8 (N, H, W, 3) BGR -> float (N, 3, H, W) RGB, normalized with the checkpoint's
    constants exactly as B0Extractor.preprocess does at inference."""
    x = crops_bgr.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)
    return _normalize(x, mean, std)


def augment_batch(
    crops_bgr: torch.Tensor,
    generator: torch.Generator,
    mean: Norm = (0.5, 0.5, 0.5),
    std: Norm = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """Flip, crop jitter (scale/shift/small rotation) and colour jitter, independently per face.

    Returns the normalized model input. The geometric jitter stays small because the crops
    are already aligned: large moves would teach the model poses it never sees at inference.
    """
    n = crops_bgr.shape[0]
    device = crops_bgr.device
    x = crops_bgr.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        r = torch.rand(*shape, generator=generator, device=device)
        return low + (high - low) * r

    flip = torch.rand(n, generator=generator, device=device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)

    angle = uniform(-10.0, 10.0, n) * (math.pi / 180.0)
    scale = uniform(0.9, 1.1, n)
    shift = uniform(-0.06, 0.06, n, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return _normalize(_colour(x, _colour_jitter(n, generator, device)), mean, std)


Jitter = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _colour_jitter(n: int, generator: torch.Generator, device: torch.device | str) -> Jitter:
    """Per face: brightness, contrast and saturation factors (saturation 0: grey)."""

    def uniform(low: float, high: float) -> torch.Tensor:
        r = torch.rand(n, generator=generator, device=device)
        return (low + (high - low) * r)[:, None, None, None]

    brightness = uniform(0.7, 1.3)
    contrast = uniform(0.7, 1.3)
    saturation = uniform(0.6, 1.4)
    to_gray = (torch.rand(n, generator=generator, device=device) < 0.1)[:, None, None, None]
    saturation = torch.where(to_gray, torch.zeros_like(saturation), saturation)
    return brightness, contrast, saturation


def _colour(x: torch.Tensor, jitter: Jitter) -> torch.Tensor:
    brightness, contrast, saturation = jitter
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = gray + (x - gray) * saturation
    centre = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - centre) * contrast + centre
    return (x * brightness).clamp_(0.0, 1.0)


# ---- consistent views (distillation: teacher and student see the same augmented face) ----

# The face cut once, large: the ArcFace 112 crop plus 24 template units on every side (room
# for the augmentation's moves and for dlib's chip, which reaches 6 units below the ArcFace
# crop), at 1.4 px a unit so that dlib's 150 px chip (95.8 units wide) is cut from about as
# many pixels as it has, and the 112 px student crop from 1.4 times as many.
_CANVAS_MARGIN, _CANVAS_SCALE = 24.0, 1.4
TRAIN_CANVAS = CropGeometry(
    name="train-canvas",
    size=round((112 + 2 * _CANVAS_MARGIN) * _CANVAS_SCALE),
    template=tuple(  # type: ignore[arg-type]
        ((x + _CANVAS_MARGIN) * _CANVAS_SCALE, (y + _CANVAS_MARGIN) * _CANVAS_SCALE)
        for x, y in ARCFACE_TEMPLATE_112.tolist()
    ),
)
# Half the side of the ArcFace crop in the canvas's normalized coordinates: the face region
# (rotation and zoom centre, cutmix boxes, shift units).
_FACE_HALF = 112 * _CANVAS_SCALE / TRAIN_CANVAS.size


def _to_normalized(size: int) -> np.ndarray:
    """Pixel coordinates (centres at integers) -> grid_sample's [-1, 1] (align_corners=False)."""
    return np.array([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]])


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def view_maps(
    landmarks: np.ndarray, views: Sequence[CropGeometry], canvas: CropGeometry = TRAIN_CANVAS
) -> np.ndarray:
    """(N, K, 3, 3) float32: per face and view, the map from the view's normalized
    coordinates to the canvas's. Exact per face: a view pixel x lies at image point
    M_view^-1 x, which the canvas holds at M_canvas M_view^-1 x (M: the similarity that
    align_face fits from the face's landmarks to a geometry's template), so a view cut from
    the canvas is the crop align_face would cut from the photo, up to resampling."""
    to_canvas = _to_normalized(canvas.size)
    out = np.zeros((len(landmarks), len(views), 3, 3), dtype=np.float32)
    for i, points in enumerate(np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)):
        m_canvas = _homogeneous(similarity_transform(points, canvas.points()))
        for k, view in enumerate(views):
            m_view = _homogeneous(similarity_transform(points, view.points()))
            from_view = np.linalg.inv(_to_normalized(view.size))
            out[i, k] = to_canvas @ m_canvas @ np.linalg.inv(m_view) @ from_view
    return out


@dataclass
class ViewBatch:
    """Views of one batch (RGB in [0, 1], (N, 3, S, S) each, one per requested size) and
    its mixing: face i shows `weight[i]` of itself and the rest of face `partner[i]`."""

    views: list[torch.Tensor]
    partner: torch.Tensor
    weight: torch.Tensor


def consistent_views(
    canvases_bgr: torch.Tensor,
    maps: torch.Tensor,
    sizes: Sequence[int],
    generator: torch.Generator,
    augment: bool = True,
    mix_prob: float = 0.0,
    mix_alpha: float = 1.0,
) -> ViewBatch:
    """Several crops of each face (e.g. the student's 112 px ArcFace crop and the teacher's
    150 px dlib chip) from ONE augmented, mixed image, so every view shows the same thing.

    On the canvas (uint8 (N, H, W, 3) BGR, TRAIN_CANVAS): mixing first, a face with a random
    other face of the batch (`mix_prob`; mixup or cutmix, half each, weight ~ Beta(a, a); a
    cutmix box lies in the face region and its weight is the share of that region it leaves
    to the face); then the geometric jitter of `augment_batch` (flip, rotation and zoom about
    the face centre, shift), the same per face for every view, folded into each view's map
    `maps[:, k]` so each view is sampled once; then the same colour jitter on every view.
    """
    n = canvases_bgr.shape[0]
    device = canvases_bgr.device
    x = canvases_bgr.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)
    own = torch.arange(n, device=device)
    partner, weight = own, torch.ones(n, device=device)
    if mix_prob > 0 and n > 1:
        x, partner, weight = _mix(x, generator, mix_prob, mix_alpha)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        r = torch.rand(*shape, generator=generator, device=device)
        return low + (high - low) * r

    affine = torch.eye(3, device=device).repeat(n, 1, 1)
    if augment:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        angle = uniform(-10.0, 10.0, n) * (math.pi / 180.0)
        scale = uniform(0.9, 1.1, n)
        shift = uniform(-0.06, 0.06, n, 2) * _FACE_HALF
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        sign = torch.where(flip, -1.0, 1.0)
        affine[:, 0, 0], affine[:, 0, 1], affine[:, 0, 2] = cos * sign, -sin, shift[:, 0]
        affine[:, 1, 0], affine[:, 1, 1], affine[:, 1, 2] = sin * sign, cos, shift[:, 1]
    views = []
    for k, size in enumerate(sizes):
        theta = (affine @ maps[:, k].to(device))[:, :2]
        grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
        views.append(
            F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    if augment:
        jitter = _colour_jitter(n, generator, device)
        views = [_colour(v, jitter) for v in views]
    return ViewBatch(views=views, partner=partner, weight=weight)


def _mix(
    x: torch.Tensor, generator: torch.Generator, mix_prob: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    device = x.device
    own = torch.arange(n, device=device)
    offset = torch.randint(1, n, (n,), generator=generator, device=device)
    other = (own + offset) % n  # never the face itself
    mixed = torch.rand(n, generator=generator, device=device) < mix_prob
    cut = torch.rand(n, generator=generator, device=device) < 0.5
    # Beta draws from numpy, seeded by the torch generator: the batch stays reproducible.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n)).float().to(device)
    # Cutmix: a box of (1 - lam) of the face region, centred anywhere in it, clipped to it.
    side = torch.sqrt(1.0 - lam) * 2 * _FACE_HALF
    centre = (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * _FACE_HALF
    low = (centre - side[:, None] / 2).clamp(-_FACE_HALF, _FACE_HALF)
    high = (centre + side[:, None] / 2).clamp(-_FACE_HALF, _FACE_HALF)
    kept = 1.0 - ((high - low).prod(dim=1) / (2 * _FACE_HALF) ** 2)
    xs = (torch.arange(w, device=device) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device) * 2 + 1) / h - 1
    inside = (
        (xs[None, None, :] >= low[:, 0, None, None])
        & (xs[None, None, :] < high[:, 0, None, None])
        & (ys[None, :, None] >= low[:, 1, None, None])
        & (ys[None, :, None] < high[:, 1, None, None])
    )[:, None]
    blend = torch.where(mixed & ~cut, lam, torch.ones_like(lam))[:, None, None, None]
    pasted = torch.where(inside & (mixed & cut)[:, None, None, None], x[other], x)
    x = torch.where((mixed & cut)[:, None, None, None], pasted, blend * x + (1 - blend) * x[other])
    weight = torch.where(mixed, torch.where(cut, kept, lam), torch.ones_like(lam))
    return x, torch.where(mixed, other, own), weight
