"""Chapter 7's helpers: the attack on the smoothed classifier, the certificate-versus-attack check, reading chapter
6's per-image flags back, the C7 rule."""

import numpy as np
import pytest

from helpers.defences.smoothing import certify
from helpers.studies.adaptive_study import Gain
from helpers.studies.alternatives import (
    certificate_violations,
    certified_flags,
    chapter6_flags,
    chapter7_flags,
    method_rows,
    smoothed_pgd,
    smoothed_predict,
)
from helpers.studies.sanity import certificate_check
from helpers.studies.verdicts import (
    CLAIMS,
    MAX_CLEAN_GAP,
    Alternative,
    alternatives_verdict,
    verdict_rows,
)
from helpers.training.train import fit_cached, train_seconds

SIGMA = 0.5


EPOCHS = 3  # not test_robust_training's 2 epochs: that test trains its own noise model (the cache is shared)


@pytest.fixture(scope="module")
def noise_model(mnist, model_cache):
    return fit_cached("small_cnn", mnist, epochs=EPOCHS, cache_dir=model_cache, training=f"noise:{SIGMA}", verbose=0)


def test_the_attack_on_the_smoothed_classifier_lowers_its_accuracy(noise_model, first_test_digits):
    images, labels = first_test_digits[0][:30], first_test_digits[1][:30]
    attack = smoothed_pgd(noise_model.model, images, labels, sigma=SIGMA, budgets=[0.0, 1.0, 3.0], steps=10, samples=4, n_predict=200)
    clean = np.mean(smoothed_predict(noise_model.model, images, sigma=SIGMA, n=200, seed=1) == labels)
    assert attack.correct.shape == (3, 30) and attack.adversarial.shape == (3, *images.shape)
    assert attack.accuracy[0] >= 0.7 and abs(attack.accuracy[0] - clean) <= 0.1  # ε = 0: the smoothed clean answer
    assert attack.accuracy[2] < attack.accuracy[0] - 0.3  # a large budget breaks most digits
    moved = np.sqrt(((attack.adversarial - images[None]) ** 2).sum(axis=(2, 3, 4)))
    assert np.all(moved[1] <= 1.0 + 1e-4) and np.all(moved[2] <= 3.0 + 1e-4) and np.all(moved[0] == 0)
    assert attack.adversarial.min() >= 0.0 and attack.adversarial.max() <= 1.0


@pytest.mark.slow
def test_nothing_certified_is_broken_by_the_attack(noise_model, first_test_digits):
    images, labels = first_test_digits[0][:30], first_test_digits[1][:30]
    budgets = [0.0, 0.5, 1.0]
    cert = certify(noise_model.model, images, sigma=SIGMA, n0=50, n=500, alpha=0.001)
    certified = certified_flags(cert, labels, budgets)
    attacked = smoothed_pgd(noise_model.model, images, labels, sigma=SIGMA, budgets=budgets, steps=10, samples=4, n_predict=500).correct
    assert certified[1].sum() > 0  # the check is not vacuous: some digits are certified at ε = 0.5
    assert certificate_violations(certified, attacked).tolist() == [0, 0, 0]
    assert np.all(certified.mean(axis=1) <= attacked.mean(axis=1))


def test_certified_flags_and_violations():
    class Cert:
        prediction = np.array([1, 2, -1, 3])
        radius = np.array([0.6, 1.2, 0.0, 2.0])

    flags = certified_flags(Cert, np.array([1, 2, 0, 0]), [0.0, 1.0])
    assert flags.tolist() == [[True, True, False, False], [False, True, False, False]]
    attacked = np.array([[True, True, True, True], [True, False, True, True]])
    assert certificate_violations(flags, attacked).tolist() == [0, 1]
    with pytest.raises(ValueError, match="empirical"):
        certificate_violations(flags, attacked[:, :2])
    row = certificate_check(model="m", budgets=[0.0, 1.0], violations=[0, 1], n_images=4)
    assert not row["passed"] and "ε = 1: 1" in row["measured"]
    assert certificate_check(model="m", budgets=[0.0, 1.0], violations=[0, 0], n_images=4)["passed"]


