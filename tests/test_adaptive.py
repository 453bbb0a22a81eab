import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.attacks.adaptive import (
    StraightThrough,
    bpda_model,
    input_gradient,
    models_under_test,
    needs_bpda,
    pgd_l2,
    random_noise,
    robustness_study,
    transfer_rates,
)
from helpers.core.stats import accuracy_curve_ci
from helpers.defences.filters import filter_layers, is_filter_layer
from helpers.studies.evaluate import predict_logits
from helpers.training.models import build_model

BUDGETS = [0.0, 0.5, 1.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def sample(first_test_digits):
    images, labels = first_test_digits
    return images[:60], labels[:60]


@pytest.fixture(scope="module")
def pgd(trained, sample):
    images, labels = sample
    return pgd_l2(trained.model, images, labels, budgets=BUDGETS, steps=20)


def _gradient(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x, training=False) * tf.range(1.0, 11.0))
    return tape.gradient(loss, x).numpy()


# ---- BPDA -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("defence", ["gaussian:1.5", "median:3"])
def test_bpda_forward_is_the_model_and_backward_skips_the_filter(defence):
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence=defence)
    x = np.random.default_rng(0).random((5, 12, 12, 1)).astype(np.float32)
    attacker = bpda_model(model)
    np.testing.assert_array_equal(attacker(x).numpy(), model(x).numpy())
    assert any(isinstance(layer, StraightThrough) for layer in attacker.layers)
    # The undefended path: the same layers and weights with the filter replaced by the identity.
    filtered = np.asarray(filter_layers(model)[0](x))
    rest = keras.models.clone_model(model, clone_function=lambda layer: keras.layers.Identity() if is_filter_layer(layer) else layer)
    np.testing.assert_allclose(_gradient(attacker, x), _gradient(rest, filtered), rtol=1e-5, atol=1e-7)
    # ... which is not the exact gradient through the filter.
    assert not np.allclose(_gradient(attacker, x), _gradient(model, x), atol=1e-6)
    # The copy shares the weights and leaves the original model untouched.
    assert {id(w) for w in attacker.weights} == {id(w) for w in model.weights}
    assert len(filter_layers(model)) == 1


def test_bpda_runs_where_the_filter_is_not_linear():
    def small(**defence):
        return build_model("small_cnn", input_shape=(12, 12, 1), num_classes=3, **defence)

    assert needs_bpda(small(defence="median:3"))
    assert not needs_bpda(small(defence="gaussian:1.5")) and not needs_bpda(small())


def test_bpda_needs_a_defended_keras_model():
    with pytest.raises(ValueError, match="model"):
        bpda_model(build_model("small_cnn", input_shape=(12, 12, 1), num_classes=3))
    with pytest.raises(TypeError, match="model"):
        bpda_model(lambda x: x)


# ---- PGD-L2 (the promises every attack keeps are tests/test_attack_contract.py) ---------------------------


def test_pgd_at_zero_budget_is_clean_accuracy(trained, pgd, sample):
    images, labels = sample
    clean = predict_logits(trained.model, images).argmax(1) == labels
    np.testing.assert_array_equal(pgd.correct[0], clean)
    assert 0.9 <= pgd.accuracy[0] < 1.0  # some clean mistakes in the sample make this a real check


def test_larger_budget_never_raises_accuracy_and_large_budget_breaks_all(pgd):
    assert (np.diff(pgd.accuracy) <= 0).all()
    assert pgd.accuracy[-1] <= 0.02
    assert pgd.accuracy[2] < pgd.accuracy[0]
    assert (pgd.gradient_norm > 0).all()


def test_batch_size_does_not_change_results(trained, pgd, sample):
    images, labels = sample
    small = pgd_l2(trained.model, images, labels, budgets=BUDGETS, steps=20, batch_size=37)
    # Float sums differ with the batch width (and across CPUs), so an image right at the boundary may flip: allow
    # one image per budget; where the flags agree the points found agree up to float drift along 20 steps.
    assert ((small.correct != pgd.correct).sum(axis=1) <= 1).all()
    agree = (small.correct == pgd.correct).all(axis=0)
    np.testing.assert_allclose(small.adversarial[:, agree], pgd.adversarial[:, agree], atol=5e-3)


def test_more_steps_never_lower_success(trained, sample):
    images, labels = sample
    few = pgd_l2(trained.model, images, labels, budgets=[1.0, 1.5], steps=5)
    many = pgd_l2(trained.model, images, labels, budgets=[1.0, 1.5], steps=40)
    assert (many.accuracy <= few.accuracy).all()


def test_random_noise_of_the_same_norm_is_far_weaker(trained, pgd, sample):
    images, labels = sample
    noise = random_noise(trained.model, images, labels, budgets=BUDGETS, draws=3, seed=0)
    np.testing.assert_allclose(noise.l2[:, noise.correct.all(axis=0)].max(axis=1), 0.0)  # untouched where never fooled
    assert (noise.accuracy >= pgd.accuracy).all()
    assert noise.accuracy[3] - pgd.accuracy[3] >= 0.5  # at ε = 2
    np.testing.assert_array_equal(noise.correct[0], pgd.correct[0])


def test_noise_has_exactly_the_budget_norm_after_clipping():
    from helpers.attacks.adaptive import noise_of_norm

    images = np.random.default_rng(0).random((4, 10, 10, 1)).astype(np.float32) * (np.arange(4) > 1).reshape(-1, 1, 1, 1)
    u = np.random.default_rng(1).standard_normal(images.shape).astype(np.float32)
    for eps in (0.3, 2.0):
        noisy = noise_of_norm(images, u, eps)
        assert (noisy >= 0).all() and (noisy <= 1).all()
        np.testing.assert_allclose(np.linalg.norm((noisy - images).reshape(4, -1), axis=1), eps, rtol=1e-4)


