"""APGD-L2: its contract, its strength against PGD-L2 and against ART's / Foolbox's attacks on the same images."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.attacks.adaptive import bpda_model, pgd_l2
from helpers.attacks.apgd import _loss, apgd_l2, apgd_targeted_l2, checkpoints
from helpers.bench.reference_attacks import _quiet_import_and_build, library_versions
from helpers.studies.evaluate import predict_logits
from helpers.training.models import build_model

BUDGETS = [0.0, 1.0, 2.0, 4.0]
N_IMAGES = 40  # one image = 2.5 points of accuracy
STEPS = 100  # the paper's budget (Croce & Hein 2020)
RESTARTS = 5


@pytest.fixture(scope="module")
def sample(first_test_digits):
    images, labels = first_test_digits
    return images[:N_IMAGES], labels[:N_IMAGES]


@pytest.fixture(scope="module")
def ours(trained, sample):
    return apgd_l2(trained.model, *sample, budgets=BUDGETS, steps=STEPS, restarts=RESTARTS)


@pytest.fixture(scope="module")
def untrained():
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", input_shape=(8, 8, 1), num_classes=10)
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
    return model, x, predict_logits(model, x).argmax(axis=1)


def _fresh_correct(model, result, labels):
    """(B, N) "the model still predicts the label on the returned point", by a new forward pass."""
    b, n = result.correct.shape
    predicted = predict_logits(model, result.adversarial.reshape(b * n, *result.adversarial.shape[2:])).argmax(axis=1)
    return predicted.reshape(b, n) == labels


# ---- On a trained model (the promises every attack keeps are tests/test_attack_contract.py) ---------------


def test_accuracy_never_rises_with_the_budget_and_a_large_budget_breaks_all(ours):
    assert (np.diff(ours.accuracy) <= 0).all()
    assert ours.accuracy[-1] == 0.0  # ε = 4 is half the norm of a typical digit


def test_at_least_as_strong_as_pgd_with_the_same_steps(trained, sample, ours):
    pgd = pgd_l2(trained.model, *sample, budgets=BUDGETS, steps=STEPS)
    assert (ours.accuracy <= pgd.accuracy + 1 / N_IMAGES + 1e-12).all()


def test_more_restarts_never_make_it_weaker(trained, sample, ours):
    one = apgd_l2(trained.model, *sample, budgets=BUDGETS, steps=STEPS, restarts=1)
    # Restart 0 draws the same start either way, so every image broken by one restart is broken by five, up to
    # the float drift of a different batch layout (one boundary image per budget at most).
    assert ((ours.correct & ~one.correct).sum(axis=1) <= 1).all()
    assert (ours.accuracy <= one.accuracy).all()


def test_dlr_loss_breaks_the_model_too(trained, sample):
    images, labels = sample
    result = apgd_l2(trained.model, images[:20], labels[:20], budgets=[0.0, 4.0], steps=STEPS, restarts=1, loss="dlr")
    np.testing.assert_array_equal(result.correct, _fresh_correct(trained.model, result, labels[:20]) & result.correct[0])
    assert result.accuracy[1] == 0.0


# ---- Defended models: exact gradient and BPDA ---------------------------------------------------------------


@pytest.fixture(scope="module")
def median_model(model_cache):
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached

    digits = load_dataset("digits")
    model = fit_cached("small_cnn", digits, defence="median:3", epochs=5, cache_dir=model_cache, verbose=0).model
    return model, digits.x_test[:30], digits.y_test[:30]


def test_works_on_a_bpda_view_of_a_median_filtered_model(median_model):
    model, images, labels = median_model
    budgets = [0.0, 1.0, 3.0]
    exact = apgd_l2(model, images, labels, budgets=budgets, steps=50, restarts=2)
    bpda = apgd_l2(bpda_model(model), images, labels, budgets=budgets, steps=50, restarts=2)
    for result in (exact, bpda):  # judged by the defended model itself (BPDA changes only the gradient)
        np.testing.assert_array_equal(result.correct, _fresh_correct(model, result, labels) & result.correct[0])
        assert np.isfinite(result.l2).all()
    assert bpda.accuracy[-1] <= 0.1
    assert bpda.accuracy[-1] < bpda.accuracy[0]


# ---- The schedule, the loss, the engine ---------------------------------------------------------------------


def test_checkpoints_follow_the_papers_schedule():
    windows = checkpoints(100)
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, section 3.2), times 100.
    np.testing.assert_array_equal(np.flatnonzero(windows) + 1, [22, 41, 57, 70, 80, 87, 93, 99])
    np.testing.assert_array_equal(windows[windows > 0], [22, 19, 16, 13, 10, 7, 6, 6])
    assert checkpoints(1).tolist() == [1]


def test_dlr_is_the_scale_free_margin():
    logits = tf.constant([[3.0, 1.0, 0.0, -2.0], [0.5, 2.5, 1.0, 0.0]])
    labels = tf.constant([0, 0])
    # Row 0: z_y = 3 is the largest, next 1, third 0: −(3 − 1)/(3 − 0). Row 1: −(0.5 − 2.5)/(2.5 − 0.5).
    expected = np.array([-2.0 / 3.0, 1.0])
    np.testing.assert_allclose(_loss(logits, labels, labels, "dlr").numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(_loss(7.0 * logits - 3.0, labels, labels, "dlr").numpy(), expected, rtol=1e-6)


def test_targeted_dlr_is_the_scale_free_margin_to_the_target():
    logits = tf.constant([[3.0, 1.0, 0.0, -2.0], [0.5, 2.5, 1.0, 0.0]])
    labels, targets = tf.constant([0, 0]), tf.constant([3, 2])
    # Sorted: (3, 1, 0, −2) and (2.5, 1, 0.5, 0). Row 0: −(3 − (−2))/(3 − (0 − 2)/2). Row 1: −(0.5 − 1)/(2.5 − 0.25).
    expected = np.array([-5.0 / 4.0, 0.5 / 2.25])
    np.testing.assert_allclose(_loss(logits, labels, targets, "dlr_targeted").numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(_loss(7.0 * logits - 3.0, labels, targets, "dlr_targeted").numpy(), expected, rtol=1e-6)
    # Three classes have no z_π4: the scale is z_π1 − z_π3, the untargeted DLR's.
    three = tf.constant([[3.0, 1.0, 0.0]])
    np.testing.assert_allclose(_loss(three, tf.constant([0]), tf.constant([2]), "dlr_targeted").numpy(), [-1.0], rtol=1e-6)


def test_targeted_apgd_breaks_what_it_reports_and_each_target_only_adds(trained, sample):
    images, labels = sample[0][:20], sample[1][:20]
    one = apgd_targeted_l2(trained.model, images, labels, budgets=[0.0, 1.0, 4.0], steps=20, targets=1)
    three = apgd_targeted_l2(trained.model, images, labels, budgets=[0.0, 1.0, 4.0], steps=20, targets=3)
    # Broken means the label changed: the adversarials say so when judged afresh, and they stay in the ball.
    np.testing.assert_array_equal(three.correct, _fresh_correct(trained.model, three, labels) & three.correct[0])
    assert (three.l2 <= np.asarray([0.0, 1.0, 4.0])[:, None] + 1e-4).all()
    # The first target runs the same way in both; later targets only attack what it left correct.
    assert not (three.correct & ~one.correct).any()
    assert three.accuracy[2] == 0.0


def test_targeted_apgd_checks_its_targets(untrained):
    model, x, labels = untrained
    with pytest.raises(ValueError, match="targets"):
        apgd_targeted_l2(model, x, labels, budgets=[1.0], targets=10)
    with pytest.raises(ValueError, match="targets"):
        apgd_l2(model, x, labels, budgets=[1.0], loss="dlr_targeted")
    with pytest.raises(ValueError, match="targets"):
        apgd_l2(model, x, labels, budgets=[1.0], loss="dlr_targeted", targets=labels)
    with pytest.raises(ValueError, match="targets"):
        apgd_l2(model, x, labels, budgets=[1.0], loss="dlr", targets=(labels + 1) % 10)


def test_batch_size_and_zero_gradients_do_not_change_or_break_results(untrained):
    model, x, labels = untrained
    whole = apgd_l2(model, x, labels, budgets=[0.0, 0.5, 2.0], steps=10, restarts=3)
    split = apgd_l2(model, x, labels, budgets=[0.0, 0.5, 2.0], steps=10, restarts=3, batch_size=3)  # one group per call
    # Float sums differ with the batch width (about 1e-7 per pixel here), so an image right at the boundary
    # may flip: allow one per budget; where the flags agree the points agree up to that drift along 10 steps.
    assert ((whole.correct != split.correct).sum(axis=1) <= 1).all()
    agree = (whole.correct == split.correct).all(axis=0)
    np.testing.assert_allclose(whole.adversarial[:, agree], split.adversarial[:, agree], atol=5e-3)
    flat = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, kernel_initializer="zeros")])
    stuck = apgd_l2(flat, x, np.zeros(len(x), int), budgets=[0.0, 1.0], steps=5, restarts=2)
    assert np.isfinite(stuck.adversarial).all() and (stuck.gradient_norm == 0).all()


@pytest.mark.parametrize(
    "kwargs, error, param",
    [
        ({"budgets": []}, TypeError, "budgets"),
        ({"budgets": [1.0], "steps": 0}, ValueError, "steps"),
        ({"budgets": [1.0], "restarts": 0}, ValueError, "restarts"),
        ({"budgets": [1.0], "loss": "hinge"}, ValueError, "loss"),
        ({"budgets": [1.0], "seed": -1}, ValueError, "seed"),
        ({"budgets": [1.0], "batch_size": 2.5}, TypeError, "batch_size"),
    ],
)
def test_bad_arguments_fail_fast_naming_the_parameter(untrained, kwargs, error, param):
    model, x, labels = untrained
    with pytest.raises(error, match=param) as info:
        apgd_l2(model, x, labels, **kwargs)
    assert "\n" not in str(info.value)


def test_dlr_needs_three_classes():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="loss"):
        apgd_l2(model, np.zeros((2, 8, 8, 1), np.float32), [0, 1], budgets=[1.0], loss="dlr")
    with pytest.raises(ValueError, match="model"):
        apgd_targeted_l2(model, np.zeros((2, 8, 8, 1), np.float32), [0, 1], budgets=[1.0], targets=1)


# ---- Independent strong attacks on a quick-profile model (ART, Foolbox; not installed in CI) ------------------

REFERENCE_BUDGETS = [1.0, 2.0]  # the middle of the curve, where attacks differ
N_REFERENCE = 50  # one image = 2 points


@pytest.fixture(scope="module")
def quick(mnist, model_cache):
    """small_cnn trained for the quick profile's 2 epochs, 50 test digits and our APGD on them."""
    from helpers.training.train import fit_cached

    model = fit_cached("small_cnn", mnist, epochs=2, cache_dir=model_cache, verbose=0).model
    images, labels = mnist.x_test[:N_REFERENCE], mnist.y_test[:N_REFERENCE]
    return model, images, labels, apgd_l2(model, images, labels, budgets=REFERENCE_BUDGETS, steps=STEPS, restarts=RESTARTS)


