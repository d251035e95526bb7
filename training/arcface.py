"""ArcFace: additive angular margin on the target class (Deng et al., 2019)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ArcFaceHead(nn.Module):
    """Class centres on the unit sphere; logits s·cos(θ + m) for the target, s·cos θ otherwise.

    When θ + m would pass π, cos(θ + m) stops decreasing in θ, so the usual fallback
    cos θ − m·sin(m) keeps the target logit monotonic. `easy_margin` applies the margin only
    where cos θ > 0.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.easy_margin = easy_margin
        self.set_margin(margin)

    def set_margin(self, margin: float) -> None:
        """The margin can change during training (margin warm-up)."""
        self.margin = margin
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: the margin arithmetic is unstable in fp16.
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        sine = torch.sqrt(1.0 - cosine * cosine)
        phi = cosine * self.cos_m - sine * self.sin_m
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.threshold, phi, cosine - self.fallback)
        target = F.one_hot(labels, num_classes=cosine.shape[1]).to(cosine.dtype)
        return self.scale * (target * phi + (1.0 - target) * cosine)
