"""Verification metrics: exact threshold search, cross-validation, refusals and the plot."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from facefleet.core.names import METRICS
from facefleet.training.metrics import (
    MIN_PAIRS,
    CVResult,
    Metric,
    ThresholdResult,
    best_threshold,
    cross_validate,
    pair_scores,
    plot_threshold_curves,
    sweep,
    verification_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _predict(scores: np.ndarray, threshold: float, metric: Metric) -> np.ndarray:
    # Written out independently of the module's oriented-score trick on purpose.
    return scores >= threshold if metric == "cosine" else scores <= threshold


def _reference_rates(pred: np.ndarray, same: np.ndarray) -> tuple[float, float, float, float]:
    """(f1, accuracy, precision, recall) the textbook way, zero divisions scoring 0."""
    tp = int(np.sum(pred & same))
    fp = int(np.sum(pred & ~same))
    fn = int(np.sum(~pred & same))
    tn = int(np.sum(~pred & ~same))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, (tp + tn) / same.size, precision, recall


def _brute_force(
    scores: np.ndarray, same: np.ndarray, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """F1 and accuracy of every distinct split, O(N^2): each unique score as the threshold
    (inclusive) plus one that calls nothing "same"."""
    unique = np.unique(scores)
    beyond = np.inf if metric == "cosine" else -np.inf
    rates = [_reference_rates(_predict(scores, t, metric), same) for t in [*unique, beyond]]
    return np.array([r[0] for r in rates]), np.array([r[1] for r in rates])


def _gaussian_pairs(
    rng: np.random.Generator,
    n_per_fold: int,
    n_folds: int,
    mu_same: float,
    mu_diff: float,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LFW-shaped data: balanced folds of Gaussian cosine similarities."""
    same = np.tile(np.arange(n_per_fold) % 2 == 0, n_folds)
    folds = np.repeat(np.arange(n_folds), n_per_fold)
    scores = np.where(same, mu_same, mu_diff) + sigma * rng.standard_normal(same.size)
    return np.clip(scores, -1.0, 1.0), same, folds


# --------------------------------------------------------------------------------------------
# pair_scores
# --------------------------------------------------------------------------------------------


def test_pair_scores_cosine_and_euclidean_are_consistent() -> None:
    rng = np.random.default_rng(0)
    left, right = _unit(rng, 500, 64), _unit(rng, 500, 64)
    right[:10] = left[:10]  # identical pairs: the clip must keep the distance at 0, not NaN
    s = pair_scores(left, right, "cosine")
    d = pair_scores(left, right, "euclidean")
    assert s.shape == d.shape == (500,)
    np.testing.assert_allclose(s, np.sum(left * right, axis=1), atol=1e-12)
    np.testing.assert_allclose(d, np.sqrt(2.0 - 2.0 * s), rtol=0, atol=0)
    np.testing.assert_allclose(d, np.linalg.norm(left - right, axis=1), atol=1e-7)
    assert np.all(np.isfinite(d)) and np.all(d[:10] < 1e-6)


def test_pair_scores_refuses_bad_input() -> None:
    rng = np.random.default_rng(1)
    left = _unit(rng, 5, 8)
    with pytest.raises(ValueError, match="same shape"):
        pair_scores(left, left[:4], "cosine")
    with pytest.raises(ValueError, match="L2-normalised"):
        pair_scores(left * 3.0, left, "cosine")
    with pytest.raises(ValueError, match="metric"):
        pair_scores(left, left, "manhattan")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# best_threshold
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("objective", ["f1", "accuracy"])
def test_separable_scores_give_perfect_split_between_the_classes(
    metric: Metric, objective: str
) -> None:
    rng = np.random.default_rng(2)
    sim_same = rng.uniform(0.6, 0.9, 50)
    sim_diff = rng.uniform(-0.2, 0.4, 70)
    sim = np.concatenate([sim_same, sim_diff])
    same = np.concatenate([np.ones(50, bool), np.zeros(70, bool)])
    scores = sim if metric == "cosine" else np.sqrt(2.0 - 2.0 * sim)

    r = best_threshold(scores, same, metric, objective)  # type: ignore[arg-type]
    assert isinstance(r, ThresholdResult) and r.metric == metric
    assert r.f1 == r.accuracy == r.precision == r.recall == 1.0
    if metric == "cosine":
        assert sim_diff.max() < r.threshold < sim_same.min()
    else:
        # Lower distance is "same": the threshold sits above every same-pair distance.
        assert scores[same].max() < r.threshold < scores[~same].min()


