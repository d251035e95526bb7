"""Face verification metrics: pair scores, decision thresholds and cross-validated accuracy.

Every pair of L2-normalised embeddings gets a cosine similarity ``s`` (higher = same person)
or a euclidean distance ``d = sqrt(2 - 2 s)`` (lower = same person). A threshold ``t`` says
"same" when ``s >= t`` (cosine) or ``d <= t`` (euclidean).

Internally every score is turned into an "oriented" score ``x`` where higher always means
"same" (``x = s`` or ``x = -d``), so one sweep serves both metrics and the direction of the
euclidean comparison cannot be got wrong in two places.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel

from facefleet.core.names import METRICS, Metric
from facefleet.core.schemas import CVResult

Objective = Literal["f1", "accuracy"]

# Below this a 10-fold estimate rests on one or two pairs per fold: a number, but not a
# meaningful one, so evaluation refuses instead.
MIN_PAIRS = 20
# Embeddings come out of the extractor normalised in float32; this only catches callers who
# forgot to normalise, not rounding noise.
_UNIT_NORM_ATOL = 1e-3


class ThresholdResult(BaseModel):
    """One decision threshold and how it performs on the pairs it was chosen on."""

    metric: Metric
    threshold: float
    f1: float
    accuracy: float
    precision: float
    recall: float


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _as_scores(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("scores is empty: there is nothing to evaluate")
    if not np.all(np.isfinite(x)):
        # A NaN would sort to one end and silently count as "not same" for cosine but
        # "same" for euclidean; refusing is the only consistent answer.
        raise ValueError("scores contain NaN or infinite values")
    return x


def _as_labels(same: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(same)
    if y.shape != (n,):
        raise ValueError(f"same must have shape ({n},) to match scores, got {y.shape}")
    if y.dtype != np.bool_:
        # Accept 0/1 from integer or float arrays but not arbitrary truthy values, which
        # usually mean labels and scores were swapped.
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("same must be boolean or contain only 0 and 1")
        y = y.astype(bool)
    return y


def _orient(scores: np.ndarray, metric: Metric) -> np.ndarray:
    return scores if metric == "cosine" else -scores


def _unorient(threshold: float, metric: Metric) -> float:
    return float(threshold) if metric == "cosine" else float(-threshold)


# --------------------------------------------------------------------------------------------
# Confusion counts -> rates
# --------------------------------------------------------------------------------------------


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # Zero denominators (nothing predicted "same", or no "same" pairs at all) score 0, as
    # scikit-learn does with zero_division=0, so degenerate thresholds never look good.
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _rates(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(f1, accuracy, precision, recall) from integer confusion counts."""
    # F1 as 2TP / (2TP + FP + FN) rather than from precision and recall: one correctly
    # rounded division, so equal ratios give bit-identical floats and ties compare exactly.
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    accuracy = _safe_div(tp + tn, tp + fp + fn + tn)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return f1, accuracy, precision, recall


def _rates_at(x: np.ndarray, y: np.ndarray, oriented_threshold: float) -> tuple[float, float]:
    """(f1, accuracy) when pairs with oriented score >= threshold are called "same"."""
    pred = x >= oriented_threshold
    tp = np.count_nonzero(pred & y)
    fp = np.count_nonzero(pred & ~y)
    fn = np.count_nonzero(~pred & y)
    tn = np.count_nonzero(~pred & ~y)
    f1, accuracy, _, _ = _rates(np.array(tp), np.array(fp), np.array(fn), np.array(tn))
    return float(f1), float(accuracy)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def pair_scores(emb_left: np.ndarray, emb_right: np.ndarray, metric: Metric) -> np.ndarray:
    """Cosine similarity or euclidean distance of each row pair of two (N, D) unit-vector arrays."""
    _check_metric(metric)
    left = np.asarray(emb_left, dtype=np.float64)
    right = np.asarray(emb_right, dtype=np.float64)
    if left.ndim != 2 or left.shape != right.shape:
        raise ValueError(
            f"embeddings must be two (N, D) arrays of the same shape, got {left.shape} "
            f"and {right.shape}"
        )
    for name, emb in (("emb_left", left), ("emb_right", right)):
        norms = np.linalg.norm(emb, axis=1)
        if not np.allclose(norms, 1.0, atol=_UNIT_NORM_ATOL):
            raise ValueError(
                f"{name} rows must be L2-normalised (norms range {norms.min():.4g}"
                f"..{norms.max():.4g})"
            )
    # Rounding can push the dot product of near-identical unit vectors just past 1, which
    # would make the distance below NaN.
    cosine = np.clip(np.einsum("nd,nd->n", left, right), -1.0, 1.0)
    if metric == "cosine":
        return cosine
    # Derived from the same dot product rather than ||a - b|| so the two metrics rank pairs
    # identically and d = sqrt(2 - 2 s) holds exactly, not just up to rounding.
    return np.sqrt(2.0 - 2.0 * cosine)


