"""Training regimes beside the blur: noise augmentation (randomized smoothing) and PGD adversarial training."""

import numpy as np
import pytest

from helpers.attacks.adaptive import pgd_l2
from helpers.defences.robust_training import parse_regime
from helpers.defences.smoothing import sample_counts
from helpers.training.train import cache_key, fit_cached


@pytest.mark.parametrize("text, parsed", [("standard", ("standard", 0.0)), ("noise:0.5", ("noise", 0.5)), ("pgd:2", ("pgd", 2.0))])
def test_parse_regime(text, parsed):
    assert parse_regime(text) == parsed


@pytest.mark.parametrize("text", ["noise", "noise:", "noise:-1", "noise:0", "blur:1", "pgd:x", "pgd:100"])
def test_bad_regime_names_the_parameter(text):
    with pytest.raises(ValueError, match="^training:"):
        parse_regime(text)


def test_standard_models_keep_their_cache_key(mnist):
    standard = cache_key("small_cnn", mnist, defence="none", epochs=2, batch_size=64, seed=0)
    assert "training" not in standard  # the files of every model trained before regimes existed stay valid
    assert cache_key("small_cnn", mnist, defence="none", epochs=2, batch_size=64, seed=0, training="noise:0.5") == standard | {
        "training": "noise:0.5"}


def test_a_regime_trains_the_undefended_model_only(mnist, model_cache):
    with pytest.raises(ValueError, match="^training: .*defence='median:3'"):
        fit_cached("small_cnn", mnist, defence="median:3", epochs=1, cache_dir=model_cache, training="noise:0.5")


@pytest.fixture(scope="module")
def standard(mnist, model_cache):
    return fit_cached("small_cnn", mnist, epochs=2, cache_dir=model_cache, verbose=0).model


@pytest.mark.slow
def test_noise_training_keeps_accuracy_under_noise_and_is_cached(mnist, model_cache, standard):
    noisy = fit_cached("small_cnn", mnist, epochs=2, cache_dir=model_cache, training="noise:0.5", verbose=0)
    assert not noisy.from_cache and {"loss", "accuracy", "val_accuracy"} <= set(noisy.history)
    again = fit_cached("small_cnn", mnist, epochs=2, cache_dir=model_cache, training="noise:0.5", verbose=0)
    assert again.from_cache and again.path == noisy.path
    images, labels = mnist.x_test[:200], mnist.y_test[:200]

    def accuracy_under_noise(model):  # the share of noisy copies classified correctly
        return float(np.mean(sample_counts(model, images, sigma=0.5, n=20)[np.arange(200), labels] / 20))

    assert accuracy_under_noise(noisy.model) > accuracy_under_noise(standard) + 0.1


@pytest.mark.slow
def test_pgd_training_raises_robust_accuracy(mnist, model_cache, standard):
    robust = fit_cached("small_cnn", mnist, epochs=2, cache_dir=model_cache, training="pgd:2.0", verbose=0).model
    images, labels = mnist.x_test[:200], mnist.y_test[:200]
    ours = pgd_l2(robust, images, labels, budgets=[0.0, 2.0], steps=20).accuracy
    theirs = pgd_l2(standard, images, labels, budgets=[0.0, 2.0], steps=20).accuracy
    assert ours[1] > theirs[1] + 0.1, f"adversarially trained {ours}, standard {theirs}"
