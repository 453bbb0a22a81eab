"""One contract for every attack: each registered attack (and PGD, which chapter 6 runs on every digit) is checked
for the same promises, and a throw-away attack registered here appears in chapter 5's and chapter 6's studies.

The promises: a fixed-budget attack stays in the ε-ball and the pixel range, reports at ε = 0 the clean accuracy and
as broken only images whose returned point the model misclassifies; a minimum-norm attack reports as reached only
targets the model predicts on the returned point, at the distance it reports; both give the same result twice with
the same seed, and fail on a bad argument with a one-line error naming it.
"""

import keras
import numpy as np
import pytest

from helpers.attacks import registry
from helpers.attacks.adaptive import bpda_model, pgd_l2
from helpers.attacks.registry import ATTACKS, AttackSpec, attacks_of, register_attack, unregister_attack
from helpers.core.contract import RobustnessResult, l2_distances
from helpers.core.engine import predict_logits
from helpers.studies import adaptive_study, results, scores
from helpers.studies.cascade import cascade, cascade_flags
from helpers.training.models import build_model

BUDGETS = [0.0, 0.5, 2.0]
FIXED = {"steps": 5, "restarts": 2, "square_queries": 20, "seed": 0}
MIN_NORM = {"step": 0.1, "max_steps": 40, "minnorm_steps": 20}


def _pgd(model, images, labels, *, budgets, settings):
    return pgd_l2(model, images, labels, budgets=budgets, steps=settings["steps"])


# Every registered attack, and PGD-L2 (chapter 6's all-digit curves; not one of the strong attacks of the registry).
SUBJECTS = {**ATTACKS, "PGD exact": AttackSpec("PGD exact", "PGD", "fixed_budget", "exact", _pgd)}
FIXED_BUDGET = [name for name, spec in SUBJECTS.items() if spec.kind == "fixed_budget"]
MINIMUM_NORM = [name for name, spec in SUBJECTS.items() if spec.kind == "minimum_norm"]


@pytest.fixture(scope="module")
def defended():
    """An untrained small CNN behind a 3×3 median on 12×12 images (so that a BPDA view exists), six random images
    with the model's own predictions as labels (all correct at ε = 0) and random other targets."""
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence="median:3")
    x = np.random.default_rng(0).random((6, 12, 12, 1)).astype(np.float32)
    labels = predict_logits(model, x).argmax(axis=1)
    targets = (labels + 1 + np.arange(6) % 9) % 10
    return model, x, labels, targets


def _view(spec, model):
    return bpda_model(model) if spec.gradient == "BPDA" else model


def _run(name, defended, **changes):
    spec = SUBJECTS[name]
    model, x, labels, targets = defended
    if spec.kind == "fixed_budget":
        return spec.run(_view(spec, model), x, labels, budgets=changes.pop("budgets", BUDGETS), settings=FIXED | changes)
    return spec.run(_view(spec, model), x, labels, targets, settings=MIN_NORM | changes)


@pytest.fixture(scope="module")
def outcomes(defended):
    return {name: _run(name, defended) for name in SUBJECTS}


@pytest.mark.parametrize("name", FIXED_BUDGET)
def test_a_fixed_budget_attack_stays_in_the_ball_and_reports_what_the_model_sees(name, defended, outcomes):
    model, x, labels, _ = defended
    result = outcomes[name]
    assert isinstance(result, RobustnessResult)
    b, n = len(BUDGETS), len(x)
    assert result.correct.shape == result.success.shape == result.l2.shape == (b, n)
    assert result.adversarial.shape == (b, n, *x.shape[1:]) and result.gradient_norm.shape == (n,)
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
    assert (result.l2 <= np.array(BUDGETS)[:, None] * (1 + 1e-5) + 1e-6).all()
    np.testing.assert_allclose(result.l2, l2_distances(result.adversarial, x[None], batch_dims=2))
    np.testing.assert_array_equal(result.correct[0], True)  # the labels are the model's own predictions
    predicted = predict_logits(model, result.adversarial.reshape(b * n, *x.shape[1:])).argmax(axis=1).reshape(b, n)
    assert (predicted[~result.correct] != np.broadcast_to(labels, (b, n))[~result.correct]).all()  # broken: misclassified
    np.testing.assert_array_equal(result.success, ~result.correct)


