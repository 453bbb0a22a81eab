"""The minimum-norm attack (DDN): its contract, its norms against the paper's attack and Foolbox's DDN."""

import warnings
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.attacks.adaptive import bpda_model
from helpers.attacks.attack import targeted_attack
from helpers.attacks.minnorm import argmin_over, ddn_l2, minimum_over
from helpers.core.engine import compiled
from helpers.studies.evaluate import predict_logits, random_targets
from helpers.training.models import build_model

N_IMAGES = 50  # of the 100 correct digits: enough for a stable median, half the attack time
STEPS = 100  # DDN's default budget (Rony et al. 2019; Foolbox)
GAMMA = 0.05


@pytest.fixture(scope="module")
def subset(correct_subset):
    images, labels, targets = correct_subset
    return images[:N_IMAGES], labels[:N_IMAGES], targets[:N_IMAGES]


@pytest.fixture(scope="module")
def ours(trained, subset):
    images, labels, targets = subset
    return ddn_l2(trained.model, images, labels, targets=targets, steps=STEPS, gamma=GAMMA)


@pytest.fixture(scope="module")
def paper(trained, subset):
    images, _, targets = subset
    return targeted_attack(trained.model, images, targets, step=0.1, progress=False)


@pytest.fixture(scope="module")
def untrained():
    keras.utils.set_random_seed(0)
    return build_model("small_cnn", input_shape=(8, 8, 1), num_classes=10)


# ---- The contract on a trained model ----------------------------------------------------------------------


