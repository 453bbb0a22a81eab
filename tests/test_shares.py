"""What chapters 6 and 7 share: the digits, C6's design, robust shares, the family-wise level, the
blur's gains over the alternatives, and the sanity glue."""

from statistics import NormalDist

import numpy as np
import pytest

from helpers.studies.sanity import SQUARE_REACH_CHECK, failed_checks, failed_positive_only, sanity_glued
from helpers.studies.shares import (
    alternative_gains,
    budget_set,
    c6_design,
    family_level,
    gain_variance,
    measured_design,
    robust_shares,
    share_statistic,
    study_digits,
)
from helpers.studies.verdicts import FAMILY_ALPHA, PLANNING_VARIANCE, POWER


def test_study_digits_are_a_seeded_permutation_with_its_first_digits_as_the_subset():
    x = np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1)
    y = np.arange(20) % 10
    d = study_digits(x, y, n_adaptive=8, strong_images=3, seed=4)
    assert d.pick.tolist() == np.random.default_rng(4).permutation(20)[:8].tolist()
    assert d.images[:, 0, 0, 0].tolist() == d.pick.tolist() and d.labels.tolist() == (d.pick % 10).tolist()
    assert d.xs.tolist() == d.images[:3].tolist() and d.ys.tolist() == d.labels[:3].tolist()
    assert d.subset_index.tolist() == d.pick[:3].tolist()
    assert study_digits(x, y, n_adaptive=8, strong_images=3, seed=4).pick.tolist() == d.pick.tolist()
    assert len(study_digits(x, y, n_adaptive=5, strong_images=50, seed=0).xs) == 5  # the subset is capped
    with pytest.raises(ValueError, match="n_adaptive"):
        study_digits(x, y, n_adaptive=0, strong_images=3, seed=0)
    with pytest.raises(ValueError, match="y_test"):
        study_digits(x, y[:3], n_adaptive=2, strong_images=1, seed=0)


def test_c6_design_detects_smaller_gains_with_more_digits_and_seeds_and_names_itself():
    base = c6_design(n_digits=50, n_seeds=3, n_models=3)
    assert c6_design(n_digits=150, n_seeds=3, n_models=3).detectable < base.detectable
    assert c6_design(n_digits=50, n_seeds=5, n_models=3).detectable < base.detectable
    assert c6_design(n_digits=50, n_seeds=3, n_models=1).detectable < base.detectable  # a smaller family
    z = NormalDist().inv_cdf(1 - FAMILY_ALPHA / 6) + NormalDist().inv_cdf(POWER)
    assert base.detectable == pytest.approx(z * base.standard_error)
    v = PLANNING_VARIANCE
    assert base.standard_error == pytest.approx(np.sqrt(v["digit"] / 50 + v["seed"] / 3 + v["residual"] / 150))
    assert "50 digits × 3 seeds" in base.sentence() and "80% power" in base.sentence()
    with pytest.raises(ValueError, match="n_seeds"):
        c6_design(n_digits=50, n_seeds=0, n_models=3)


def _simulated(rng, *, seeds: int, digits: int, digit: float, seed: float, residual: float) -> np.ndarray:
    return (np.sqrt(digit) * rng.standard_normal(digits)[None, :] + np.sqrt(seed) * rng.standard_normal(seeds)[:, None]
            + np.sqrt(residual) * rng.standard_normal((seeds, digits)))


def test_gain_variance_recovers_the_components_of_a_simulated_gain():
    rng = np.random.default_rng(0)
    reference = _simulated(rng, seeds=60, digits=600, digit=0.02, seed=0.001, residual=0.04)
    defended = _simulated(rng, seeds=60, digits=600, digit=0.01, seed=0.002, residual=0.03)
    found = gain_variance(defended, reference)  # the two models' digit effects are independent: 0.02 + 0.01
    assert found["digit"] == pytest.approx(0.03, rel=0.2)
    assert found["seed"] == pytest.approx(0.003, rel=0.4)
    assert found["residual"] == pytest.approx(0.07, rel=0.05)
    # Few seeds and a large residual: the digit variance of the per-digit gains is mostly residual, which is taken out.
    reference = _simulated(rng, seeds=4, digits=600, digit=0.02, seed=0.001, residual=0.4)
    defended = _simulated(rng, seeds=4, digits=600, digit=0.01, seed=0.002, residual=0.3)
    assert gain_variance(defended, reference)["digit"] == pytest.approx(0.03, rel=0.4)
    with pytest.raises(ValueError, match="defended"):
        gain_variance(defended[:1], reference[:1])


