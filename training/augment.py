"""Batched, per-sample augmentation on the training device (no per-image Python work)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

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

    brightness = uniform(0.7, 1.3, n)[:, None, None, None]
    contrast = uniform(0.7, 1.3, n)[:, None, None, None]
    saturation = uniform(0.6, 1.4, n)[:, None, None, None]
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    to_gray = (torch.rand(n, generator=generator, device=device) < 0.1)[:, None, None, None]
    saturation = torch.where(to_gray, torch.zeros_like(saturation), saturation)
    x = gray + (x - gray) * saturation
    centre = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - centre) * contrast + centre
    x = (x * brightness).clamp_(0.0, 1.0)
    return _normalize(x, mean, std)
