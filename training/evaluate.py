"""Verification on LFW pairs: embeddings of both sides, then threshold/F1 per metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facefleet.core.extractors.base import Extractor
from facefleet.core.names import METRICS
from facefleet.core.schemas import IdentificationReport, PairEvaluation, Thresholds
from facefleet.training.facecache import FaceCache
from facefleet.training.lfw import Pair
from facefleet.training.metrics import (
    pair_scores,
    plot_threshold_curves,
    verification_report,
)


def embed_images(extractor: Extractor, cache: FaceCache, relpaths: Sequence[str]) -> np.ndarray:
    """Unit embeddings of LFW images, cut in the extractor's own geometry."""
    return extractor.embed(cache.crops(list(relpaths), extractor.geometry))


def embed_pairs(
    extractor: Extractor, cache: FaceCache, pairs: Sequence[Pair]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the left and right images; each distinct image is embedded once."""
    unique = list(dict.fromkeys([p.left for p in pairs] + [p.right for p in pairs]))
    vectors = embed_images(extractor, cache, unique)
    index = {path: i for i, path in enumerate(unique)}
    left = vectors[[index[p.left] for p in pairs]]
    right = vectors[[index[p.right] for p in pairs]]
    return left, right


def evaluate_pairs(
    extractor: Extractor,
    cache: FaceCache,
    pairs: Sequence[Pair],
    protocol: str,
    plot_path: Path | None = None,
) -> PairEvaluation:
    left, right = embed_pairs(extractor, cache, pairs)
    same = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs], dtype=np.int64)
    report = verification_report(left, right, same, folds)
    if plot_path is not None:
        scores = {m: pair_scores(left, right, m) for m in METRICS}
        plot_threshold_curves(scores, same, plot_path, title=f"{protocol} ({len(pairs)} pairs)")
    return PairEvaluation(
        protocol=protocol, pairs=len(pairs), cosine=report["cosine"], euclidean=report["euclidean"]
    )


def calibrated_thresholds(
    devtest: PairEvaluation,
    identification: IdentificationReport | None,
    far: float = 1e-2,
    impostors: np.ndarray | None = None,
) -> Thresholds:
    """What an extractor ships with: the best-F1 verification thresholds; for galleries
    the open-set protocol's threshold at `far` false accepts and, from the similarities of
    all `impostors` pairs, the curve that adapts it to a gallery's size (never more lenient
    than the best-F1 one: naming strangers must not be easier than verifying a pair, even
    for a weak model whose impostor scores sit low)."""
    values = Thresholds(
        cosine=devtest.cosine.best_threshold, euclidean=devtest.euclidean.best_threshold
    )
    if identification is None:
        return values
    cosine = max(identification.at(far).threshold, devtest.cosine.best_threshold)
    return values.model_copy(
        update={
            "identification_cosine": cosine,
            "identification_euclidean": float(np.sqrt(max(0.0, 2.0 - 2.0 * cosine))),
            "identification_far": far,
            "impostor_curve": impostor_curve(impostors) if impostors is not None else None,
        }
    )


def impostor_curve(similarities: np.ndarray) -> list[tuple[float, float]]:
    """(p, cosine) for p = 1e-6 ... 0.3: the similarity that a comparison of two different
    people reaches with probability p (only probabilities that at least ten pairs support)."""
    values = np.sort(np.asarray(similarities, dtype=np.float64))[::-1]
    curve = []
    for exponent in np.arange(-6.0, -0.49, 0.25):
        p = float(10.0**exponent)
        rank = int(p * len(values))
        if rank >= 10:
            curve.append((p, float(values[rank])))
    return curve