def test_measured_design_uses_the_runs_variances_and_needs_two_seeds():
    rng = np.random.default_rng(1)
    shares = {"none": _simulated(rng, seeds=5, digits=150, digit=0.05, seed=0.0, residual=0.05),
              "blur": _simulated(rng, seeds=5, digits=150, digit=0.05, seed=0.0, residual=0.05)}
    measured = measured_design(shares, reference="none", n_models=3)
    assert list(measured) == ["blur"]
    v = gain_variance(shares["blur"], shares["none"])
    assert measured["blur"].standard_error == pytest.approx(np.sqrt(v["digit"] / 150 + v["seed"] / 5 + v["residual"] / 750))
    planned = c6_design(n_digits=150, n_seeds=5, n_models=3)
    assert measured["blur"].detectable / measured["blur"].standard_error == pytest.approx(planned.detectable / planned.standard_error)
    assert measured_design({k: x[:1] for k, x in shares.items()}, reference="none", n_models=3) == {}


def test_robust_shares_stack_one_row_per_seed_up_to_the_last_budget():
    seed0 = np.array([[True, True], [True, False], [False, False]])
    seed1 = np.array([[True, True], [True, True], [True, False]])
    shares = robust_shares([seed0, seed1], budgets=[0.0, 1.0, 2.0])
    assert shares.tolist() == [[0.5, 0.0], [1.0, 0.5]]
    with pytest.raises(ValueError, match="flags"):
        robust_shares([], budgets=[0.0, 1.0])
    assert budget_set([0.0, 1.0, 2.5]) == "{1, 2.5}"
    assert share_statistic([0.0, 1.0, 2.0]) == "robust share over ε ∈ {1, 2}"


def test_family_level_splits_the_error_rate_over_the_comparisons():
    assert family_level(1) == pytest.approx(1 - FAMILY_ALPHA)
    assert family_level(4) == pytest.approx(1 - FAMILY_ALPHA / 4)
    with pytest.raises(ValueError, match="n_compared"):
        family_level(0)


def test_alternative_gains_compare_the_blur_with_both_bounds_of_each_alternative():
    rng = np.random.default_rng(0)
    blur = np.clip(rng.normal(0.6, 0.1, (3, 40)), 0, 1)
    weaker, certified = blur - 0.3, blur - 0.5
    compared = alternative_gains(blur, {"pgd:2": (weaker, weaker), "noise:0.5": (blur, certified)},
                                 names={"pgd:2": "AT", "noise:0.5": "RS"}, clean_gaps={"pgd:2": -0.1, "noise:0.5": 0.02},
                                 n_resamples=200, seed=0)
    assert [a.name for a in compared] == ["AT", "RS"]
    assert [a.clean_gap for a in compared] == [-0.1, 0.02]
    assert compared[0].against_upper.effect == pytest.approx(0.3) and compared[0].against_lower.effect == pytest.approx(0.3)
    assert compared[1].against_upper.effect == pytest.approx(0.0) and compared[1].against_lower.effect == pytest.approx(0.5)
    assert compared[0].against_upper.low > 0  # a clear gain stays above 0 at the family-wise level


def test_sanity_glue_names_the_failed_checks():
    checks = [{"check": "noise", "model": "A", "passed": True}, {"check": "effort", "model": "B", "passed": False}]
    assert failed_checks(checks) == ["effort (B)"]
    assert sanity_glued(checks) == {"sanity_passed": 1, "sanity_total": 2, "sanity_sentence": "Failed: effort (B)."}
    assert sanity_glued(checks[:1])["sanity_sentence"] == "Every check passes."
    weak = [*checks[:1], {"check": SQUARE_REACH_CHECK, "model": "A", "passed": False}]
    assert failed_checks(weak) == [] and failed_positive_only(weak) == [f"{SQUARE_REACH_CHECK} (A)"]
    assert sanity_glued(weak)["sanity_sentence"] == f"Failed, forbidding a positive verdict only: {SQUARE_REACH_CHECK} (A)."