def test_hand_computed_cosine_optimum() -> None:
    # Splits (call "same" from index k on) and their scores, worked by hand:
    #   t<0.1: TP3 FP3 -> F1 6/9, acc 3/6      t=.35: TP2 FP1 FN1 -> F1 4/6, acc 4/6
    #   t=.15: TP3 FP2 -> F1 6/8, acc 4/6      t=.45: TP2 FP0 FN1 -> F1 4/5, acc 5/6
    #   t=.25: TP3 FP1 -> F1 6/7, acc 5/6      t=.55: TP1 FN2     -> F1 2/4, acc 4/6
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([0, 0, 1, 0, 1, 1])

    r = best_threshold(scores, same, "cosine", "f1")
    assert r.threshold == pytest.approx(0.25)
    assert r.f1 == pytest.approx(6 / 7)
    assert r.accuracy == pytest.approx(5 / 6)
    assert r.precision == pytest.approx(3 / 4)
    assert r.recall == 1.0

    # 0.25 and 0.45 tie on accuracy (5/6); the tie goes to the better F1.
    r = best_threshold(scores, same, "cosine", "accuracy")
    assert r.threshold == pytest.approx(0.25)
    assert r.accuracy == pytest.approx(5 / 6)


def test_hand_computed_euclidean_optimum_respects_direction() -> None:
    # The cosine case mirrored: d = 0.7 - s, so "same" is now the low end.
    scores = np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    same = np.array([0, 0, 1, 0, 1, 1])
    r = best_threshold(scores, same, "euclidean", "f1")
    assert r.threshold == pytest.approx(0.45)
    assert r.f1 == pytest.approx(6 / 7)
    assert r.accuracy == pytest.approx(5 / 6)
    assert r.precision == pytest.approx(3 / 4)
    assert r.recall == 1.0

    # Reading distances as similarities would put "same" at the wrong end and do badly.
    wrong = best_threshold(scores, same, "cosine", "f1")
    assert wrong.f1 < r.f1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("objective", ["f1", "accuracy"])
def test_best_threshold_matches_brute_force(seed: int, metric: Metric, objective: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 250))
    same = rng.random(n) < rng.uniform(0.2, 0.8)
    sim = np.where(same, 0.5, 0.2) + 0.25 * rng.standard_normal(n)
    # Coarse rounding on some seeds makes many exact ties across both classes.
    sim = np.clip(np.round(sim, 2 if seed % 2 else 12), -1.0, 1.0)
    scores = sim if metric == "cosine" else np.sqrt(2.0 - 2.0 * sim)

    r = best_threshold(scores, same, metric, objective)  # type: ignore[arg-type]
    ref_f1, ref_acc = _brute_force(scores, same, metric)
    primary, secondary = (ref_f1, ref_acc) if objective == "f1" else (ref_acc, ref_f1)
    got_primary, got_secondary = (r.f1, r.accuracy) if objective == "f1" else (r.accuracy, r.f1)
    assert got_primary == pytest.approx(primary.max(), abs=1e-12)
    best_secondary = secondary[np.abs(primary - primary.max()) <= 1e-12].max()
    assert got_secondary == pytest.approx(best_secondary, abs=1e-12)

    # The reported numbers are what the reported threshold actually does.
    f1, acc, precision, recall = _reference_rates(_predict(scores, r.threshold, metric), same)
    assert (r.f1, r.accuracy, r.precision, r.recall) == pytest.approx(
        (f1, acc, precision, recall), abs=1e-12
    )