@pytest.mark.skipif(library_versions()["art"] is None, reason="ART is not installed (requirements-bench.txt)")
@pytest.mark.slow
def test_art_apgd_is_not_stronger_by_more_than_two_points(quick):

    model, images, labels, result = quick

    def build():
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier

        return AutoProjectedGradientDescent, TensorFlowV2Classifier

    AutoProjectedGradientDescent, TensorFlowV2Classifier = _quiet_import_and_build(build)  # noqa: N806
    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=images.shape[1:], clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for k, eps in enumerate(REFERENCE_BUDGETS):
        # ART starts η at eps_step; the paper (and our engine) at 2ε.
        attack = AutoProjectedGradientDescent(
            classifier, norm=2, eps=eps, eps_step=2 * eps, max_iter=STEPS, targeted=False, nb_random_init=RESTARTS,
            batch_size=N_REFERENCE, loss_type="cross_entropy", verbose=False,
        )
        adversarial = attack.generate(images, y=np.eye(10)[labels])
        theirs = float((predict_logits(model, adversarial).argmax(axis=1) == labels).mean())
        assert theirs >= result.accuracy[k] - 0.02, f"ε = {eps}: ART {theirs:.2f}, ours {result.accuracy[k]:.2f}"


@pytest.mark.skipif(library_versions()["foolbox"] is None, reason="Foolbox is not installed (requirements-bench.txt)")
@pytest.mark.slow
def test_foolbox_pgd_with_restarts_is_not_stronger_by_more_than_two_points(quick):
    import foolbox as fb

    model, images, labels, result = quick
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmodel = fb.TensorFlowModel(model, bounds=(0.0, 1.0))
    attack = fb.attacks.L2PGD(steps=STEPS, rel_stepsize=2.5 / STEPS, random_start=True)
    broken = np.zeros((len(REFERENCE_BUDGETS), len(images)), dtype=bool)
    for restart in range(RESTARTS):
        tf.random.set_seed(restart)
        _, _, success = attack(fmodel, tf.constant(images), tf.constant(labels.astype(np.int64)), epsilons=REFERENCE_BUDGETS)
        broken |= success.numpy()
    theirs = 1.0 - broken.mean(axis=1)
    assert (theirs >= result.accuracy - 0.02).all(), f"Foolbox {theirs}, ours {result.accuracy}"
