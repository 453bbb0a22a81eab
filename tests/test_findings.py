"""What chapters 1 and 5 glue: their numbers and sentences from small synthetic results, no training."""

import math

import numpy as np
import pytest

from helpers.studies import findings
from helpers.studies.verdicts import RMS_THRESHOLD, SPREAD_SHARE


def _visible(share):
    return {"rms": np.array([0.01, 0.03, 0.02]), "linf": np.array([0.1, 0.3, 0.2]), "share_above_jnd": np.asarray(share, float)}


def test_median_or_nan():
    assert findings.median_or_nan(np.array([3.0, 1.0, 2.0])) == 2.0
    assert math.isnan(findings.median_or_nan(np.array([])))


def test_visibility_glue_takes_the_successful_attacks_and_switches_its_sentence_at_the_spread_share():
    ok = np.array([True, True, False])
    spread = findings.visibility_glue(_visible([SPREAD_SHARE + 0.1, SPREAD_SHARE + 0.3, 0.0]), ok)
    assert spread["rms_median"] == pytest.approx(0.02) and spread["linf_median"] == pytest.approx(0.2)
    assert spread["share_median"] == pytest.approx(100 * (SPREAD_SHARE + 0.2))
    assert spread["share_images_any"] == 100.0 and spread["jnd255"] == pytest.approx(RMS_THRESHOLD * 255)
    assert spread["share_sentence"].startswith("so the change is not confined")
    few = findings.visibility_glue(_visible([0.0, SPREAD_SHARE, 0.5]), ok)
    assert few["share_sentence"].startswith("so the change reaches past 8/255 on only a few pixels")
    assert few["share_images_any"] == 50.0
    none = findings.visibility_glue(_visible([0.5, 0.5, 0.5]), np.zeros(3, bool))
    assert none["share_sentence"].startswith("no attack reached its target")
    assert all(math.isnan(none[k]) for k in ("rms_median", "linf_median", "share_median", "share_images_any"))


def test_median_visibility_is_over_the_successful_images_only():
    images = np.zeros((3, 2, 2, 1), np.float32)
    adversarial = images + np.array([0.1, 0.5, 0.9], np.float32)[:, None, None, None]
    seen = findings.median_visibility(images, adversarial, np.array([True, False, True]))
    assert seen["median_rms"] == pytest.approx(0.5) and seen["median_linf"] == pytest.approx(0.5)
    assert seen["median_share_above_jnd"] == 1.0
    assert all(math.isnan(v) for v in findings.median_visibility(images, adversarial, np.zeros(3, bool)).values())


def test_rms_per_image_counts_a_failure_as_infinitely_far():
    rms = findings.rms_per_image(np.array([28.0, 5.0]), np.array([True, False]), input_shape=(28, 28, 1))
    assert rms[0] == pytest.approx(1.0) and rms[1] == np.inf


def test_worst_and_middle_pick_successful_attacks_by_rms():
    rms = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.8])
    ok = np.array([True, False, True, True, True, True])
    worst, middle = findings.worst_and_middle(rms, ok, n=2)
    assert list(worst) == [5, 3]  # 0.8, 0.7; the failed 0.9 is never shown
    assert list(middle) == [3, 0]  # the successful ones by RMS: 0.8 0.7 | 0.5 0.3 0.1 → around the middle
    assert [len(x) for x in findings.worst_and_middle(rms, np.zeros(6, bool), n=2)] == [0, 0]


def test_paper_step_glue_converts_the_listing_step_to_pixel_units():
    glued = findings.paper_step_glue()
    assert glued["alpha_inception"] == pytest.approx(findings.PAPER_ALPHA / glued["units_inception"])
    assert glued["alpha_ratio"] == pytest.approx(glued["alpha_inception"] / glued["alpha_vgg"])


def _min_norm(defence, label, **medians):
    return [{"defence": defence, "label": label, "attack": a, "median_l2": v} for a, v in medians.items()]


def test_min_norm_glue():
    rows = (_min_norm("none", "no filter", paper=2.0, paper_bpda=2.0, minimum_norm=1.5, strongest=1.5)
            + _min_norm("gaussian:1", "Gaussian σ=1", paper=3.0, paper_bpda=2.8, minimum_norm=2.9, strongest=2.0))
    scores = [{"defence": "none", "n_images": 40, "n_seeds": 3}, {"defence": "gaussian:1", "n_images": 40, "n_seeds": 2}]
    glued = findings.min_norm_glue(rows, scores, attacks=("paper", "paper_bpda", "minimum_norm"))
    assert glued["mn_paper_none"] == 2.0 and glued["mn_ddn_none"] == 1.5 and glued["mn_gap_none"] == pytest.approx(25.0)
    assert glued["mn_overstate_max"] == pytest.approx(50.0) and glued["mn_overstate_label"] == "Gaussian σ=1"
    assert (glued["mn_ddn_wins"], glued["mn_models"]) == (1, 2)  # BPDA wins on the blurred model
    assert (glued["n_scored_images"], glued["n_seeds_used"]) == (40, 2)


