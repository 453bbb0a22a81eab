"""Chapter 7's loops as functions and its figures: small arrays and a tiny untrained model, no training."""

from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest

from helpers.book.comparison_figures import comparison_figure, smoothing_figure
from helpers.studies.adaptive_study import Gain
from helpers.studies.trusted import (
    compared_rows,
    comparison_rows,
    seed_mean_accuracy,
    trusted_clean_flags,
    trusted_image_rows,
    violation_sentence,
)
from helpers.studies.verdicts import Alternative


def test_trusted_clean_accuracy_of_plain_and_smoothed_models():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((8, 4, 4, 1)).astype(np.float32)
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    plain = trusted_clean_flags([model, model], x, predicted, sigma=None, n0=10, seed=0)
    assert plain.shape == (2, 8) and plain.all() and seed_mean_accuracy(plain) == 1.0
    smoothed = trusted_clean_flags([model], x, predicted, sigma=0.25, n0=20, seed=0)
    assert smoothed.shape == (1, 8) and 0.0 <= seed_mean_accuracy(smoothed) <= 1.0
    assert seed_mean_accuracy(np.array([[True, False], [True, True]])) == 0.75


def test_trusted_image_rows_one_row_per_measure_budget_and_digit():
    rows = trusted_image_rows(method="AT", parameter="pgd:2", seed=1, model_file="f", test_index=np.array([9, 4]),
                              labels=np.array([3, 5]), budgets=[0.0, 1.0],
                              measures={"attacked": np.array([[1, 1], [0, 1]], bool), "certified": np.zeros((2, 2), bool)})
    assert len(rows) == 8
    assert [(r["measure"], r["budget"], r["test_index"], r["robust"]) for r in rows[:4]] == [
        ("attacked", 0.0, 9, True), ("attacked", 0.0, 4, True), ("attacked", 1.0, 9, False), ("attacked", 1.0, 4, True)]


def test_violation_sentence():
    assert violation_sentence({"a": np.zeros(3)}).startswith("No digit was certified")
    assert "2 digit(s)" in violation_sentence({"a": np.zeros(3), "b": np.array([0, 2, 1])})


def test_comparison_rows_label_every_method_and_measure():
    flags = np.ones((2, 2, 3), bool)  # seeds, budgets, images
    rows = comparison_rows(
        names={"none": "no defence", "gaussian:1.5": "G", "pgd:2": "AT", "noise:0.5": "RS"}, blurs=["gaussian:1.5"],
        adversarial="pgd:2", worst_flags={"none": flags, "gaussian:1.5": flags},
        trusted_flags={("pgd:2", "attacked"): flags, ("noise:0.5", "attacked"): flags, ("noise:0.5", "certified"): flags},
        seeds=[0, 1], budgets=[0.0, 1.0], clean={k: 0.9 for k in ("none", "gaussian:1.5", "pgd:2", "noise:0.5")},
        seconds={k: 1.0 for k in ("none", "gaussian:1.5", "pgd:2", "noise:0.5")},
        cost={("pgd:2", "attacked"): 0.5, ("noise:0.5", "attacked"): 0.1, ("noise:0.5", "certified"): 0.2}, n_resamples=10, seed=0)
    found = {(r["method"], r["measure"]) for r in rows}
    assert found == {("none", "attacked (chapter 6 worst case)"), ("blur", "attacked (chapter 6 worst case)"),
                     ("adversarial training", "attacked (worst case)"), ("randomized smoothing", "attacked (EOT-PGD)"),
                     ("randomized smoothing", "certified")}
    certified = [r for r in rows if r["measure"] == "certified"]
    assert {r["eval_cpu_seconds_per_image"] for r in certified} == {0.2}
    assert all(np.isnan(r["eval_cpu_seconds_per_image"]) for r in rows if r["method"] == "blur")