def test_best_threshold_does_not_depend_on_pair_order() -> None:
    rng = np.random.default_rng(7)
    same = rng.random(400) < 0.5
    scores = np.round(np.where(same, 0.5, 0.3) + 0.2 * rng.standard_normal(400), 2)
    perm = rng.permutation(400)
    for objective in ("f1", "accuracy"):
        a = best_threshold(scores, same, "cosine", objective)  # type: ignore[arg-type]
        b = best_threshold(scores[perm], same[perm], "cosine", objective)  # type: ignore[arg-type]
        assert a == b


def test_adjacent_floats_still_split_correctly() -> None:
    # The midpoint of two neighbouring doubles rounds onto one of them; the split must not
    # change because of it.
    lo = 0.5
    hi = float(np.nextafter(lo, 1.0))
    scores = np.array([lo, hi])
    same = np.array([False, True])
    for metric, s in (("cosine", scores), ("euclidean", scores[::-1].copy())):
        r = best_threshold(s, same, metric)  # type: ignore[arg-type]
        assert r.f1 == 1.0 and r.accuracy == 1.0


def test_degenerate_labels_do_not_crash() -> None:
    scores = np.linspace(0, 1, 10)
    r = best_threshold(scores, np.ones(10, bool), "cosine")
    assert r.f1 == 1.0 and r.recall == 1.0 and r.threshold <= 0.0
    r = best_threshold(scores, np.zeros(10, bool), "cosine")
    assert r.f1 == 0.0 and r.accuracy == 1.0 and r.threshold > 1.0


def test_best_threshold_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        best_threshold(np.array([]), np.array([], bool), "cosine")
    with pytest.raises(ValueError, match="NaN"):
        best_threshold(np.array([0.1, np.nan]), np.array([0, 1]), "cosine")
    with pytest.raises(ValueError, match="shape"):
        best_threshold(np.array([0.1, 0.2]), np.array([0, 1, 1]), "cosine")
    with pytest.raises(ValueError, match="0 and 1"):
        best_threshold(np.array([0.1, 0.2]), np.array([0, 2]), "cosine")
    with pytest.raises(ValueError, match="objective"):
        best_threshold(np.array([0.1, 0.2]), np.array([0, 1]), "cosine", "auc")  # type: ignore[arg-type]


def test_best_threshold_is_fast_on_100k_pairs() -> None:
    rng = np.random.default_rng(3)
    same = rng.random(100_000) < 0.5
    scores = np.where(same, 0.5, 0.2) + 0.2 * rng.standard_normal(100_000)
    start = time.perf_counter()
    best_threshold(scores, same, "cosine")
    # Generous: O(N log N) takes tens of milliseconds; an O(N^2) sweep would take minutes.
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_sweep_grid_matches_direct_evaluation(metric: Metric) -> None:
    rng = np.random.default_rng(4)
    same = rng.random(300) < 0.4
    scores = rng.uniform(0.0, 1.5, 300) + np.where(same, -0.3 if metric == "euclidean" else 0.3, 0)
    thresholds, f1s, accs = sweep(scores, same, metric, num=50)
    assert thresholds.shape == f1s.shape == accs.shape == (50,)
    assert thresholds[0] == scores.min() and thresholds[-1] == scores.max()
    assert np.all(np.diff(thresholds) > 0)
    for t, f1, acc in zip(thresholds, f1s, accs, strict=True):
        ref_f1, ref_acc, _, _ = _reference_rates(_predict(scores, t, metric), same)
        assert f1 == pytest.approx(ref_f1, abs=1e-12)
        assert acc == pytest.approx(ref_acc, abs=1e-12)
    # A grid can only approach the exact optimum, never beat it.
    assert f1s.max() <= best_threshold(scores, same, metric).f1 + 1e-12


# --------------------------------------------------------------------------------------------
# cross_validate / verification_report
# --------------------------------------------------------------------------------------------


