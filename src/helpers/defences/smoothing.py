"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): Gaussian *noise* where the paper puts a Gaussian *blur*,
with a certificate instead of an attack as the evidence.

The smoothed classifier g(x) returns the class that the base classifier f predicts most often on x + N(0, σ²I).
If that class has probability p_A ≥ ½ under the noise, no perturbation of L2 norm below σ·Φ⁻¹(p_A) can change
g's answer (their theorem 1). :func:`certify` is their CERTIFY procedure:

1. draw ``n0`` noisy copies and take the most frequent class ĉ_A (selection);
2. draw ``n`` fresh copies and count ĉ_A (estimation);
3. p̲_A = the one-sided (1 − α) Clopper–Pearson lower bound of that count; abstain if p̲_A < ½, else certify
   ĉ_A within the radius σ·Φ⁻¹(p̲_A).

With probability at least 1 − α over the noise, a certified answer is the smoothed classifier's answer and the
radius is valid. The noisy copies of many images go through the model's compiled forward pass together
(:func:`helpers.core.engine.forward_function`), ``batch_size`` at a time. Noise is not clipped to the pixel range: the
certificate is for the unclipped Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from helpers.core.engine import check_classifier, check_model_images, forward_function
from helpers.core.validate import check_float, check_int

ABSTAIN = -1  # the prediction of an image the smoothed classifier does not certify


def lower_confidence_bound(successes, trials: int, *, alpha: float) -> np.ndarray:
    """One-sided (1 − α) Clopper–Pearson lower bound of a binomial proportion: the α quantile of
    Beta(k, n − k + 1), and 0 when k = 0."""
    trials = check_int("trials", trials, minimum=1)
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0, strict_minimum=True)
    k = np.asarray(successes, dtype=np.float64)
    if np.any((k < 0) | (k > trials)) or np.any(k != np.round(k)):
        raise ValueError(f"successes: expected whole counts in [0, {trials}], got {successes!r}")
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(alpha, k, trials - k + 1)
    return np.where(k == 0, 0.0, bound)


def largest_certifiable_radius(*, sigma: float, n: int, alpha: float) -> float:
    """The largest L2 radius CERTIFY can ever return with ``n`` noisy copies at level ``alpha``: every copy voting for
    the class gives p̲_A = α^(1/n), so r = σ·Φ⁻¹(α^(1/n)). No budget beyond it can be certified, whatever the model."""
    sigma = check_float("sigma", sigma, minimum=0.0, strict_minimum=True)
    p_lower = float(lower_confidence_bound(check_int("n", n, minimum=1), n, alpha=alpha))
    return float(sigma * stats.norm.ppf(p_lower))


def sample_counts(
    model: keras.Model, images: np.ndarray, *, sigma: float, n: int, seed: int = 0, batch_size: int = 1000
) -> np.ndarray:
    """(N, classes) counts of the base classifier's predictions on ``n`` noisy copies x + N(0, σ²I) of each image."""
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    sigma = check_float("sigma", sigma, minimum=0.0, strict_minimum=True)
    n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    forward = forward_function(model)
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(images), num_classes), dtype=np.int64)
    # Row r of the flat stream is copy r % n of image r // n; each batch is one slice of that stream.
    total = len(images) * n
    for begin in range(0, total, batch_size):
        rows = np.arange(begin, min(begin + batch_size, total))
        owner = rows // n
        noisy = images[owner] + sigma * rng.standard_normal((len(rows), *images.shape[1:]), dtype=np.float32)
        predicted = forward(tf.constant(noisy)).numpy().argmax(axis=1)
        np.add.at(counts, (owner, predicted), 1)
    return counts


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer per image: the class (or :data:`ABSTAIN`), the certified L2 radius (0 when abstaining)
    and the lower confidence bound p̲_A it rests on; also the most frequent class among the ``n`` estimation
    copies (the smoothed classifier's majority answer, certified or not)."""

    prediction: np.ndarray  # (N,) int
    radius: np.ndarray  # (N,) float, in [0, 1] pixel units
    p_lower: np.ndarray  # (N,) float
    majority: np.ndarray  # (N,) int

    def accuracy_at(self, labels: np.ndarray, radii) -> np.ndarray:
        """Certified accuracy: the share of images certified correct within each radius r (radius ≥ r)."""
        labels = np.asarray(labels)
        radii = np.asarray(radii, dtype=np.float64)
        right = self.prediction == labels
        return np.array([np.mean(right & (self.radius >= r)) for r in radii])


def certify(
    model: keras.Model,
    images: np.ndarray,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    seed: int = 0,
    batch_size: int = 1000,
) -> Certificate:
    """Cohen et al.'s CERTIFY for every image (selection with ``n0`` draws, estimation with ``n`` fresh draws).

    >>> cert = certify(noise_trained_model, x_test[:100], sigma=0.5)  # doctest: +SKIP
    >>> cert.accuracy_at(y_test[:100], [0.0, 0.5, 1.0])  # doctest: +SKIP
    """
    n0 = check_int("n0", n0, minimum=1)
    n = check_int("n", n, minimum=1)
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0, strict_minimum=True)
    seed = check_int("seed", seed, minimum=0, maximum=2**31 - 2)
    selection = sample_counts(model, images, sigma=sigma, n=n0, seed=seed, batch_size=batch_size)
    guess = selection.argmax(axis=1)
    estimation = sample_counts(model, images, sigma=sigma, n=n, seed=seed + 1, batch_size=batch_size)
    p_lower = lower_confidence_bound(estimation[np.arange(len(guess)), guess], n, alpha=alpha)
    certified = p_lower >= 0.5
    radius = np.where(certified, sigma * stats.norm.ppf(np.where(certified, p_lower, 0.5)), 0.0)
    return Certificate(prediction=np.where(certified, guess, ABSTAIN), radius=radius, p_lower=p_lower,
                       majority=estimation.argmax(axis=1))
