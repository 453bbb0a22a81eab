"""The seeds-and-images bootstrap and the distance study's bookkeeping, on synthetic numbers."""

import numpy as np
import pytest

from helpers.core import stats
from helpers.studies import scores


def _study(l2_by_defence, correct_by_defence):
    study = scores.DistanceStudy(indices=np.arange(4), labels=np.zeros(4, int), targets=np.ones(4, int))
    for defence, per_seed in l2_by_defence.items():
        for seed, l2 in enumerate(per_seed):
            attacks = {"paper": np.asarray(l2, float), "paper_bpda": np.asarray(l2, float) + 0.5,
                       "minimum_norm": np.asarray(l2, float) - 0.25, "filtered_input": np.asarray(l2, float) * 0.5}
            study.models[(defence, seed)] = scores.ModelDistances(defence, seed, f"{defence}-{seed}.keras",
                                                                  np.asarray(correct_by_defence[defence][seed]), attacks)
    return study


def test_strongest_measure_is_the_per_image_minimum_and_failures_stay_out():
    record = scores.ModelDistances("none", 0, "m", np.ones(3, bool),
                                   {"paper": np.array([2.0, np.nan, 1.0]), "paper_bpda": np.array([1.5, np.nan, np.nan]),
                                    "minimum_norm": np.array([1.8, 3.0, np.nan])})
    np.testing.assert_array_equal(record.measure("strongest"), [1.5, 3.0, 1.0])
    np.testing.assert_array_equal(np.isnan(record.measure("paper")), [False, True, False])


def test_bootstrap_intervals_contain_the_point_and_pair_images():
    correct = {"none": [[1, 1, 1, 0]] * 2, "gaussian:1": [[1, 1, 0, 0], [1, 1, 1, 0]]}
    study = _study({"none": [[1, 2, 3, 4], [1, 2, 3, 4]], "gaussian:1": [[2, 4, 6, 8], [2, 4, 6, 8]]}, correct)
    draws = scores.bootstrap(study, n_resamples=300, seed=0)
    # Paired images: the distances of gaussian:1 are exactly twice the undefended ones, so every draw of the
    # ratio is exactly 2 (up to float rounding of the means).
    np.testing.assert_allclose(draws["gaussian:1"].mean_l2["paper"] / draws["none"].mean_l2["paper"], 2.0, rtol=1e-12)
    gain = scores.estimate(study, draws, "gaussian:1", "none", what="mean_l2")
    assert gain.effect == pytest.approx(1.0) and gain.low == pytest.approx(1.0) and gain.high == pytest.approx(1.0)
    acc = scores.estimate(study, draws, "gaussian:1", "none", what="accuracy")
    assert acc.effect == pytest.approx(0.625 - 0.75) and acc.low <= acc.effect <= acc.high
    rows = scores.score_rows(study, draws)
    assert rows[0]["clean_accuracy"] == pytest.approx(0.75) and rows[0]["mean_l2"] == pytest.approx(2.5)
    assert rows[0]["strongest_mean_l2"] == pytest.approx(2.25)  # DDN's −0.25 is the minimum everywhere
    assert rows[1]["score_lo"] <= rows[1]["score"] <= rows[1]["score_hi"]


def test_min_norm_rows_and_min_norm_image_rows():
    correct = {"none": [[1, 1, 1, 1]]}
    study = _study({"none": [[1, 2, np.nan, 4]]}, correct)
    rows = scores.min_norm_rows(study, n_resamples=50)
    by_attack = {r["attack"]: r for r in rows}
    assert set(by_attack) == {"paper", "paper_bpda", "minimum_norm", "strongest"}
    assert by_attack["paper"]["success_rate"] == pytest.approx(0.75) and by_attack["paper"]["median_l2"] == pytest.approx(2.0)
    assert by_attack["strongest"]["median_l2"] == pytest.approx(1.75)
    images = scores.min_norm_image_rows(study)
    assert len(images) == 4 and images[2]["test_index"] == 2 and np.isnan(images[2]["l2_strongest"])


def test_seed_draws_are_per_model_and_images_shared():
    counts = stats.image_counts(5, n_resamples=20, seed=3)
    assert counts.shape == (20, 5) and (counts.sum(axis=1) == 5).all()
    picks = stats.seed_picks(3, n_resamples=20, seed=1)
    assert picks.shape == (20, 3) and picks.max() < 3
    values = np.array([[1.0, 2.0, np.nan, 4.0, 5.0]])
    means = stats.per_seed_means(values, np.ones((1, 5)))
    assert means[0, 0] == pytest.approx(3.0)


def test_validation_choices():
    rows = [{"defence": "none", "kind": "none", "val_score": 2.0, "val_accuracy": 0.97},
            {"defence": "gaussian:1", "kind": "gaussian", "val_score": 2.6, "val_accuracy": 0.96},
            {"defence": "gaussian:1.5", "kind": "gaussian", "val_score": 2.4, "val_accuracy": 0.965},
            {"defence": "median:3", "kind": "median", "val_score": 2.2, "val_accuracy": 0.95}]
    choices = scores.validation_choices(rows)
    assert choices["best_defence"] == "gaussian:1" and choices["best_gaussian"] == "gaussian:1"
    assert choices["accurate_gaussian"] == "gaussian:1.5" and choices["accurate_median"] == "median:3"
    assert choices["rival"] == "gaussian:1"


def test_stable_paper_claims_keep_a_clear_verdict_and_record_its_stability():
    correct = {"none": [[1, 1, 1, 0]] * 2, "gaussian:1": [[1, 1, 1, 0]] * 2}
    study = _study({"none": [[1, 2, 3, 4]] * 2, "gaussian:1": [[2, 4, 6, 8]] * 2}, correct)
    draws = scores.bootstrap(study, n_resamples=200, seed=0)
    claims = scores.stable_paper_claims(study, draws, {"best_gaussian": "gaussian:1"}, n_resamples=200, seed=0)
    c3 = [c for c in claims if c["claim"] == "C3"]
    assert c3 and all(c["stability"] == "20/20" for c in c3)  # ‖δ‖₂ exactly doubled, accuracy equal: no seed can flip it
    assert all(c["verdict"] == "confirmed" and "at least +10.0%" in c["proves"] for c in c3)
    assert c3[0]["effect"] == scores.paper_claims(study, draws, {"best_gaussian": "gaussian:1"})[0]["effect"]