def test_bad_arguments_name_the_parameter(noise_model, first_test_digits):
    images, labels = first_test_digits[0][:2], first_test_digits[1][:2]
    for kwargs, name in (({"sigma": 0.0}, "sigma"), ({"sigma": SIGMA, "samples": 0}, "samples"), ({"sigma": SIGMA, "steps": 0}, "steps"),
                         ({"sigma": SIGMA, "budgets": [-1.0]}, "budgets")):
        with pytest.raises(ValueError, match=f"^{name}:"):
            smoothed_pgd(noise_model.model, images, labels, **({"budgets": [0.0, 1.0]} | kwargs))


def test_recorded_training_time_survives_the_cache(mnist, model_cache, noise_model):
    import json

    again = fit_cached("small_cnn", mnist, epochs=EPOCHS, cache_dir=model_cache, training=f"noise:{SIGMA}", verbose=0)
    recorded = json.loads(again.path.with_suffix(".json").read_text())
    assert again.from_cache and train_seconds(again) == recorded["train_seconds"] > 0  # not the load time of the cached copy
    assert train_seconds(again, cpu=True) == recorded["train_cpu_seconds"] > 0


def _images_rows(model, seeds, indexes, budgets, broken):
    return [{"model": model, "seed": s, "model_file": "x.keras", "test_index": int(t), "label": 0, "budget": float(b),
             "evaluation": "strongest worst case", "broken": bool(broken(s, b, t))} for s in seeds for b in budgets for t in indexes]


def test_chapter6_flags_reads_the_per_image_file_in_the_asked_order():
    rows = _images_rows("gaussian:1", [0, 1], [7, 3, 9], [1.0, 2.0], lambda s, b, t: (t == 3 and b == 2.0) or s == 1 and t == 9)
    rows += _images_rows("none", [0], [7], [1.0], lambda *a: True)
    flags = chapter6_flags(rows, model="gaussian:1", seeds=[0, 1], test_index=np.array([9, 3]), budgets=[1.0, 2.0])
    assert flags.shape == (2, 2, 2)
    assert flags[0].tolist() == [[True, True], [True, False]] and flags[1].tolist() == [[False, True], [False, False]]
    with pytest.raises(ValueError, match="robustness_images.csv: .*test image 8"):
        chapter6_flags(rows, model="gaussian:1", seeds=[0], test_index=np.array([8]), budgets=[1.0])


def test_chapter7_flags_reads_one_measure_of_one_defence_in_the_asked_order():
    from helpers.studies.results import ALTERNATIVES_IMAGES

    def rows(parameter, measure, robust):
        return [{"method": "m", "parameter": parameter, "seed": s, "model_file": "x.keras", "test_index": t, "label": 0,
                 "budget": b, "measure": measure, "robust": robust(s, b, t)} for s in (0, 1) for b in (0.0, 1.0) for t in (4, 2)]

    table = rows("noise:0.5", "attacked", lambda s, b, t: b == 0.0 or t == 2) + rows("noise:0.5", "certified", lambda *a: False)
    table += rows("pgd:2", "attacked", lambda *a: False)
    assert all(list(r) == ALTERNATIVES_IMAGES.column_names for r in table)
    flags = chapter7_flags(table, parameter="noise:0.5", measure="attacked", seeds=[1], test_index=np.array([2, 4]), budgets=[0.0, 1.0])
    assert flags.tolist() == [[[True, True], [True, False]]]
    assert not chapter7_flags(table, parameter="noise:0.5", measure="certified", seeds=[0], test_index=[4], budgets=[0.0]).any()
    with pytest.raises(ValueError, match="alternatives_images.csv: no 'attacked' row for pgd:2, seed 0, ε = 2, test image 4"):
        chapter7_flags(table, parameter="pgd:2", measure="attacked", seeds=[0], test_index=[4], budgets=[2.0])


def test_method_rows_have_the_layout_of_alternatives_csv():
    from helpers.studies.results import ALTERNATIVES

    flags = {0: np.array([[True, True], [True, False]]), 1: np.array([[True, True], [False, False]])}
    rows = method_rows(method="blur", parameter="gaussian:1", measure="attacked", budgets=[0.0, 1.0], flags=flags, clean_accuracy=0.9,
                       train_cpu_seconds=6.0, eval_cpu_seconds_per_image=0.1, n_resamples=50)
    assert all(list(r) == ALTERNATIVES.column_names for r in rows)
    pooled = [r for r in rows if r["seed"] == "all"]
    assert [r["accuracy"] for r in pooled] == [1.0, 0.25] and pooled[0]["n"] == 4