def test_targeted_pgd_reaches_targets(trained, correct_subset):
    images, labels, targets = correct_subset
    result = pgd_l2(trained.model, images[:30], labels[:30], budgets=[0.0, 4.0], steps=30, targets=targets[:30])
    assert not result.success[0].any()
    assert result.success[1].mean() >= 0.8
    assert (~result.correct[1] >= result.success[1]).all()  # reaching the target means leaving the label


def test_zero_gradient_does_not_move_or_give_nan():
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0]))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    images = np.full((4, 6, 6, 1), 0.5, np.float32)
    result = pgd_l2(model, images, np.zeros(4, int), budgets=[0.0, 1.0], steps=5)
    assert np.isfinite(result.adversarial).all() and result.correct.all()
    np.testing.assert_array_equal(result.gradient_norm, 0.0)


# ---- Bootstrap curves --------------------------------------------------------------------------------------


def test_curve_intervals_contain_the_estimate():
    rng = np.random.default_rng(0)
    correct = rng.random((3, 200)) < np.array([[0.9], [0.5], [0.1]])
    accuracy, low, high = accuracy_curve_ci(correct, n_resamples=300, seed=1)
    np.testing.assert_allclose(accuracy, correct.mean(axis=1))
    assert (low <= accuracy).all() and (accuracy <= high).all() and (high - low > 0.03).all()


@pytest.mark.parametrize(
    "call, error, param",
    [
        (lambda m, x, y: pgd_l2(m, x, y, budgets=[]), TypeError, "budgets"),
        (lambda m, x, y: pgd_l2(m, x, y, budgets=[1.0], steps=-1), ValueError, "steps"),
        (lambda m, x, y: pgd_l2(m, x, y, budgets=[1.0], step_ratio=0), ValueError, "step_ratio"),
        (lambda m, x, y: pgd_l2(m, x, y, budgets=[1.0], targets=y[:2]), ValueError, "targets"),
        (lambda m, x, y: random_noise(m, x, y, budgets=[1.0], draws=0), ValueError, "draws"),
        (lambda m, x, y: accuracy_curve_ci(np.ones((2, 3)), n_resamples=100), TypeError, "correct"),
        (lambda m, x, y: accuracy_curve_ci(np.ones((2, 3), bool), n_resamples=5), ValueError, "n_resamples"),
    ],
)
def test_bad_arguments_fail_fast_naming_the_parameter(trained, sample, call, error, param):
    images, labels = sample
    with pytest.raises(error, match=param) as info:
        call(trained.model, images[:3], labels[:3])
    assert "\n" not in str(info.value)


# ---- The study helpers -------------------------------------------------------------------------------------


def test_robustness_study_attacks_defended_models_twice_and_pairs_images(trained, sample):
    images, labels = sample[0][:12], sample[1][:12]
    keras.utils.set_random_seed(0)
    blurred = build_model("small_cnn", input_shape=images.shape[1:], num_classes=10, defence="median:3")
    study = robustness_study({"none": trained.model, "median:3": blurred}, images, labels, budgets=[0.0, 1.0, 3.0], steps=3, noise_draws=2)
    assert set(study.attacks["none"]) == {"exact"} and set(study.attacks["median:3"]) == {"exact", "BPDA"}
    worst = study.worst("median:3")
    np.testing.assert_array_equal(worst, study.attacks["median:3"]["exact"].correct & study.attacks["median:3"]["BPDA"].correct)
    assert set(study.noise) == {"none", "median:3"} and study.noise["none"].correct.shape == (3, 12)


def test_models_under_test_names_each_role_once():
    roles = models_under_test(["none", "gaussian:1.5", "gaussian:3", "median:3"], {"best_gaussian": "gaussian:1.5", "best_median": "median:3"})
    assert list(roles) == ["none", "gaussian:1.5", "median:3"]
    assert roles["gaussian:1.5"] == "the paper's choice; best Gaussian on validation"
    assert list(models_under_test(["none", "gaussian:2"], {"best_gaussian": "gaussian:2", "best_median": None})) == ["none", "gaussian:2"]


def test_transfer_rates_and_input_gradient(trained, correct_subset):
    images, labels, targets = correct_subset
    assert transfer_rates(trained.model, labels[:20], images[:20], targets[:20]) == {"still_target": 0.0, "correct": 1.0}
    grad = input_gradient(trained.model, images[:3], labels[:3])
    assert grad.shape == images[:3].shape and np.isfinite(grad).all() and (np.abs(grad).reshape(3, -1).max(axis=1) > 0).all()


def test_gradient_reach_counts_add_up_and_the_gaussian_moves_everything():
    from helpers.attacks.adaptive import gradient_reach

    keras.utils.set_random_seed(0)
    images = np.zeros((3, 12, 12, 1), np.float32)
    images[:, 3:9, 5:7] = 1.0  # a stroke on a background of exact zeros, like a digit
    targets = np.array([1, 2, 3])
    median = gradient_reach(build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence="median:3"), images, targets)
    gauss = gradient_reach(build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence="gaussian:1.5"), images, targets)
    for counts in (median, gauss):
        np.testing.assert_array_equal(counts["clipped"] + counts["inert"] + counts["moves"], counts["nonzero"])
    assert (gauss["inert"] == 0).all() and (gauss["nonzero"] == 144).all()  # a linear filter: every step shows
    assert (median["inert"] > 0).any()  # ties at zero: steps the median swallows
    with pytest.raises(ValueError, match="model"):
        gradient_reach(build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10), images, targets)
