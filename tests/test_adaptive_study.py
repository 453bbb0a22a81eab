"""Chapter 6's adaptive study: the registered strong attacks as a cascade on real models, the C6 statistic, Holm, and the
transfer controls."""

import numpy as np
import pytest

from helpers.book.profiles import PROFILES, check_declared
from helpers.defences.filters import Defence
from helpers.studies import results
from helpers.studies.adaptive_study import (
    check_strong_budgets,
    curve_rows,
    holm,
    margin_attack,
    noise_like,
    paired_gains,
    pooled_curve,
    robust_share,
    robustness_image_rows,
    transfer_accuracy,
    zero_gradient_count,
)
from helpers.studies.cascade import cascade, doubled_effort
from helpers.studies.evaluate import predict_logits


def test_holm_matches_the_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 → ×3, ×2, ×1 = 0.03, 0.06, 0.04 → running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    with pytest.raises(ValueError, match="p_values"):
        holm([0.1, 1.5])


def test_robust_share_is_the_mean_over_the_budgets_up_to_the_limit():
    correct = np.array([[True, True, True], [True, False, True], [False, False, True], [False, False, False]])
    assert robust_share(correct, [0, 1, 2, 4], up_to=2).tolist() == [0.5, 0.0, 1.0]  # ε = 0 and ε = 4 left out
    with pytest.raises(ValueError, match="up_to"):
        robust_share(correct, [0, 1, 2, 4], up_to=0.5)


def test_paired_gains_effect_interval_and_multiplicity():
    rng = np.random.default_rng(0)
    base = rng.random((3, 200))
    same = {"none": base, "copy": base.copy()}
    gain = paired_gains(same, reference="none", n_resamples=300)["copy"]
    assert gain.effect == 0 and gain.low <= 0 <= gain.high and gain.p_value > 0.5
    # A model 0.2 better on every image: the pairing removes the image-to-image spread entirely.
    better = paired_gains({"none": base[:1], "up": base[:1] + 0.2}, reference="none", n_resamples=300)["up"]
    assert better.low == pytest.approx(0.2) and better.high == pytest.approx(0.2) and better.p_value < 0.01
    # More models compared → wider (family-wise) intervals and larger adjusted p-values for the same data.
    noisy = base + rng.normal(0.05, 0.2, base.shape)
    one = paired_gains({"none": base, "a": noisy}, reference="none", n_resamples=500)["a"]
    three = paired_gains({"none": base, "a": noisy, "b": base, "c": base}, reference="none", n_resamples=500)["a"]
    assert three.low <= one.low and three.high >= one.high and three.p_holm >= one.p_holm
    with pytest.raises(ValueError, match="same images"):
        paired_gains({"none": base, "a": base[:, :10]}, reference="none")
    with pytest.raises(ValueError, match="reference"):
        paired_gains({"a": base}, reference="none")


def test_pooled_curve_of_one_seed_is_the_plain_accuracy():
    flags = np.random.default_rng(1).random((1, 3, 50)) > 0.5
    accuracy, low, high = pooled_curve(flags, n_resamples=200)
    assert np.allclose(accuracy, flags[0].mean(axis=1)) and np.all(low <= accuracy) and np.all(accuracy <= high)


def test_strong_budgets_must_be_positive_and_on_the_pgd_grid():
    assert check_strong_budgets([1.0, 2.0], [0, 0.5, 1, 2]).tolist() == [1.0, 2.0]
    for bad in ([1.5], [0.0, 1.0], [2.0, 1.0]):
        with pytest.raises(ValueError, match="strong_budgets"):
            check_strong_budgets(bad, [0, 0.5, 1, 2])
    with pytest.raises(ValueError, match="^strong_budgets: .*not in budgets"):
        check_declared(PROFILES["default"] | {"strong_budgets": [0.7]})


def _suite(model, images, labels, budgets, **settings):
    """The registered strong attacks as chapter 6 runs them, from the clean digits (no PGD before them)."""
    clean = predict_logits(model, images).argmax(axis=1) == labels
    return cascade(model, images, labels, budgets=budgets, after_pgd=np.repeat(clean[None], len(budgets), axis=0),
                   settings={"seed": 0, **settings}), clean


@pytest.fixture(scope="module")
def strong_on_median(mnist, model_cache, first_test_digits):
    from helpers.training.train import train_model

    model = train_model("small_cnn", mnist, defence="median:3", epochs=1, cache_dir=model_cache, verbose=0)
    images, labels = first_test_digits
    found, clean = _suite(model, images[:8], labels[:8], [0.0, 1.0, 3.0], steps=10, restarts=2, square_queries=50)
    return model, images[:8], labels[:8], found, clean