def test_compared_rows_and_chapter7_figures():
    gain = Gain(model="blur", effect=0.1, low=0.05, high=0.15, p_value=0.01, p_holm=0.01, n_seeds=3, n_images=10)
    rows = compared_rows([Alternative(name="AT", clean_gap=-0.02, against_upper=gain, against_lower=gain)])
    assert rows[0]["interval (attacked)"] == "[+5.0%, +15.0%]" and rows[0]["blur − pessimistic"] == pytest.approx(0.1)
    radii, budgets = np.linspace(0, 2, 5), [0.0, 1.0, 2.0]
    fig = smoothing_figure(radii, budgets, {0.25: np.linspace(1, 0, 5)}, {0.25: np.array([1.0, 0.5, 0.2])})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2
    names = {"none": "no defence", "noise:0.5": "RS"}
    fig = comparison_figure(names=names, lines={"none": pd.DataFrame({"budget": budgets, "accuracy": [1, 0.5, 0.2]}),
                                                "noise:0.5": pd.DataFrame()},
                            smoothed=["noise:0.5"], budgets=budgets, strong_accuracy={k: np.array([1, 0.5, 0.2]) for k in names},
                            clean={k: 0.9 for k in names}, certified_accuracy={"noise:0.5": np.array([1, 0.4, 0.1])})
    assert len(fig.axes) == 2