def _scores(best_sigma):
    return [{"defence": f"gaussian:{s}" if s else "none", "kind": "gaussian" if s else "none", "parameter": s,
             "score": 2.0 if s == best_sigma else 1.0, "label": str(s)} for s in (0.0, 1.0, 2.0)]


def test_resolution_glue_reports_the_best_sigmas_and_claims_nothing_from_one_seed():
    resolution = [{"relative_sigma": s, "score": 3.0 if s == 1.0 else 1.0} for s in (0.0, 0.5, 1.0)]
    same = findings.resolution_glue(_scores(1.0), resolution, factor=2, image_size=28)
    assert same["sigma_share_28"] == pytest.approx(100 * 1.5 / 28) and same["relative_blur"] == pytest.approx(299 / 28)
    assert same["resolution_sentence"].startswith("At 28 px the best of these σ by score is 1; upsampled, it is 2 px, i.e. 1 ")
    assert "They coincide" in same["resolution_sentence"] and "no verdict rests on it" in same["resolution_sentence"]
    moved = findings.resolution_glue(_scores(2.0), resolution, factor=2, image_size=28)
    assert "They differ" in moved["resolution_sentence"] and "not a finding" in moved["resolution_sentence"]
    skipped = findings.resolution_glue(_scores(2.0), None, factor=1, image_size=28)
    assert skipped["resolution_sentence"].startswith("This profile skips") and skipped["resolution_factor_value"] == 1


def test_claim_glue_fills_unmeasured_claims_and_flags_disagreeing_measures():
    scores = [{"defence": "none", "label": "no filter", "score": 1.0}, {"defence": "gaussian:1.5", "label": "σ 1.5", "score": 2.0}]
    validation = [{"defence": "none", "val_score": 0.9, "val_n_images": 30}, {"defence": "gaussian:1.5", "val_score": 1.8, "val_n_images": 25}]
    claims = [{"claim": "C3", "measure": "paper", "verdict": "confirmed", "evidence": "a"},
              {"claim": "C3", "measure": "strongest", "verdict": "inconclusive", "evidence": "b"}]
    choices = {"best_defence": "gaussian:1.5", "best_gaussian": "gaussian:1.5"}
    glued = findings.claim_glue(claims, choices, scores, validation)
    assert (glued["best_label"], glued["best_val_score"], glued["best_score"]) == ("σ 1.5", 1.8, 2.0)
    assert glued["best_gaussian_label"] == "Gaussian σ=1.5" and glued["n_validation_images"] == 25
    assert (glued["C3_strongest_verdict"], glued["C3_strongest_evidence"]) == ("inconclusive", "b")
    assert (glued["C5_paper_verdict"], glued["C5_paper_evidence"]) == ("inconclusive", "not measured in this run's grid")
    assert glued["measures_differ"].startswith("The two measures disagree on C3:")
    agree = findings.claim_glue(claims[:1], {"best_defence": None}, scores, validation)
    assert agree["measures_differ"] == "Both measures give the same verdicts here."
    assert agree["best_label"].startswith("none (no attack") and math.isnan(agree["best_score"])
    assert agree["best_gaussian_label"] == "none"


def test_worst_and_middle_return_n_of_each_for_odd_n_and_few_successes():
    rms = np.arange(8, dtype=float)
    worst, middle = findings.worst_and_middle(rms, np.ones(8, bool), n=3)
    assert worst.tolist() == [7, 6, 5] and len(middle) == 3
    assert sorted(findings.worst_and_middle(rms, np.arange(8) < 4, n=10)[1].tolist()) == [0, 1, 2, 3]


def test_validation_glue_names_the_picks_and_the_fewest_digits_attacked():
    validation = [{"defence": "none", "val_n_images": 30}, {"defence": "gaussian:1", "val_n_images": 28},
                  {"defence": "median:3", "val_n_images": 29}]
    glued = findings.validation_glue(validation, {"best_defence": "gaussian:1", "best_gaussian": "gaussian:1",
                                                  "best_median": "median:3"})
    assert glued["n_validation_images"] == 28
    assert glued["validation_sentence"] == ("By the paper's score the best filter overall is Gaussian σ=1, the best Gaussian "
                                            "filter is Gaussian σ=1 and the best median filter is median 3×3.")
    assert "none (no filter has a score)" in findings.validation_glue(validation, {"best_defence": None})["validation_sentence"]