def test_strong_attacks_run_both_losses_both_gradients_targeted_apgd_and_square(strong_on_median):
    _, _, _, found, clean = strong_on_median
    assert list(found.broke) == ["APGD-CE exact", "APGD-DLR exact", "APGD-T exact", "APGD-CE BPDA", "APGD-DLR BPDA", "Square"]
    assert np.array_equal(found.worst[0], clean)  # ε = 0 is the clean accuracy
    assert np.all(found.worst <= found.after("APGD-CE exact"))  # the worst case is never above any attack
    assert found.worst[2].mean() < clean.mean()  # ε = 3 breaks digits


def test_strong_attacks_on_an_undefended_model_have_no_bpda(trained, first_test_digits):
    images, labels = first_test_digits
    found, _ = _suite(trained.model, images[:4], labels[:4], [0.0, 1.0], steps=3, restarts=1, square_queries=5)
    assert list(found.broke) == ["APGD-CE exact", "APGD-DLR exact", "APGD-T exact", "Square"]


def test_margin_attack_goes_past_the_boundary(trained, correct_subset):
    images, labels, targets = correct_subset
    moved, reached = margin_attack(trained.model, images[:10], targets[:10], margin=3.0, step=0.1, max_steps=500)
    logits = predict_logits(trained.model, moved)
    margin = logits[np.arange(10), targets[:10]] - np.max(np.where(np.eye(10)[targets[:10]] > 0, -np.inf, logits), axis=1)
    assert reached.all() and np.all(margin >= 3.0 - 1e-3)  # the engine judged the same logits (float32 rounding)
    assert moved.min() >= 0 and moved.max() <= 1
    with pytest.raises(ValueError, match="margin"):
        margin_attack(trained.model, images[:2], targets[:2], margin=-1.0)


def test_noise_like_has_the_attacks_norm(first_test_digits):
    images = first_test_digits[0][:5]
    adversarial = np.clip(images + np.random.default_rng(0).normal(0, 0.05, images.shape).astype(np.float32), 0, 1)
    noisy = noise_like(images, adversarial, seed=0)
    size = np.linalg.norm((adversarial - images).reshape(5, -1), axis=1)
    moved = np.linalg.norm((noisy - adversarial).reshape(5, -1), axis=1)
    assert np.allclose(moved, size, rtol=1e-3) and noisy.min() >= 0 and noisy.max() <= 1  # bisection to 2⁻³⁰ of the bracket


def test_zero_gradient_count_counts_every_view_and_point(strong_on_median):
    model, images, labels, _, _ = strong_on_median
    zeros, tried = zero_gradient_count(model, images, labels, radius=1.0, draws=2)
    assert tried == len(images) * 3 * 2 and 0 <= zeros <= tried  # clean + 2 random points, exact + BPDA


def test_rows_fit_the_results_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    flags = np.array([[True, True, False], [True, False, False]])
    rows = curve_rows(model="gaussian:1", label=Defence.parse("gaussian:1").label, images="all", budgets=[0, 1],
                      curves={"worst": {0: flags, 1: flags}}, n_resamples=50)
    assert {r["seed"] for r in rows} == {"0", "1", "all"} and len(rows) == 3 * 2
    results.ROBUSTNESS.write(rows)
    back = results.ROBUSTNESS.read()
    assert back[1]["accuracy"] == pytest.approx(1 / 3) and back[-1]["n"] == 6
    per_image = robustness_image_rows(model="none", seed=0, model_file="data/models/x.keras", test_index=np.array([7, 3, 9]),
                           labels=np.array([1, 2, 3]), budgets=[0, 1], correct=flags, evaluation="PGD worst case")
    results.ROBUSTNESS_IMAGES.write(per_image)
    assert [(r["test_index"], r["broken"]) for r in results.ROBUSTNESS_IMAGES.read()] == [(7, False), (3, True), (9, True)]


def test_doubled_effort_reruns_the_variant_that_broke_most_on_what_the_cascade_left(strong_on_median):
    model, images, labels, found, clean = strong_on_median
    name, usual, doubled = doubled_effort(model, found, images, labels, steps=10, restarts=2, seed=0)
    assert name.startswith("APGD") and int(found.broke[name].sum()) == max(int(b.sum()) for n, b in found.broke.items() if n.startswith("APGD"))
    assert usual.tolist() == found.worst.mean(axis=1).tolist() and doubled[0] == usual[0] == clean.mean()
    assert np.all(doubled <= usual)  # it only reruns what was left: it can break more, never less


def test_transfer_accuracy_counts_only_clean_correct_digits(trained, first_test_digits):
    images, labels = first_test_digits
    stacked = np.stack([images[:10], images[:10]])
    clean = predict_logits(trained.model, images[:10]).argmax(axis=1) == labels[:10]
    assert transfer_accuracy(trained.model, stacked, labels[:10], clean).tolist() == [clean.mean()] * 2
    assert transfer_accuracy(trained.model, stacked, labels[:10], np.zeros(10, bool)).tolist() == [0.0, 0.0]