def _gain(effect, low, high):
    return Gain(model="blur", effect=effect, low=low, high=high, p_value=0.5, p_holm=0.5, n_seeds=3, n_images=50)


@pytest.mark.parametrize("upper, lower, gap, failed, expected", [
    ((-0.30, -0.40, -0.20), (-0.20, -0.30, -0.10), 0.0, (), "refuted"),  # even the certificate beats the blur by > 5 points
    ((0.02, -0.03, 0.07), (0.10, 0.05, 0.15), 0.01, (), "confirmed"),  # non-inferior to the attacked alternative
    ((-0.05, -0.12, 0.02), (0.05, -0.02, 0.12), 0.0, (), "inconclusive"),  # neither
    ((-0.30, -0.40, -0.20), (-0.20, -0.30, -0.10), MAX_CLEAN_GAP + 0.01, (), "inconclusive"),  # not at equal clean accuracy
    ((-0.30, -0.40, -0.20), (-0.20, -0.30, -0.10), 0.0, ("a check (m)",), "inconclusive"),  # a failed sanity check
])
def test_c7_rule(upper, lower, gap, failed, expected):
    alternative = Alternative(name="smoothing", clean_gap=gap, against_upper=_gain(*upper), against_lower=_gain(*lower))
    out = alternatives_verdict([alternative], blur="Gaussian σ=1", statistic="robust share", failed_checks=failed, n_checks=3)
    assert out["verdict"] == expected
    assert out["rule"].startswith("among the alternatives") and "evidence" in out
    if failed:
        assert "would be refuted" in out["evidence"].lower()


def test_c7_is_refuted_by_one_alternative_even_if_another_is_matched():
    matched = Alternative(name="AT", clean_gap=0.0, against_upper=_gain(0.0, -0.02, 0.02), against_lower=_gain(0.0, -0.02, 0.02))
    beaten = Alternative(name="smoothing", clean_gap=-0.02, against_upper=_gain(-0.4, -0.5, -0.3), against_lower=_gain(-0.3, -0.4, -0.2))
    out = alternatives_verdict([matched, beaten], blur="b", statistic="s")
    assert out["verdict"] == "refuted" and out["effect"] == -0.3


def test_verdict_rows_through_a_claim():
    rows = verdict_rows({}, through="C6")
    assert [r["claim"].split(":")[0] for r in rows] == [k for k in CLAIMS if k != "C7"]
    assert [r["claim"].split(":")[0] for r in verdict_rows({})][-1] == "C7"
    with pytest.raises(ValueError, match="through"):
        verdict_rows({}, through="C9")


def test_a_known_clean_answer_is_used_at_zero_budget(noise_model, first_test_digits):
    images, labels = first_test_digits[0][:6], first_test_digits[1][:6]
    told = (labels + np.array([0, 1, 0, 1, 0, 1])) % 10  # right, wrong, right, ...
    attack = smoothed_pgd(noise_model.model, images, labels, sigma=SIGMA, budgets=[0.0, 0.5], steps=2, samples=2, n_predict=20,
                          clean_prediction=told)
    assert attack.correct[0].tolist() == [True, False] * 3
    with pytest.raises(ValueError, match="clean_prediction"):
        smoothed_pgd(noise_model.model, images, labels, sigma=SIGMA, budgets=[0.0], clean_prediction=told[:2])


def test_a_certificate_check_that_cannot_fail_is_left_out():
    from helpers.studies.sanity import certificate_check

    assert certificate_check(model="m", budgets=[0.0, 1.0, 2.0], violations=[0, 0, 0], n_images=4, largest_radius=0.55) is None
    row = certificate_check(model="m", budgets=[0.0, 1.0, 2.0], violations=[0, 0, 1], n_images=4, largest_radius=1.1)
    assert row is not None and not row["passed"]
