"""What chapters 6 and 7 share: the digits, C6's choice of evaluation, robust shares, the family-wise level, the
blur's gains over the alternatives, and the sanity glue."""

import numpy as np
import pytest

from helpers.studies.sanity import failed_checks, sanity_glued
from helpers.studies.shares import (
    EvaluationChoice,
    alternative_gains,
    budget_set,
    c6_shares,
    evaluation_choice,
    family_level,
    robust_shares,
    share_statistic,
    study_digits,
)
from helpers.studies.verdicts import FAMILY_ALPHA, MIN_ACCURACY_EFFECT


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


def _flags(pgd: float, worst: float, n: int = 100) -> dict:
    """(ε = 0, ε₁) flags with the given robust accuracies at ε₁ for PGD's worst case and every attack's."""
    def at(share):
        return np.stack([np.ones(n, bool), np.arange(n) < round(share * n)])

    return {"PGD worst": {0: at(pgd), 1: at(pgd)}, "worst": {0: at(worst), 1: at(worst)}}


def test_evaluation_choice_uses_the_strong_attacks_only_past_the_least_effect():
    small = evaluation_choice({"none": _flags(0.5, 0.5), "gaussian:1.5": _flags(0.5, 0.49)}, seeds=[0, 1])
    assert small.largest_drop == pytest.approx(0.01) and not small.use_strong
    large = evaluation_choice({"none": _flags(0.5, 0.5), "gaussian:1.5": _flags(0.5, 0.4)}, seeds=[0, 1])
    assert large.largest_drop == pytest.approx(0.1) and large.use_strong
    assert large.largest_drop > MIN_ACCURACY_EFFECT > small.largest_drop
    with pytest.raises(ValueError, match="strong_flags"):
        evaluation_choice({}, seeds=[0])


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


def test_c6_shares_take_the_chosen_worst_case():
    strong = {"none": {0: np.array([[True, True], [True, False]])}, "g": {0: np.array([[True, True], [True, True]])}}
    pgd = {"none": {0: np.array([[True, True], [False, False], [False, True]])},
           "g": {0: np.array([[True, True], [False, True], [False, False]])}}
    common = dict(strong_worst=strong, pgd_worst=pgd, at=[0, 2], seeds=[0], names={"none": "N", "g": "G"}, budgets=[0.0, 1.0])
    on_strong = c6_shares(EvaluationChoice(largest_drop=0.1, use_strong=True), **common)
    assert {k: v.tolist() for k, v in on_strong.items()} == {"N": [[1.0, 0.0]], "G": [[1.0, 1.0]]}
    on_pgd = c6_shares(EvaluationChoice(largest_drop=0.0, use_strong=False), **common)
    assert {k: v.tolist() for k, v in on_pgd.items()} == {"N": [[0.0, 1.0]], "G": [[0.0, 0.0]]}
    assert EvaluationChoice(largest_drop=0.1, use_strong=True).name == "strongest"
    assert EvaluationChoice(largest_drop=0.0, use_strong=False).name == "PGD"