def test_success_flags_are_the_models_prediction_on_the_returned_images(trained, subset, ours):
    images, labels, targets = subset
    predicted = predict_logits(trained.model, ours.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(ours.success, predicted == targets)
    assert ours.success.all()  # an unbounded attack on an undefended CNN reaches every target
    assert ours.adversarial.min() >= 0.0 and ours.adversarial.max() <= 1.0


def test_returned_norm_is_the_norm_of_the_returned_perturbation(subset, ours):
    images = subset[0]
    recomputed = np.linalg.norm((ours.adversarial.astype(np.float64) - images.astype(np.float64)).reshape(len(images), -1), axis=1)
    # Both are float64 sums of the same 784 squares; only the summation order may differ.
    np.testing.assert_allclose(ours.l2, recomputed, rtol=1e-12)
    assert ours.l2.dtype == np.float64


def test_steps_and_found_at(ours):
    np.testing.assert_array_equal(ours.steps, STEPS)
    # The clean image is correct, so the best adversarial is a later iterate (the last one is judged too).
    assert ((ours.found_at >= 1) & (ours.found_at <= STEPS)).all()


def test_norms_at_most_the_paper_attacks(ours, paper):
    assert paper.success.all()
    ratio = ours.l2 / paper.l2
    # The paper's stopping point is itself adversarial, so the nearest adversarial is no farther. DDN ends
    # within a few of its ε-resizings (factor 1 ± γ) of a boundary point: allow 2γ per image, none on the median.
    assert ratio.max() <= 1.0 + 2 * GAMMA
    assert np.median(ours.l2) <= np.median(paper.l2)


def test_untargeted_leaves_the_label_with_a_smaller_perturbation(trained, subset, ours):
    images, labels, _ = subset
    result = ddn_l2(trained.model, images, labels, steps=STEPS)
    predicted = predict_logits(trained.model, result.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != labels)
    assert result.success.all()
    # Any other class is allowed, the random target among them: the nearest one is nearer on the median.
    assert np.median(result.l2) < np.median(ours.l2)


def test_logit_margin_loss_reaches_the_targets(trained, subset):
    images, labels, targets = subset
    result = ddn_l2(trained.model, images[:10], labels[:10], targets=targets[:10], steps=50, loss="logit_margin")
    predicted = predict_logits(trained.model, result.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == targets[:10])
    assert result.success.all()


# ---- Against Foolbox's DDN on the same images ---------------------------------------------------------------


def test_median_norm_matches_foolbox_ddn(trained, subset, ours):
    fb = pytest.importorskip("foolbox")
    images, _, targets = subset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmodel = fb.TensorFlowModel(trained.model, bounds=(0.0, 1.0))
    criterion = fb.criteria.TargetedMisclassification(tf.constant(targets, tf.int64))
    attack = fb.attacks.DDNAttack(init_epsilon=1.0, steps=STEPS, gamma=GAMMA)
    _, adversarial, success = attack(fmodel, tf.constant(images), criterion, epsilons=None)
    success = success.numpy()
    theirs = np.linalg.norm((adversarial.numpy().astype(np.float64) - images).reshape(len(images), -1), axis=1)
    assert success.all()
    # Same rule, hyper-parameters and start: the medians differ only through float rounding along the paths,
    # and because we also judge the last iterate (which can only lower ours). Allow 2 %.
    assert np.median(ours.l2) <= 1.02 * np.median(theirs)


# ---- Defended models: exact gradient and BPDA ---------------------------------------------------------------


@pytest.fixture(scope="module")
def median_model(model_cache):
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached

    digits = load_dataset("digits")
    model = fit_cached("small_cnn", digits, defence="median:3", epochs=5, cache_dir=model_cache, verbose=0).model
    predicted = predict_logits(model, digits.x_test).argmax(axis=1)
    keep = np.flatnonzero(predicted == digits.y_test)[:20]
    labels = digits.y_test[keep]
    return model, digits.x_test[keep], labels, random_targets(labels, num_classes=10, seed=1)


@pytest.mark.parametrize("gradient", ["exact", "bpda"])
def test_works_on_a_median_filtered_model(median_model, gradient):
    model, images, labels, targets = median_model
    attacker = bpda_model(model) if gradient == "bpda" else model
    result = ddn_l2(attacker, images, labels, targets=targets, steps=50)
    # Judged by the defended model itself (BPDA changes only the gradient, never the prediction).
    predicted = predict_logits(model, result.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == targets)
    assert result.success.mean() >= 0.9
    assert np.isfinite(result.l2).all()


# ---- Edge cases and engine ---------------------------------------------------------------------------------


def test_zero_gradient_gives_no_nan_and_no_success():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 0.0)(inputs)))
    constant = keras.Model(inputs, logits)
    images = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    label = int(predict_logits(constant, images[:1]).argmax())  # the only class it ever predicts
    result = ddn_l2(constant, images, np.full(4, label), steps=5)
    assert np.isfinite(result.adversarial).all()
    assert not result.success.any()
    np.testing.assert_array_equal(result.found_at, -1)


def test_an_already_adversarial_image_costs_nothing(untrained):
    images = np.random.default_rng(1).random((3, 8, 8, 1)).astype(np.float32)
    predicted = predict_logits(untrained, images).argmax(axis=1)
    result = ddn_l2(untrained, images, predicted, targets=predicted, steps=3)
    assert result.success.all()
    np.testing.assert_array_equal(result.found_at, 0)
    np.testing.assert_array_equal(result.l2, 0.0)