@pytest.mark.parametrize("name", MINIMUM_NORM)
def test_a_minimum_norm_attack_reaches_its_target_or_reports_failure(name, defended, outcomes):
    model, x, _, targets = defended
    result = outcomes[name]
    success, l2 = np.asarray(result.success), np.asarray(result.l2)
    assert success.shape == l2.shape == (len(x),) and success.dtype == bool
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
    predicted = predict_logits(model, result.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(predicted[success], targets[success])
    np.testing.assert_allclose(l2, l2_distances(result.adversarial, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_the_same_seed_gives_the_same_result(name, defended, outcomes):
    again = _run(name, defended)
    np.testing.assert_array_equal(again.adversarial, outcomes[name].adversarial)
    np.testing.assert_array_equal(again.success, outcomes[name].success)


@pytest.mark.parametrize("name", list(SUBJECTS))
@pytest.mark.parametrize("bad, param", [("images", "images"), ("labels", "labels"), ("targets_or_budgets", None)])
def test_a_bad_argument_fails_in_one_line_naming_it(name, bad, param, defended):
    spec = SUBJECTS[name]
    model, x, labels, targets = defended
    view = _view(spec, model)
    images, answers = (x * 3 if bad == "images" else x), (labels + 10 if bad == "labels" else labels)
    if spec.kind == "fixed_budget":
        budgets = [-1.0] if bad == "targets_or_budgets" else BUDGETS
        call, param = (lambda: spec.run(view, images, answers, budgets=budgets, settings=FIXED)), param or "budgets"
    else:
        aims = targets + 10 if bad == "targets_or_budgets" else targets
        call, param = (lambda: spec.run(view, images, answers, aims, settings=MIN_NORM)), param or "targets"
    if bad == "labels" and spec.kind == "minimum_norm" and spec.family == "paper":
        return  # the paper's attack takes only targets: there is no label to check
    with pytest.raises((ValueError, TypeError), match=param) as info:
        call()
    assert "\n" not in str(info.value)


def test_the_registry_holds_the_books_attacks_in_table_order():
    assert [s.name for s in attacks_of("minimum_norm")] == ["paper", "paper_bpda", "minimum_norm"]
    assert [s.name for s in attacks_of("fixed_budget")] == ["APGD-CE exact", "APGD-DLR exact", "APGD-T exact", "APGD-CE BPDA",
                                                           "APGD-DLR BPDA", "Square"]
    assert [s.name for s in attacks_of("fixed_budget", gradient_free=True)] == ["Square"]
    assert registry.exact_twin(ATTACKS["paper_bpda"]) == "paper" and registry.exact_twin(ATTACKS["paper"]) is None
    assert results.MIN_NORM_IMAGES.column_names[6:] == ["l2_paper", "l2_paper_bpda", "l2_minimum_norm", "l2_strongest"]


@pytest.mark.parametrize("spec, error, match", [
    (AttackSpec("x", "x", "sometimes", "exact", print), ValueError, "kind"),
    (AttackSpec("x", "x", "fixed_budget", "guessed", print), ValueError, "gradient"),
    (AttackSpec("x", "x", "fixed_budget", "exact", None), TypeError, "run"),
    (AttackSpec("a,b", "x", "fixed_budget", "exact", print), ValueError, "name"),
    (AttackSpec("Square", "x", "fixed_budget", "none", print), ValueError, "already registered"),
])
def test_a_bad_registration_fails_in_one_line(spec, error, match):
    with pytest.raises(error, match=match) as info:
        register_attack(spec)
    assert "\n" not in str(info.value)


# ---- A throw-away attack reaches both studies without editing another file ----------------------------------


def _nudge(model, images, labels, *, budgets, settings):
    """Fixed budget, gradient-free: one move of length ε along a fixed random direction."""
    direction = np.random.default_rng(settings["seed"]).standard_normal(images.shape).astype(np.float32)
    unit = direction / np.linalg.norm(direction.reshape(len(images), -1), axis=1).reshape(-1, 1, 1, 1)
    points = np.stack([np.clip(images + eps * unit, 0, 1) for eps in budgets]).astype(np.float32)
    b, n = points.shape[:2]
    correct = predict_logits(model, points.reshape(b * n, *images.shape[1:])).argmax(axis=1).reshape(b, n) == labels
    return RobustnessResult(budgets=np.asarray(budgets, float), correct=correct, success=~correct, adversarial=points,
                            l2=l2_distances(points, images[None], batch_dims=2), gradient_norm=np.full(n, np.nan))


def _farthest(model, images, labels, targets, *, settings):
    """Minimum norm: the paper's attack with twice its step."""
    from helpers.attacks.attack import targeted_attack

    return targeted_attack(model, images, targets, step=2 * settings["step"], max_steps=settings["max_steps"], progress=False)


@pytest.fixture
def throwaway():
    specs = [register_attack(AttackSpec("nudge", "a fixed random nudge", "fixed_budget", "none", _nudge)),
             register_attack(AttackSpec("long_step", "the paper's attack, double step", "minimum_norm", "exact", _farthest))]
    try:
        yield specs
    finally:
        for spec in specs:
            unregister_attack(spec.name)


def test_a_registered_attack_appears_in_chapter_6s_study(throwaway, defended):
    model, x, labels, _ = defended
    found = cascade(model, x, labels, budgets=BUDGETS, after_pgd=np.ones((len(BUDGETS), len(x)), bool),
                    settings={"steps": 2, "restarts": 1, "square_queries": 5, "seed": 0})
    assert list(found.broke)[-2:] == ["Square", "nudge"]
    flags = cascade_flags({0: found})
    assert "nudge" in flags
    # Gradient-free, like Square: in the worst case, out of the gradient worst case.
    np.testing.assert_array_equal(flags["gradient worst"][0], found.after(found.last_gradient_attack()))
    np.testing.assert_array_equal(found.gradient_free_breaks(), found.broke["Square"] | found.broke["nudge"])
    rows = adaptive_study.curve_rows(model="m", label="m", images="strong subset", budgets=BUDGETS, curves=flags, n_resamples=20)
    assert "nudge" in {r["attack"] for r in rows}


def test_a_registered_attack_appears_in_chapter_5s_study(throwaway, defended):
    model, x, labels, targets = defended
    distances = scores.attack_distances(model, x, labels, targets, step=0.1, max_steps=20, minnorm_steps=5)
    assert list(distances) == ["paper", "paper_bpda", "minimum_norm", "long_step", "filtered_input"]
    assert scores.ATTACKS[-1] == "long_step" and "long_step" in scores.MEASURES["strongest"]
    assert scores.ATTACK_LABELS["long_step"] == "the paper's attack, double step"
    study = scores.DistanceStudy(indices=np.arange(len(x)), labels=labels, targets=targets)
    study.models[("median:3", 0)] = scores.ModelDistances("median:3", 0, "m.keras", np.ones(10, bool), distances)
    rows = scores.min_norm_image_rows(study)
    assert "l2_long_step" in rows[0] and "l2_long_step" in results.MIN_NORM_IMAGES.column_names
    assert [r["attack"] for r in scores.min_norm_rows(study, n_resamples=20)][-2:] == ["long_step", "strongest"]


def test_a_later_run_only_adds_the_breaks_it_found():
    def result(correct, fill):
        correct = np.asarray(correct, bool)
        b, n = correct.shape
        return RobustnessResult(budgets=np.zeros(b), correct=correct.copy(), success=~correct,
                                adversarial=np.full((b, n, 1, 1, 1), fill, np.float32), l2=np.full((b, n), fill), gradient_norm=np.zeros(n))

    found = result([[1, 1, 1, 1], [1, 0, 1, 1]], 0.0)
    again = result([[0, 1]], 7.0)  # a rerun on digits 2 and 3 at budget row 1: it broke digit 2 only
    found.take_breaks(1, np.array([2, 3]), again)
    assert found.correct.tolist() == [[True] * 4, [True, False, False, True]]
    assert found.success.tolist() == [[False] * 4, [False, True, True, False]]
    assert found.l2[1].tolist() == [0.0, 0.0, 7.0, 0.0] and found.adversarial[1, 2, 0, 0, 0] == 7.0