def _tiny(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def test_smoothing_study_certifies_at_most_what_the_attack_leaves_and_reports_costs():
    from helpers.studies.trusted import smoothing_rows, smoothing_study

    x = np.random.default_rng(1).random((5, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    models = {("noise:0.25", k): _tiny(k) for k in (0, 1)}
    found = smoothing_study(models, regimes={0.25: "noise:0.25"}, seeds=[0, 1], images=x, labels=y,
                            budgets=np.array([0.0, 0.5]), radii=np.linspace(0, 1, 5), n0=10, n=50, alpha=0.01, steps=2,
                            samples=2, seed=0)
    assert found.certified["noise:0.25", 0].shape == (2, 5) and found.curves["noise:0.25", 1].shape == (5,)
    assert found.violations["noise:0.25"].shape == (2,)
    assert set(found.cost) == {("noise:0.25", "certified"), ("noise:0.25", "attacked")}
    rows = smoothing_rows(found, regimes={0.25: "noise:0.25"}, seeds=[0, 1], budgets=[0.0, 0.5], n=50, alpha=0.01)
    assert [r["measure"] for r in rows] == ["certified", "attacked"] and "ε = 0.5" in rows[0]
    assert 0 < rows[0]["largest certifiable r"] < 0.5 and np.isnan(rows[1]["largest certifiable r"])
    from helpers.studies.trusted import certificate_rows

    checks, sentence = certificate_rows(found, names={"noise:0.25": "s"}, regimes={0.25: "noise:0.25"}, budgets=[0.0, 0.5], n=50,
                                        alpha=0.01, n_images=5)
    assert checks == [] and "σ = 0.25 (largest certifiable radius" in sentence  # r < 0.5: it cannot fail
    checks, sentence = certificate_rows(found, names={"noise:0.25": "s"}, regimes={0.25: "noise:0.25"}, budgets=[0.0, 0.1], n=50,
                                        alpha=0.01, n_images=5)
    assert [c["model"] for c in checks] == ["s"] and sentence.startswith("Every noise level")


def test_adversarial_training_study_checks_and_result_rows():
    from types import SimpleNamespace

    from helpers.studies.shares import study_digits
    from helpers.studies.trusted import (
        adversarial_training_checks,
        adversarial_training_study,
        smoothing_study,
        trusted_images,
        trusted_methods,
    )

    x = np.random.default_rng(2).random((6, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    digits = study_digits(x, y, n_adaptive=6, strong_images=3, seed=0)
    robust = {k: _tiny(10 + k) for k in (0, 1)}
    grid = np.array([0.0, 1.0])
    trained = adversarial_training_study(robust, digits, budgets=[0.0, 0.5, 1.0], grid=grid, pgd_steps=3, noise_draws=1,
                                         steps=3, restarts=1, square_queries=10, seed=0)
    assert trained.flags["worst"][1].shape == (2, 3) and trained.pgd_accuracy().shape == (3,)
    assert trained.cpu_seconds_per_image > 0
    checks = adversarial_training_checks(robust, digits, trained, label="AT", unbounded_success=1.0, budgets=[0.0, 0.5, 1.0],
                                         grid=grid, steps=3, restarts=1, seed=0, n_images=6)
    assert {c["model"] for c in checks} == {"AT"} and len(checks) >= 5
    effort = next(c for c in checks if c["check"] == "twice the steps and restarts change little")
    assert effort["measured"].endswith("(first seed, every strong budget)")  # where it was measured, not chapter 6's scope
    smoothed = smoothing_study({("noise:0.5", k): _tiny(k) for k in (0, 1)}, regimes={0.5: "noise:0.5"}, seeds=[0, 1],
                               images=digits.xs, labels=digits.ys, budgets=grid, radii=np.linspace(0, 1, 3), n0=5, n=20,
                               alpha=0.01, steps=2, samples=2, seed=0)
    names = {"noise:0.5": "smoothing", "pgd:2": "AT"}
    fits = {(key, k): SimpleNamespace(path=f"/nowhere/{key}-{k}.keras") for key in names for k in (0, 1)}
    clean = {key: np.ones((2, 6), bool) for key in names}
    rows = trusted_images(fits, digits, names=names, adversarial="pgd:2", seeds=[0, 1], budgets=grid, smoothing=smoothed,
                          trained=trained, clean=clean)
    strong = [r for r in rows if r["measure"] != "clean"]
    assert len(strong) == 2 * (2 * 2 * 3) + 2 * (2 * 3)  # smoothing: 2 measures; AT: attacked only
    assert {r["test_index"] for r in strong} == set(digits.subset_index.tolist())
    assert len(rows) - len(strong) == 2 * 2 * 6  # clean: every method, seed and digit at budget 0
    methods = trusted_methods(names=names, adversarial="pgd:2", clean={"noise:0.5": 0.5, "pgd:2": 0.6},
                              seconds={"noise:0.5": 1.0, "pgd:2": 2.0}, smoothing=smoothed, trained=trained)
    assert [m["method"] for m in methods] == ["randomized smoothing", "adversarial training"]
    assert methods[1]["certify_cpu_seconds_per_image"] is None and methods[0]["pgd_accuracy"] is None


def test_eot_effort_reruns_twice_the_steps_and_draws_on_what_the_attack_left(monkeypatch):
    from helpers.studies import trusted
    from helpers.studies.alternatives import SmoothedAttack
    from helpers.studies.sanity import EOT_EFFORT_CHECK, eot_effort_check

    seen = []

    def fake(model, images, labels, *, sigma, budgets, steps, samples, n_predict, seed):
        seen.append((model, sigma, float(budgets[0]), labels.tolist(), steps, samples, n_predict, seed))
        correct = (labels != 1)[None]  # the stronger attack breaks every digit labelled 1
        return SmoothedAttack(budgets=np.asarray(budgets), correct=correct, adversarial=np.zeros((1, len(labels), 1, 1, 1)))

    monkeypatch.setattr(trusted, "smoothed_pgd", fake)
    labels = np.array([0, 1, 2, 1])
    attacked = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [0, 0, 0, 1]], bool)  # ε = 0, 1, 2
    found = SimpleNamespace(attacked={("noise:0.5", 0): attacked})
    rows = trusted.eot_effort_rows(found, {("noise:0.5", 0): "m"}, names={"noise:0.5": "smoothing σ = 0.5"},
                                   regimes={0.5: "noise:0.5"}, seed_model=0, images=np.zeros((4, 1, 1, 1), np.float32),
                                   labels=labels, budgets=np.array([0.0, 1.0, 2.0]), steps=20, samples=8, n=500, seed=3)
    assert seen == [("m", 0.5, 1.0, [0, 1, 1], 40, 16, 500, 4), ("m", 0.5, 2.0, [1], 40, 16, 500, 4)]
    # ε = 1: 3/4 → 1/4 (two digits labelled 1 fall); ε = 2: 1/4 → 0.
    assert rows == [eot_effort_check(model="smoothing σ = 0.5", usual=[0.75, 0.25], doubled=[0.25, 0.0], n_images=4)]
    assert rows[0]["check"] == EOT_EFFORT_CHECK and rows[0]["value"] == 0.5 and not rows[0]["passed"]
    assert rows[0]["margin"] == pytest.approx(0.25 + 1e-12 - 0.5)
    kept = eot_effort_check(model="s", usual=[0.5, 0.2], doubled=[0.49, 0.2], n_images=100)
    assert kept["passed"] and kept["threshold"] == pytest.approx(0.02) and kept["margin"] == pytest.approx(0.01)