def test_cross_validate_approaches_bayes_accuracy() -> None:
    rng = np.random.default_rng(5)
    mu_same, mu_diff, sigma = 0.55, 0.25, 0.15
    sim, same, folds = _gaussian_pairs(rng, 600, 10, mu_same, mu_diff, sigma)
    # Equal priors and variances: the Bayes rule splits at the midpoint of the means.
    bayes = 0.5 * (1.0 + math.erf((mu_same - mu_diff) / (2 * sigma) / math.sqrt(2.0)))

    cos = cross_validate(sim, same, folds, "cosine")
    euc = cross_validate(np.sqrt(2.0 - 2.0 * sim), same, folds, "euclidean")
    assert isinstance(cos, CVResult)
    assert cos.accuracy == pytest.approx(bayes, abs=0.02)
    assert 0.0 < cos.accuracy_std < 0.05 and 0.0 < cos.f1_std < 0.05
    assert len(cos.thresholds) == 10
    # Every fold's threshold lands near the Bayes split of the means.
    assert np.allclose(cos.thresholds, (mu_same + mu_diff) / 2, atol=0.05)
    assert cos.best_f1 >= cos.f1 - 0.02
    # Distance is a monotone function of similarity: both metrics make the same calls.
    assert euc.accuracy == pytest.approx(cos.accuracy, abs=1e-12)
    assert euc.f1 == pytest.approx(cos.f1, abs=1e-12)
    assert np.allclose(euc.thresholds, np.sqrt(2.0 - 2.0 * np.array(cos.thresholds)), atol=1e-3)


def test_cross_validate_refuses_meaningless_evaluations() -> None:
    rng = np.random.default_rng(6)
    sim, same, folds = _gaussian_pairs(rng, 10, 10, 0.6, 0.2, 0.1)

    with pytest.raises(ValueError, match="too few pairs"):
        cross_validate(
            sim[: MIN_PAIRS - 1], same[: MIN_PAIRS - 1], folds[: MIN_PAIRS - 1], "cosine"
        )
    with pytest.raises(ValueError, match="at least 2 folds"):
        cross_validate(sim, same, np.zeros_like(folds), "cosine")
    one_class = same.copy()
    one_class[folds == 3] = True
    with pytest.raises(ValueError, match="fold 3"):
        cross_validate(sim, one_class, folds, "euclidean")
    with pytest.raises(ValueError, match="integer"):
        cross_validate(sim, same, folds.astype(float), "cosine")
    with pytest.raises(ValueError, match="shape"):
        cross_validate(sim, same, folds[:-1], "cosine")
    # Exactly the minimum is accepted.
    small = cross_validate(sim[:MIN_PAIRS], same[:MIN_PAIRS], folds[:MIN_PAIRS] % 2, "cosine")
    assert 0.0 <= small.accuracy <= 1.0


def test_verification_report_covers_both_metrics() -> None:
    rng = np.random.default_rng(8)
    n, d = 400, 32
    same = np.tile(np.arange(40) % 2 == 0, 10)
    folds = np.repeat(np.arange(10), 40)
    left = _unit(rng, n, d)
    noisy = left + 0.6 * rng.standard_normal((n, d)) / math.sqrt(d)
    right = np.where(same[:, None], noisy, _unit(rng, n, d))
    right /= np.linalg.norm(right, axis=1, keepdims=True)

    report = verification_report(left, right, same, folds)
    assert set(report) == set(METRICS)
    assert all(report[m].metric == m for m in METRICS)
    assert report["cosine"].accuracy > 0.95
    assert report["euclidean"].accuracy == pytest.approx(report["cosine"].accuracy, abs=1e-12)
    assert report["cosine"].best_threshold > 0 and report["euclidean"].best_threshold > 0
    # Results serialise: they go into training reports as JSON.
    assert CVResult.model_validate_json(report["cosine"].model_dump_json()) == report["cosine"]


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def test_plot_writes_a_png_atomically(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    sim, same, _ = _gaussian_pairs(rng, 100, 4, 0.55, 0.25, 0.15)
    path = tmp_path / "plots" / "thresholds.png"
    plot_threshold_curves(
        {"cosine": sim, "euclidean": np.sqrt(2.0 - 2.0 * sim)}, same, path, title="test"
    )
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["thresholds.png"]


def test_plot_refuses_unknown_metric(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        plot_threshold_curves(
            {"dot": np.zeros(3)},  # type: ignore[dict-item]
            np.array([0, 1, 0]),
            tmp_path / "x.png",
        )
    assert not any(tmp_path.iterdir())