def test_stopping_early_takes_fewer_steps_and_keeps_the_smallest_adversarial_it_found(trained, subset, ours):
    images, labels, targets = subset
    early = ddn_l2(trained.model, images, labels, targets=targets, steps=STEPS, gamma=GAMMA, stop_patience=10,
                   stop_tolerance=0.01)
    stopped = early.steps < STEPS
    assert stopped.mean() > 0.5 and early.steps.min() >= 10 and (early.steps % 10 == 0).all()
    assert early.success[stopped].all()  # only an image with an adversarial stops before its budget
    predicted = predict_logits(trained.model, early.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(early.success, predicted == targets)
    assert (early.found_at < early.steps).all() & (early.found_at >= 0).all()
    # Until it stops, an image follows the full budget's path (the batch around it shrinks, which may move the last
    # bits of a convolution), so its norm cannot be much below the full budget's, and its median stays close to it.
    assert (early.l2 >= ours.l2 * (1 - 1e-3)).all()
    # Within 5 %: under 2 % on an Intel CPU with AMX, 2.8 % on an AVX2-only AMD EPYC, where the shrinking batch moves
    # the path more.
    assert np.median(early.l2) <= 1.05 * np.median(ours.l2)


def test_without_early_stopping_every_image_runs_the_budget(ours):
    np.testing.assert_array_equal(ours.steps, STEPS)


def test_one_compiled_function_per_model_and_mode(untrained):
    images = np.random.default_rng(2).random((5, 8, 8, 1)).astype(np.float32)
    labels = np.arange(5)
    ddn_l2(untrained, images, labels, steps=2, batch_size=2)
    ddn_l2(untrained, images[:3], labels[:3], steps=4)
    run = compiled(untrained, ("ddn", False, "cross_entropy"), lambda m: None).__wrapped__  # the one kept, not a new one
    assert run is not None
    assert run.experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    ("kwargs", "name", "error"),
    [
        ({"steps": 0}, "steps", ValueError),
        ({"steps": 1.5}, "steps", TypeError),
        ({"gamma": 1.0}, "gamma", ValueError),
        ({"gamma": 0.0}, "gamma", ValueError),
        ({"init_epsilon": 0.0}, "init_epsilon", ValueError),
        ({"min_alpha": 2.0}, "min_alpha", ValueError),
        ({"loss": "hinge"}, "loss", ValueError),
        ({"targets": np.zeros(2, int)}, "targets", ValueError),
        ({"targets": np.full(3, 10)}, "targets", ValueError),
        ({"batch_size": 0}, "batch_size", ValueError),
        ({"stop_patience": 0}, "stop_patience", ValueError),
        ({"stop_patience": 2.5}, "stop_patience", TypeError),
        ({"stop_tolerance": 0.0}, "stop_tolerance", ValueError),
        ({"stop_tolerance": 1.5}, "stop_tolerance", ValueError),
    ],
)
def test_bad_parameters_fail_naming_them(untrained, kwargs, name, error):
    images = np.zeros((3, 8, 8, 1), np.float32)
    with pytest.raises(error, match=f"^{name}:"):
        ddn_l2(untrained, images, np.zeros(3, int), **kwargs)


def test_bad_images_and_model_fail_naming_them(untrained):
    with pytest.raises(ValueError, match="^images:"):
        ddn_l2(untrained, np.full((2, 8, 8, 1), 2.0, np.float32), np.zeros(2, int))
    with pytest.raises(TypeError, match="^model:"):
        ddn_l2(object(), np.zeros((2, 8, 8, 1), np.float32), np.zeros(2, int))


# ---- The per-image minimum over attacks ---------------------------------------------------------------------


def _result(l2, success):
    return SimpleNamespace(l2=np.array(l2, float), success=np.array(success, bool))


def test_minimum_over_counts_failures_as_infinite():
    a = _result([1.0, 2.0, 5.0, 9.0], [True, True, False, False])
    b = _result([1.5, 1.0, 4.0, 0.1], [True, True, True, False])
    np.testing.assert_array_equal(minimum_over(a, b), [1.0, 1.0, 4.0, np.inf])
    np.testing.assert_array_equal(argmin_over(a, b), [0, 1, 1, -1])
    np.testing.assert_array_equal(minimum_over(a), [1.0, 2.0, np.inf, np.inf])


def test_minimum_over_real_results(ours, paper):
    both = minimum_over(paper, ours)
    np.testing.assert_array_equal(both, np.minimum(paper.l2, ours.l2))


def test_minimum_over_rejects_mismatched_results():
    with pytest.raises(TypeError, match="^results:"):
        minimum_over()
    with pytest.raises(TypeError, match="^results:"):
        minimum_over(np.zeros(3))
    with pytest.raises(ValueError, match="^results:"):
        minimum_over(_result([1.0, 2.0], [True, True]), _result([1.0], [True]))
