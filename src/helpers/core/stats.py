"""Bootstrap statistics shared by every chapter: intervals of a statistic, of accuracy curves, and over training
seeds and images. Percentile intervals; resampling is seeded, so a rerun gives the same interval."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from helpers.core.validate import check_float, check_int


def bootstrap_ci(
    values: np.ndarray, *, statistic: Callable = np.mean, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over the examples in ``values``."""
    values = np.asarray(values, dtype=np.float64)
    n_resamples = check_int("n_resamples", n_resamples, minimum=10)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(n_resamples)])
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def accuracy_curve_ci(
    correct: np.ndarray, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy at each budget and its percentile bootstrap interval, resampling images (rows of ``correct``: budgets).

    The same resampled images are used at every budget, so the band is that of the whole curve's sample.
    """
    correct = _check_correct("correct", correct)
    draws = _resampled_means(correct, n_resamples=n_resamples, seed=seed)
    return correct.mean(axis=1), *_percentiles(draws, level)


def _check_correct(name: str, correct) -> np.ndarray:
    array = np.asarray(correct)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name}: expected a (budgets, images) array of flags, got shape {array.shape}")
    if array.dtype != bool:
        raise TypeError(f"{name}: expected boolean flags, got dtype {array.dtype}")
    return array


def _resampled_means(values: np.ndarray, *, n_resamples: int, seed: int) -> np.ndarray:
    n_resamples = check_int("n_resamples", n_resamples, minimum=10)
    seed = check_int("seed", seed, minimum=0)
    n = values.shape[1]
    picks = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    # counts[r, i]: how often image i is drawn in resample r; means = counts @ values.T / n.
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n), picks.ravel()), 1.0)
    return counts @ values.T.astype(np.float64) / n  # (n_resamples, B)


def _percentiles(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    level = check_float("level", level, minimum=0.0, maximum=1.0, strict_minimum=True)
    alpha = (1 - level) / 2
    return np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0)


# --------------------------------------------------------------------------------------------------------------
# A bootstrap over training seeds *and* images
# --------------------------------------------------------------------------------------------------------------


def image_counts(n_images: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_images): how often each image is drawn in each resample. Use the same counts for every
    model, so that comparisons stay paired (the same images drawn for both sides)."""
    n_images = check_int("n_images", n_images, minimum=1)
    n_resamples = check_int("n_resamples", n_resamples, minimum=10)
    picks = np.random.default_rng(seed).integers(0, n_images, size=(n_resamples, n_images))
    counts = np.zeros((n_resamples, n_images))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_images), picks.ravel()), 1.0)
    return counts


def seed_picks(n_seeds: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_seeds): the training seeds drawn (with replacement) in each resample. Draw them
    independently per model: seed k of one model and seed k of another are unrelated training runs."""
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    return np.random.default_rng(seed).integers(0, n_seeds, size=(n_resamples, n_seeds))


def per_seed_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n_resamples, n_seeds): each seed's mean over the resampled images; NaN entries (e.g. the distance of a
    failed attack) are left out of the mean, as they are of the point estimate."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != counts.shape[1]:
        raise ValueError(f"values: expected (seeds, {counts.shape[1]}) values, got shape {values.shape}")
    seen = np.isfinite(values)
    totals = counts @ np.where(seen, values, 0.0).T
    weights = counts @ seen.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / weights


def over_picked_seeds(per_seed: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """(n_resamples,): the mean over each resample's picked seeds of a (n_resamples, n_seeds) array."""
    return np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)


def interval(draws: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap draws (NaN draws left out)."""
    level = check_float("level", level, minimum=0.0, maximum=1.0, strict_minimum=True)
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def quantile_mc_error(draws: np.ndarray, q: float) -> float:
    """Monte-Carlo standard error of the ``q``-quantile of bootstrap ``draws``: half the distance between the order
    statistics one standard deviation of the rank (√(B·q·(1 − q))) either side of B·q. It shrinks as 1/√B; a bound
    whose error is not small next to its distance from a threshold needs more resamples. NaN draws are left out."""
    q = check_float("q", q, minimum=0.0, maximum=1.0)
    ordered = np.sort(np.asarray(draws, dtype=np.float64)[np.isfinite(draws)])
    if not len(ordered):
        return float("nan")
    spread = np.sqrt(len(ordered) * q * (1 - q))
    below = int(np.clip(np.floor(len(ordered) * q - spread), 0, len(ordered) - 1))
    above = int(np.clip(np.ceil(len(ordered) * q + spread), 0, len(ordered) - 1))
    return float(ordered[above] - ordered[below]) / 2


def p_value_mc_error(p: float, n_resamples: int) -> float:
    """Monte-Carlo standard error of a bootstrap p-value estimated from ``n_resamples`` draws: √(p(1 − p)/B)."""
    return float(np.sqrt(p * (1 - p) / check_int("n_resamples", n_resamples, minimum=1)))