def _candidates(values: np.ndarray) -> np.ndarray:
    """Oriented thresholds: below all, between each pair of neighbours, above all.

    ``values`` are sorted unique oriented scores. Candidate i calls "same" exactly the
    pairs with a value greater than ``values[i - 1]``.
    """
    m = values.size
    lo, hi = values[:-1], values[1:]
    mid = lo + (hi - lo) / 2.0
    # Between adjacent floats the midpoint rounds onto an endpoint; landing on ``lo`` would
    # flip that value's pairs to "same", while ``hi`` gives the same split as any value in
    # (lo, hi], so fall back to it.
    mid = np.where(mid > lo, mid, hi)
    # Extremes half a mean gap outside the range: any value works, but one on the scale of
    # the data reads better in reports than an arbitrary constant.
    gap = (values[-1] - values[0]) / (m - 1) if m > 1 else 1.0
    below = values[0] - gap / 2.0
    above = values[-1] + gap / 2.0
    if not above > values[-1]:
        above = np.nextafter(values[-1], np.inf)
    return np.concatenate(([below], mid, [above]))


def best_threshold(
    scores: np.ndarray,
    same: np.ndarray,
    metric: Metric,
    objective: Objective = "f1",
) -> ThresholdResult:
    """The threshold that maximises ``objective`` ("same" is the positive class for F1).

    Exact: every distinct split of the sorted scores is tried (midpoints between
    neighbouring unique scores, plus one threshold below and one above all of them), in
    O(N log N) via a sort and cumulative counts. Ties go to the better other metric
    (accuracy for "f1", F1 for "accuracy"), then to the middle of the tied candidates, so
    the result does not depend on the order of the pairs.
    """
    _check_metric(metric)
    if objective not in get_args(Objective):
        raise ValueError(f"objective must be one of {get_args(Objective)}, got {objective!r}")
    x = _orient(_as_scores(scores), metric)
    y = _as_labels(same, x.size)

    values, inverse = np.unique(x, return_inverse=True)
    m = values.size
    pos_per = np.bincount(inverse[y], minlength=m)
    neg_per = np.bincount(inverse[~y], minlength=m)
    # Candidate i calls the lowest i unique values "different"; cumulative counts give the
    # misses and true rejections for every candidate at once.
    fn = np.concatenate(([0], np.cumsum(pos_per)))
    tn = np.concatenate(([0], np.cumsum(neg_per)))
    tp = fn[-1] - fn
    fp = tn[-1] - tn

    f1, accuracy, precision, recall = _rates(tp, fp, fn, tn)
    primary, secondary = (f1, accuracy) if objective == "f1" else (accuracy, f1)
    tied = primary == primary.max()
    tied &= secondary == secondary[tied].max()
    tied_idx = np.flatnonzero(tied)
    i = int(tied_idx[(tied_idx.size - 1) // 2])

    return ThresholdResult(
        metric=metric,
        threshold=_unorient(_candidates(values)[i], metric),
        f1=float(f1[i]),
        accuracy=float(accuracy[i]),
        precision=float(precision[i]),
        recall=float(recall[i]),
    )


def sweep(
    scores: np.ndarray,
    same: np.ndarray,
    metric: Metric,
    num: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, f1s, accuracies) on ``num`` evenly spaced thresholds across the scores.

    For plotting; use :func:`best_threshold` for the exact optimum, which a grid can miss.
    """
    _check_metric(metric)
    if num < 2:
        raise ValueError(f"num must be at least 2, got {num}")
    s = _as_scores(scores)
    y = _as_labels(same, s.size)
    thresholds = np.linspace(s.min(), s.max(), num)

    x = _orient(s, metric)
    c = _orient(thresholds, metric)
    pos = np.sort(x[y])
    neg = np.sort(x[~y])
    # Pairs with x >= c are "same": everything from the first sorted index not below c.
    tp = pos.size - np.searchsorted(pos, c, side="left")
    fp = neg.size - np.searchsorted(neg, c, side="left")
    fn = pos.size - tp
    tn = neg.size - fp
    f1, accuracy, _, _ = _rates(tp, fp, fn, tn)
    return thresholds, f1, accuracy


def cross_validate(
    scores: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    metric: Metric,
) -> CVResult:
    """K-fold verification: each fold is scored with the best-accuracy threshold of the rest.

    Refuses (ValueError) with fewer than ``MIN_PAIRS`` pairs, fewer than 2 folds, or a fold
    that lacks either "same" or "different" pairs: such an evaluation would still produce a
    number, just not a meaningful one.
    """
    _check_metric(metric)
    x_raw = _as_scores(scores)
    y = _as_labels(same, x_raw.size)
    f = np.asarray(folds)
    if f.shape != x_raw.shape:
        raise ValueError(f"folds must have shape {x_raw.shape} to match scores, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"folds must be an integer array of fold ids, got dtype {f.dtype}")
    if x_raw.size < MIN_PAIRS:
        raise ValueError(
            f"too few pairs to evaluate: {x_raw.size} < {MIN_PAIRS}; refusing rather than "
            "reporting a meaningless accuracy"
        )
    fold_ids = np.unique(f)
    if fold_ids.size < 2:
        raise ValueError(
            f"cross-validation needs at least 2 folds, got {fold_ids.size}; refusing rather "
            "than reporting a meaningless accuracy"
        )
    for k in fold_ids:
        in_fold = y[f == k]
        n_same = int(np.count_nonzero(in_fold))
        n_diff = in_fold.size - n_same
        if n_same == 0 or n_diff == 0:
            raise ValueError(
                f"fold {int(k)} has {n_same} same and {n_diff} different pairs; every fold "
                "needs both, or its accuracy and F1 are meaningless"
            )

    x = _orient(x_raw, metric)
    thresholds: list[float] = []
    accuracies: list[float] = []
    f1s: list[float] = []
    for k in fold_ids:
        test = f == k
        # Accuracy, not F1, picks the fold threshold: it is what the fold is scored on and
        # what the LFW protocol reports.
        chosen = best_threshold(x_raw[~test], y[~test], metric, objective="accuracy")
        f1, accuracy = _rates_at(x[test], y[test], _orient(np.float64(chosen.threshold), metric))
        thresholds.append(chosen.threshold)
        accuracies.append(accuracy)
        f1s.append(f1)

    overall = best_threshold(x_raw, y, metric, objective="f1")
    return CVResult(
        metric=metric,
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        f1=float(np.mean(f1s)),
        f1_std=float(np.std(f1s)),
        thresholds=thresholds,
        best_threshold=overall.threshold,
        best_f1=overall.f1,
        best_accuracy=overall.accuracy,
    )


def verification_report(
    emb_left: np.ndarray,
    emb_right: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
) -> dict[Metric, CVResult]:
    """Cross-validated verification results for every metric, keyed by metric."""
    return {
        metric: cross_validate(pair_scores(emb_left, emb_right, metric), same, folds, metric)
        for metric in METRICS
    }


def plot_threshold_curves(
    scores_by_metric: dict[Metric, np.ndarray],
    same: np.ndarray,
    path: Path,
    title: str = "",
) -> None:
    """One PNG with a panel per metric: F1 and accuracy against threshold, best-F1 marked.

    Written to ``path.with_suffix(".part.png")`` and renamed, so a reader never sees a
    half-written image.
    """
    # Built on Figure + the Agg canvas instead of pyplot: no global backend switch and no
    # figure registry, so it is safe in workers and alongside other plotting code.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [m for m in METRICS if m in scores_by_metric]
    unknown = set(scores_by_metric) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; expected some of {METRICS}")
    if not metrics:
        raise ValueError("scores_by_metric is empty: nothing to plot")

    path = Path(path)
    fig = Figure(figsize=(6.0 * len(metrics), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        scores = scores_by_metric[metric]
        thresholds, f1s, accuracies = sweep(scores, same, metric)
        best = best_threshold(scores, same, metric, objective="f1")
        ax.plot(thresholds, f1s, label="F1")
        ax.plot(thresholds, accuracies, label="accuracy")
        ax.axvline(best.threshold, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(
            f"t = {best.threshold:.3f}\nF1 = {best.f1:.3f}",
            xy=(best.threshold, best.f1),
            xytext=(8, -28),
            textcoords="offset points",
            color="tab:red",
        )
        rule = "same if s >= t" if metric == "cosine" else "same if d <= t"
        ax.set_title(f"{metric} ({rule})")
        ax.set_xlabel("threshold")
        ax.set_ylabel("score")
        ax.set_ylim(0.0, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower center")
    if title:
        fig.suptitle(title)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.png")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
