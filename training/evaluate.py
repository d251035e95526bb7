"""Verification on LFW pairs: embeddings of both sides, then threshold/F1 per metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facefleet.core.embedding import FaceEmbedder
from facefleet.core.errors import InputError
from facefleet.core.names import METRICS
from facefleet.core.schemas import PairEvaluation
from facefleet.training.facecache import FaceCache
from facefleet.training.lfw import Pair
from facefleet.training.metrics import (
    pair_scores,
    plot_threshold_curves,
    verification_report,
)


def embed_pairs(
    embedder: FaceEmbedder, cache: FaceCache, pairs: Sequence[Pair]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the left and right images; each distinct image is embedded once."""
    unique = list(dict.fromkeys([p.left for p in pairs] + [p.right for p in pairs]))
    vectors = embedder.embed(cache.take(unique))
    index = {path: i for i, path in enumerate(unique)}
    left = vectors[[index[p.left] for p in pairs]]
    right = vectors[[index[p.right] for p in pairs]]
    return left, right


def evaluate_pairs(
    embedder: FaceEmbedder,
    cache: FaceCache,
    pairs: Sequence[Pair],
    protocol: str,
    plot_path: Path | None = None,
) -> PairEvaluation:
    left, right = embed_pairs(embedder, cache, pairs)
    same = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs], dtype=np.int64)
    report = verification_report(left, right, same, folds)
    if plot_path is not None:
        scores = {m: pair_scores(left, right, m) for m in METRICS}
        plot_threshold_curves(scores, same, plot_path, title=f"{protocol} ({len(pairs)} pairs)")
    return PairEvaluation(
        protocol=protocol, pairs=len(pairs), cosine=report["cosine"], euclidean=report["euclidean"]
    )


def identification_thresholds(
    embedder: FaceEmbedder,
    cache: FaceCache,
    relpaths: Sequence[str],
    far: float = 1e-2,
    at_least: float | None = None,
) -> dict[str, float]:
    """Thresholds at which `far` of all pairs of different people would be accepted.

    Computed over every cross-identity pair of the given images (for DevTest's 1,549 images
    about 1.2 million pairs), so the default 1% rate rests on ~12,000 pairs. Never below the
    cosine `at_least` (the best-F1 verification threshold): naming strangers must not be
    easier than verifying a pair, even for a weak model whose impostor scores sit low.
    """
    from facefleet.training.lfw import person_of

    vectors = embedder.embed(cache.take(list(relpaths)))
    people = np.array([person_of(p) for p in relpaths])
    sims = vectors @ vectors.T
    different = people[:, None] != people[None, :]
    upper = np.triu(np.ones_like(different, dtype=bool), k=1)
    impostors = sims[different & upper]
    if impostors.size < 1 / far:
        raise InputError(f"too few impostor pairs ({impostors.size}) for a rate of {far}")
    cosine = float(np.clip(np.quantile(impostors, 1.0 - far), -1.0, 1.0))
    if at_least is not None:
        cosine = max(cosine, at_least)
    return {
        "identification_cosine": cosine,
        "identification_euclidean": float(np.sqrt(max(0.0, 2.0 - 2.0 * cosine))),
        "identification_far": far,
    }
