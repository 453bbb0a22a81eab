"""Randomized smoothing: the Clopper–Pearson bound, CERTIFY on classifiers whose answer is known, a trained model."""

import keras
import numpy as np
import pytest
from scipy import stats

from helpers.defences.smoothing import ABSTAIN, certify, lower_confidence_bound, sample_counts


def _linear(weights, bias, shape=(4, 4, 1)) -> keras.Model:
    """logits = W·flatten(x) + b, with fixed weights."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(len(bias))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((int(np.prod(shape)), len(bias)), np.float32)
    kernel[: len(weights)] = weights
    dense.set_weights([kernel, np.asarray(bias, np.float32)])
    return model


@pytest.mark.parametrize("k, n", [(1, 10), (5, 10), (990, 1000), (1000, 1000), (37, 100)])
def test_lower_bound_is_scipys_exact_interval(k, n):
    alpha = 0.001
    # One-sided (1 − α) lower bound = lower end of the two-sided (1 − 2α) exact (Clopper–Pearson) interval.
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert lower_confidence_bound(k, n, alpha=alpha) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_lower_bound_edges_and_errors():
    assert lower_confidence_bound(0, 10, alpha=0.01) == 0.0
    assert lower_confidence_bound(10, 10, alpha=0.01) == pytest.approx(0.01 ** (1 / 10))  # Beta(n, 1): α^(1/n)
    with pytest.raises(ValueError, match="successes"):
        lower_confidence_bound(11, 10, alpha=0.01)
    with pytest.raises(ValueError, match="alpha"):
        lower_confidence_bound(1, 10, alpha=0.0)


def test_a_coin_flip_classifier_abstains():
    # Class 0 iff the first pixel is > 0; at a zero image, the noise makes that a fair coin.
    coin = _linear(np.array([[1.0, -1.0]]), [0.0, 0.0])
    images = np.zeros((5, 4, 4, 1), np.float32)
    counts = sample_counts(coin, images, sigma=0.5, n=2000, seed=3)
    assert counts.sum(axis=1).tolist() == [2000] * 5 and np.all(np.abs(counts[:, 0] / 2000 - 0.5) < 0.05)
    cert = certify(coin, images, sigma=0.5, n0=100, n=1000, alpha=0.001)
    assert np.all(cert.prediction == ABSTAIN) and np.all(cert.radius == 0)


def test_a_constant_classifier_is_certified_at_the_formulas_radius():
    constant = _linear(np.zeros((1, 3)), [0.0, 2.0, 1.0])  # always class 1
    images = np.random.default_rng(0).random((4, 4, 4, 1)).astype(np.float32)
    sigma, n, alpha = 0.5, 1000, 0.001
    cert = certify(constant, images, sigma=sigma, n0=50, n=n, alpha=alpha)
    assert np.all(cert.prediction == 1)
    assert np.allclose(cert.radius, sigma * stats.norm.ppf(alpha ** (1 / n)))  # p̲_A = α^(1/n) when all n agree
    assert cert.accuracy_at(np.ones(4, int), [0.0, 1.0, 2.0]).tolist() == [1.0, 1.0, 0.0]  # radius ≈ 1.54


def test_certify_a_trained_model(trained, first_test_digits):
    images, labels = first_test_digits
    cert = certify(trained.model, images[:20], sigma=0.25, n0=20, n=200, alpha=0.01, batch_size=512)
    accuracy = cert.accuracy_at(labels[:20], [0.0, 0.1, 0.25, 0.5, 2.0])
    assert accuracy[0] >= 0.5 and np.all(np.diff(accuracy) <= 0)  # falls with the radius
    assert accuracy[-1] == 0  # a radius above σ·Φ⁻¹(1 − 10⁻⁹) ≈ 1.5 needs more draws than 200
    assert np.all((cert.prediction == ABSTAIN) == (cert.p_lower < 0.5))


@pytest.mark.parametrize("kwargs, name", [({"sigma": 0.0}, "sigma"), ({"sigma": 0.5, "n": 0}, "n"),
                                          ({"sigma": 0.5, "n0": 0}, "n0"), ({"sigma": 0.5, "alpha": 1.5}, "alpha")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    model = _linear(np.zeros((1, 2)), [0.0, 1.0])
    with pytest.raises(ValueError, match=f"^{name}:"):
        certify(model, np.zeros((2, 4, 4, 1), np.float32), **kwargs)


def test_largest_certifiable_radius_bounds_every_certificate():
    from scipy import stats

    from helpers.defences.smoothing import largest_certifiable_radius, lower_confidence_bound

    r = largest_certifiable_radius(sigma=1.0, n=500, alpha=0.001)
    assert r == pytest.approx(stats.norm.ppf(0.001 ** (1 / 500)), rel=1e-6)  # all n copies right: p̲ = α^(1/n)
    assert r == pytest.approx(2.2, abs=0.01)
    assert largest_certifiable_radius(sigma=0.25, n=500, alpha=0.001) == pytest.approx(r / 4)
    assert largest_certifiable_radius(sigma=1.0, n=5000, alpha=0.001) > r  # more copies reach further
    assert 1.0 * stats.norm.ppf(float(lower_confidence_bound(499, 500, alpha=0.001))) < r
    with pytest.raises(ValueError, match="^sigma"):
        largest_certifiable_radius(sigma=0.0, n=500, alpha=0.001)
